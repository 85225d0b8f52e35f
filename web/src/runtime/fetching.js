// Fetching build outputs: JSON and bytes with clear errors, and sha256 digests (checks: cache.js).
import { ArtifactMissingError } from "./errors.js";

export async function fetchOk(url, init = undefined) {
  let res;
  try {
    res = await fetch(url, init);
  } catch (e) {
    throw new ArtifactMissingError(`cannot fetch ${url}: ${e.message}`, "is `mlcbuild serve` running?");
  }
  if (!res.ok) throw new ArtifactMissingError(`${url} answered ${res.status}`, "check the artifact URL or rebuild");
  return res;
}

// JSON (manifests, configs) is revalidated with the server on every load: a rebuild must be seen at once
export async function fetchJSON(url) {
  const res = await fetchOk(url, { cache: "no-cache" });
  try {
    return await res.json();
  } catch (e) {
    throw new ArtifactMissingError(`${url} is not valid JSON`, "rebuild with mlcbuild make");
  }
}

export async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
