// Cache API storage for build artifacts, with a sha256 check against manifest.json on EVERY load (cached or not).
//
// Weight shards live in the Cache API scope tvmjs' fetchTensorCache reads (shardCacheScope(manifest), the scope
// Model.load passes), keyed by their absolute URL like tvmjs' ArtifactCache. Model.load runs verifyTensorCache()
// first: it hashes each cached shard (and tensor-cache.json), fetches and hashes the missing ones, and stores
// only verified bytes, so tvmjs then loads from a cache whose every entry matches the manifest. (Without the Cache
// API, e.g. on plain http from another host, nothing can be checked before tvmjs fetches: browsers require a
// secure context for WebGPU too, where the Cache API exists.) Other files can go
// through cachedFetchVerified() (cache "mlcbuild"). A mismatch throws ChecksumMismatchError and drops the bad entry,
// so a reload fetches it again.
import { fetchOk, sha256Hex } from "./fetching.js";
import { ArtifactMissingError, ChecksumMismatchError } from "./errors.js";

export const CACHE_NAME = "mlcbuild";

// Must equal the cacheScope Model.load (web/src/runtime/model.js) gives tvm.fetchTensorCache.
export function shardCacheScope(manifest) {
  return `mlcbuild/${manifest.name}-${manifest.quantization}`;
}

const hasCacheAPI = () => typeof globalThis.caches?.open === "function";

function record(manifest, name) {
  const rec = manifest.files?.[name];
  if (!rec) throw new ArtifactMissingError(`manifest.json lists no ${name}`, "rebuild with mlcbuild make");
  return rec;
}

async function check(bytes, rec, name, where) {
  const got = await sha256Hex(bytes);
  if (bytes.length !== rec.size || got !== rec.sha256) {
    throw new ChecksumMismatchError(`${where} ${name} does not match manifest.json (sha256 ${got.slice(0, 12)}..., ` +
      `${bytes.length} bytes; expected ${rec.sha256.slice(0, 12)}..., ${rec.size} bytes)`,
    where.startsWith("cached") ? "the cached copy was damaged or tampered with and has been removed: reload to fetch " +
      "it again" : "the served file is damaged or tampered with: rebuild it with mlcbuild make or re-download it");
  }
  return bytes;
}

// `name` from `baseUrl`, checked against manifest.files[name]; served from / stored into the Cache API `cacheName`.
export async function cachedFetchVerified(baseUrl, manifest, name, { cacheName = CACHE_NAME } = {}) {
  const rec = record(manifest, name);
  const url = new URL(name, baseUrl).href;
  if (!hasCacheAPI()) return check(new Uint8Array(await (await fetchOk(url)).arrayBuffer()), rec, name, "served");
  const cache = await caches.open(cacheName);
  const hit = await cache.match(url);
  if (hit) {
    const bytes = new Uint8Array(await hit.arrayBuffer());
    try {
      return await check(bytes, rec, name, "cached");
    } catch (e) {
      await cache.delete(url);
      throw e;
    }
  }
  const bytes = await check(new Uint8Array(await (await fetchOk(url)).arrayBuffer()), rec, name, "served");
  await cache.put(url, new Response(bytes, { headers: { "Content-Type": "application/octet-stream" } }));
  return bytes;
}

// A rebuilt build (its manifest changed) is not a tampered one: the cached copies of the old build are dropped,
// in both caches, and fetched again. The stamp is the sha256 of manifest.files, kept beside the shards.
async function dropIfRebuilt(baseUrl, manifest, shardCache) {
  const stampUrl = new URL("manifest.json?mlcbuild-cached-build", baseUrl).href;
  const want = await sha256Hex(new TextEncoder().encode(JSON.stringify(manifest.files ?? {})));
  const hit = await shardCache.match(stampUrl);
  const had = hit ? await hit.text() : null;
  let rebuilt = false;
  if (had !== null && had !== want) {
    for (const req of await shardCache.keys()) await shardCache.delete(req);
    const other = await caches.open(CACHE_NAME);
    for (const req of await other.keys()) if (req.url.startsWith(baseUrl)) await other.delete(req);
    rebuilt = true;
  }
  return { rebuilt, save: () => shardCache.put(stampUrl, new Response(want)) };
}

// Verify (and fill) tvmjs' shard cache for one build before Model.load: tensor-cache.json and every params shard.
// onProgress({stage: "verify", fraction, text}). Returns {files, cached, fetched, bytes, ms, rebuilt}.
export async function verifyTensorCache(baseUrl, manifest, { onProgress = () => {} } = {}) {
  const t0 = performance.now();
  const names = Object.keys(manifest.files ?? {}).filter((n) => n === "tensor-cache.json" || n.startsWith("params_shard_"))
    .sort();
  if (!names.some((n) => n.startsWith("params_shard_"))) {
    throw new ArtifactMissingError(`${baseUrl}: manifest.json lists no params_shard_*.bin`, "rebuild with mlcbuild make");
  }
  const out = { files: names.length, cached: 0, fetched: 0, bytes: 0, ms: 0, rebuilt: false };
  if (!hasCacheAPI()) return out;  // tvmjs cannot cache either; Model.load fetches
  const cache = await caches.open(shardCacheScope(manifest));
  const stamp = await dropIfRebuilt(baseUrl, manifest, cache);
  out.rebuilt = stamp.rebuilt;
  if (stamp.rebuilt) onProgress({ stage: "verify", fraction: 0, text: "the build changed: old cached files dropped" });
  for (let i = 0; i < names.length; i++) {
    const name = names[i];
    onProgress({ stage: "verify", fraction: i / names.length, text: `sha256 ${name}` });
    const url = new URL(name, baseUrl).href;
    const rec = record(manifest, name);
    const hit = await cache.match(url);
    if (hit) {
      const bytes = new Uint8Array(await hit.arrayBuffer());
      try {
        await check(bytes, rec, name, "cached");
      } catch (e) {
        await cache.delete(url);
        throw e;
      }
      out.cached += 1;
      out.bytes += bytes.length;
      continue;
    }
    const bytes = await check(new Uint8Array(await (await fetchOk(url)).arrayBuffer()), rec, name, "served");
    await cache.put(url, new Response(bytes, { headers: { "Content-Type": name.endsWith(".json")
      ? "application/json" : "application/octet-stream" } }));
    out.fetched += 1;
    out.bytes += bytes.length;
  }
  await stamp.save();
  onProgress({ stage: "verify", fraction: 1, text: "verified" });
  out.ms = performance.now() - t0;
  return out;
}

// Delete every mlcbuild cache (the "mlcbuild" cache and the per-build shard scopes).
export async function clearArtifactCache() {
  if (!hasCacheAPI()) return 0;
  let n = 0;
  for (const k of await caches.keys()) {
    if (k === CACHE_NAME || k.startsWith(`${CACHE_NAME}/`)) { await caches.delete(k); n += 1; }
  }
  return n;
}
