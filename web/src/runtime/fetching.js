// Fetching build outputs: JSON and bytes with clear errors, and sha256 checks against manifest.json.
import { ArtifactMissingError, ChecksumMismatchError } from "./errors.js";

export async function fetchOk(url) {
  let res;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new ArtifactMissingError(`cannot fetch ${url}: ${e.message}`, "is `mlcbuild serve` running?");
  }
  if (!res.ok) throw new ArtifactMissingError(`${url} answered ${res.status}`, "check the artifact URL or rebuild");
  return res;
}

export async function fetchJSON(url) {
  const res = await fetchOk(url);
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

// Fetch `name` from `baseUrl` and check its size and sha256 against manifest.files[name].
export async function fetchVerified(baseUrl, manifest, name) {
  const rec = manifest.files?.[name];
  if (!rec) throw new ArtifactMissingError(`manifest.json lists no ${name}`, "rebuild with mlcbuild make");
  const bytes = new Uint8Array(await (await fetchOk(new URL(name, baseUrl))).arrayBuffer());
  const got = await sha256Hex(bytes);
  if (bytes.length !== rec.size || got !== rec.sha256) {
    throw new ChecksumMismatchError(`${name} does not match manifest.json (sha256 ${got.slice(0, 12)}..., ` +
      `expected ${rec.sha256.slice(0, 12)}...)`, "the file is damaged or tampered with; rebuild or re-download");
  }
  return bytes;
}
