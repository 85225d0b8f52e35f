// RecursiveLinks in the browser: the JS side of train_links/links.py and train_links/format.py.
//
//   inner (one agent, hidden d -> its own input-embedding space):  post_ln(x + W2 GELU(W1 pre_ln(x)))
//   outer (agent i, hidden d_src -> agent j's embedding space):    ln_tgt(W2 GELU(W1 ln_src(x)) + W_res x)
//
// GELU is the exact (erf) form and LayerNorm uses eps 1e-5 (torch's default), like the PyTorch modules. The math
// runs on the CPU over Float32Arrays (accumulating in float64, stored as float32): at link sizes (d <= a few
// thousand, m <= ~80 rows) that is milliseconds, and it keeps the GPU free for the agents.
//
// recursivelink.json (schema v1, docs/recursivelink.md) is validated like the Python loader does: nothing is decoded
// before its size is known to be right, each tensor's sha256 (crypto.subtle) and finiteness are checked, and f16
// tensors are widened to f32. `checkDims` compares the file with the loaded models and throws LinkMismatchError.
import { fetchOk, sha256Hex } from "../runtime/fetching.js";
import { cachedFetchVerified } from "../runtime/cache.js";
import { LinkFormatError, LinkMismatchError } from "../runtime/errors.js";
import { Pattern } from "./pattern.js";

export const FORMAT = "recursivelink";
export const VERSION = 1;
const MAX_DIM = 1 << 16;
const MAX_STEPS = 4096;
const LN_EPS = 1e-5;
const ITEMSIZE = { f32: 4, f16: 2 };

// ---------------------------------------------------------------------------------------------------------------
// math

// erf with ~1e-15 absolute error: Taylor series near 0, Laplace's continued fraction for erfc in the tails.
export function erf(x) {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
    const x2 = x * x;
    let term = x;
    let sum = x;
    for (let n = 1; n < 200; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  if (ax >= 6) return Math.sign(x);
  // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))
  let f = ax;
  for (let k = 120; k >= 1; k--) f = ax + (k / 2) / f;
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

export function gelu(x) {
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

// LayerNorm of one row (biased variance, like torch), in place into `out`.
function layerNorm(x, w, b, out) {
  const d = x.length;
  let mean = 0;
  for (let i = 0; i < d; i++) mean += x[i];
  mean /= d;
  let v = 0;
  for (let i = 0; i < d; i++) { const t = x[i] - mean; v += t * t; }
  const inv = 1 / Math.sqrt(v / d + LN_EPS);
  for (let i = 0; i < d; i++) out[i] = (x[i] - mean) * inv * w[i] + b[i];
  return out;
}

// y = W x (+ b), W stored [out, in] row-major like torch.nn.Linear.
function linear(W, b, x, nOut, out) {
  const nIn = x.length;
  for (let o = 0; o < nOut; o++) {
    let acc = b ? b[o] : 0;
    const row = o * nIn;
    for (let i = 0; i < nIn; i++) acc += W[row + i] * x[i];
    out[o] = acc;
  }
  return out;
}

export class Link {
  constructor(name, kind, src, dst, dSrc, dTgt, width, tensors) {
    Object.assign(this, { name, kind, src, dst, dSrc, dTgt, width, t: tensors });
  }

  // x: Float32Array [rows * dSrc] -> Float32Array [rows * dTgt]
  forward(x, rows = x.length / this.dSrc) {
    const { dSrc, dTgt, width, t } = this;
    if (x.length !== rows * dSrc) {
      throw new LinkMismatchError(`link ${this.name}: input has ${x.length} values, expected ${rows} x ${dSrc}`);
    }
    const out = new Float32Array(rows * dTgt);
    const ln = new Float32Array(dSrc);
    const hid = new Float32Array(width);
    const y = new Float32Array(dTgt);
    for (let r = 0; r < rows; r++) {
      const xr = x.subarray(r * dSrc, (r + 1) * dSrc);
      const o = out.subarray(r * dTgt, (r + 1) * dTgt);
      if (this.kind === "inner") {
        layerNorm(xr, t["pre_ln.weight"], t["pre_ln.bias"], ln);
        linear(t["w1.weight"], t["w1.bias"], ln, width, hid);
        for (let i = 0; i < width; i++) hid[i] = gelu(hid[i]);
        linear(t["w2.weight"], t["w2.bias"], hid, dTgt, y);
        for (let i = 0; i < dTgt; i++) y[i] += xr[i];
        layerNorm(y, t["post_ln.weight"], t["post_ln.bias"], o);
      } else {
        layerNorm(xr, t["ln_src.weight"], t["ln_src.bias"], ln);
        linear(t["w1.weight"], t["w1.bias"], ln, width, hid);
        for (let i = 0; i < width; i++) hid[i] = gelu(hid[i]);
        linear(t["w2.weight"], t["w2.bias"], hid, dTgt, y);
        const res = linear(t["w_res.weight"], null, xr, dTgt, new Float32Array(dTgt));
        for (let i = 0; i < dTgt; i++) y[i] += res[i];
        layerNorm(y, t["ln_tgt.weight"], t["ln_tgt.bias"], o);
      }
    }
    return out;
  }
}

// Tensor names and shapes of a link (train_links.links.expected_shapes).
export function expectedShapes(kind, dSrc, dTgt, width) {
  if (kind === "inner") {
    const d = dSrc;
    return { "pre_ln.weight": [d], "pre_ln.bias": [d], "w1.weight": [width, d], "w1.bias": [width],
      "w2.weight": [d, width], "w2.bias": [d], "post_ln.weight": [d], "post_ln.bias": [d] };
  }
  return { "ln_src.weight": [dSrc], "ln_src.bias": [dSrc], "w1.weight": [width, dSrc], "w1.bias": [width],
    "w2.weight": [dTgt, width], "w2.bias": [dTgt], "w_res.weight": [dTgt, dSrc], "ln_tgt.weight": [dTgt],
    "ln_tgt.bias": [dTgt] };
}

// ---------------------------------------------------------------------------------------------------------------
// decoding

// IEEE half bits -> float32 values.
export function fromFloat16Bits(bits) {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >>> 10) & 0x1f;
    const f = h & 0x3ff;
    if (e === 0) out[i] = s * f * 2 ** -24;
    else if (e === 31) out[i] = f ? NaN : s * Infinity;
    else out[i] = s * (1 + f / 1024) * 2 ** (e - 15);
  }
  return out;
}

function base64Bytes(data) {
  if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(data);
  const bin = atob(data);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

const bad = (where, what, fix = "re-train or re-export the links") => new LinkFormatError(`${where}: ${what}`, fix);

function isInt(v, lo, hi) {
  return Number.isInteger(v) && v >= lo && v <= hi;
}

function need(obj, key, type, where) {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj) || !(key in obj)) {
    throw bad(where, `missing '${key}'`);
  }
  const v = obj[key];
  const ok = type === "array" ? Array.isArray(v)
    : type === "object" ? v !== null && typeof v === "object" && !Array.isArray(v) : typeof v === type;
  const got = Array.isArray(v) ? "array" : v === null ? "null" : typeof v;
  if (!ok) throw bad(where, `'${key}' has the wrong type (${got})`);
  return v;
}

async function decodeTensor(spec, shape, dtype, where) {
  if (spec === null || typeof spec !== "object" || Array.isArray(spec)) {
    throw bad(where, "tensor entry must be an object");
  }
  const declared = need(spec, "shape", "array", where);
  if (JSON.stringify(declared) !== JSON.stringify(shape)) {
    throw bad(where, `shape ${JSON.stringify(declared).slice(0, 60)} does not match the agents' dims ` +
      `(expected ${JSON.stringify(shape)})`);
  }
  const n = shape.reduce((a, b) => a * b, 1);
  const nbytes = n * ITEMSIZE[dtype];
  const data = need(spec, "data", "string", where);
  const digest = need(spec, "sha256", "string", where);
  if (data.length !== 4 * Math.ceil(nbytes / 3)) {  // before decoding: no huge allocation on bad input
    throw bad(where, `base64 length ${data.length} does not match shape ${JSON.stringify(shape)} in ${dtype}`);
  }
  let raw;
  try {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(data)) throw new Error("alphabet");
    raw = base64Bytes(data);
  } catch {
    throw bad(where, "bad base64 data");
  }
  if (raw.length !== nbytes) throw bad(where, `decoded ${raw.length} bytes, expected ${nbytes}`);
  if ((await sha256Hex(raw)) !== digest) throw bad(where, "sha256 mismatch: the tensor data is corrupted");
  const buf = raw.byteOffset === 0 && raw.byteLength === raw.buffer.byteLength ? raw.buffer : raw.slice().buffer;
  const values = dtype === "f32" ? new Float32Array(buf) : fromFloat16Bits(new Uint16Array(buf));
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) throw bad(where, "tensor has NaN or infinite values");
  }
  return values;
}

// A validated recursivelink.json: {meta, pattern, agents: {name: entry}, links: {name: Link}, rounds, m}.
export class LinkSet {
  constructor(source, meta, pattern, agents, links) {
    Object.assign(this, { source, meta, pattern, agents, links });
    this.rounds = meta.rounds;
    this.m = meta.latent_steps;
  }

  get(name) {
    const l = this.links[name];
    if (!l) throw new LinkMismatchError(`${this.source}: no link ${name}`);
    return l;
  }

  inner(agent) { return this.get(`inner:${agent}`); }

  // dims: {agent name: hidden size of the loaded model} (like format.load(path, agent_dims))
  checkDims(dims) {
    checkDims(this.source, this.agents, dims);
  }

  // weights: {agent name: {sha256, where}} from each build's manifest.json (source.sha256). Links trained on other
  // weights run and answer nonsense: throw LinkMismatchError, or with `force` return the warnings instead.
  checkWeights(weights, { force = false } = {}) {
    const warnings = [];
    for (const [name, have] of Object.entries(weights)) {
      const a = this.agents[name];
      const want = a?.weights_sha256;
      if (!want || !have?.sha256 || want === have.sha256) continue;
      const msg = `${this.source}: agent ${name} was trained on ${a.model_id || "other weights"} (weights ` +
        `${want.slice(0, 12)}), but ${have.where} holds weights ${have.sha256.slice(0, 12)}`;
      if (!force) throw new LinkMismatchError(msg, "use links trained for these builds, or add force_links=1 to the URL");
      warnings.push(`${msg}; running anyway (force_links=1)`);
    }
    return warnings;
  }
}

function checkDims(source, agents, dims) {
  for (const [name, a] of Object.entries(agents)) {
    if (Object.hasOwn(dims, name) && dims[name] !== a.hidden_size) {
      throw new LinkMismatchError(`${source}: agent ${name} has hidden size ${a.hidden_size} in the links ` +
        `but ${dims[name]} in the model`, "use the links trained for these models");
    }
  }
  const missing = Object.keys(dims).filter((n) => !Object.hasOwn(agents, n)).sort();
  if (missing.length) {
    throw new LinkMismatchError(`${source}: no links for agent(s) ${JSON.stringify(missing)}`,
      "train links for these agents");
  }
}

// Validate a parsed recursivelink.json (train_links.format.load, same checks and order); `dims` (agent name ->
// hidden size of the loaded model) is checked as soon as the agents are read, before any tensor is decoded.
export async function parseLinks(doc, source = "recursivelink.json", dims = null) {
  const p = source;
  if (doc === null || typeof doc !== "object" || Array.isArray(doc) || doc.format !== FORMAT) {
    throw bad(p, 'not a recursivelink file (missing "format": "recursivelink")');
  }
  if (doc.version !== VERSION) {
    throw bad(p, `format version ${String(doc.version).slice(0, 20)} is not supported (this reader reads ${VERSION})`,
      "re-export the links with this mlcbuild version");
  }
  if (!isInt(doc.latent_steps, 1, MAX_STEPS)) throw bad(p, `latent_steps must be an integer in [1, ${MAX_STEPS}]`);
  if (!isInt(doc.rounds, 1, 64)) throw bad(p, "rounds must be an integer in [1, 64]");
  const agents = {};
  need(doc, "agents", "array", p).forEach((a, i) => {
    const w = `${p}: agents[${i}]`;
    const name = need(a, "name", "string", w);
    if (name in agents) throw bad(w, `duplicate agent ${JSON.stringify(name)}`);
    if (!isInt(a.hidden_size, 1, MAX_DIM)) throw bad(w, `hidden_size must be an integer in [1, ${MAX_DIM}]`);
    const slots = need(a, "slots", "array", w);
    const role = need(a, "role", "object", w);
    const texts = [role.system, role.user, role.target ?? "answer", ...slots];
    if (!texts.every((s) => typeof s === "string")) {
      throw bad(w, "slots and role.system / user / target must be strings");
    }
    const norms = need(a, "embedding_norm", "object", w);
    if (!["mean", "std"].every((k) => typeof norms[k] === "number" && Number.isFinite(norms[k]))) {
      throw bad(w, "embedding_norm needs finite mean and std");
    }
    agents[name] = a;
  });
  if (dims) checkDims(p, agents, dims);
  const pobj = need(doc, "pattern", "object", p);
  if (JSON.stringify(pobj.agents) !== JSON.stringify(Object.keys(agents))) {
    throw bad(p, `pattern agents ${JSON.stringify(pobj.agents).slice(0, 80)} differ from the agents ` +
      `${JSON.stringify(Object.keys(agents))}`);
  }
  let pattern;
  try {
    const roles = Object.fromEntries(Object.entries(agents).map(([n, a]) => [n, {
      name: n, system: a.role.system, user: a.role.user, slots: [...a.slots], target: a.role.target ?? "answer" }]));
    pattern = Pattern.fromJSON(pobj, roles);
  } catch (e) {
    throw bad(p, `malformed pattern (${e.message.slice(0, 200)})`);
  }
  const want = {};
  for (const n of Object.keys(agents)) want[`inner:${n}`] = ["inner", n, n];
  for (const e of pattern.edges) want[e.key] = ["outer", e.src, e.dst];
  const links = {};
  const list = need(doc, "links", "array", p);
  for (let i = 0; i < list.length; i++) {
    const link = list[i];
    const w = `${p}: links[${i}]`;
    const name = need(link, "name", "string", w);
    const kind = need(link, "kind", "string", w);
    if (kind !== "inner" && kind !== "outer") {
      throw bad(w, `unknown link kind ${JSON.stringify(kind.slice(0, 20))} (expected inner or outer)`);
    }
    const src = need(link, "src", "string", w);
    const dst = need(link, "dst", "string", w);
    for (const a of [src, dst]) {
      if (!(a in agents)) {
        throw bad(w, `link ${name} names agent ${JSON.stringify(a.slice(0, 40))}, which is not in the file's agents ` +
          JSON.stringify(Object.keys(agents)));
      }
    }
    const exp = want[name];
    if (!exp || exp[0] !== kind || exp[1] !== src || exp[2] !== dst || name in links) {
      throw bad(w, `link ${JSON.stringify(name.slice(0, 60))} (${kind} ${src}->${dst}) is not a link of pattern ` +
        `${pattern.name} or is listed twice`);
    }
    const dSrc = agents[src].hidden_size;
    const dTgt = agents[dst].hidden_size;
    if (link.src_dim !== dSrc || link.dst_dim !== dTgt) {
      throw bad(w, `dims ${link.src_dim}->${link.dst_dim} do not match the agents' hidden sizes ${dSrc}->${dTgt}`);
    }
    if (!isInt(link.width, 1, 16 * Math.max(dSrc, dTgt))) {
      throw bad(w, `width must be an integer in [1, ${16 * Math.max(dSrc, dTgt)}]`);
    }
    const dtype = link.dtype;
    if (!(dtype in ITEMSIZE)) {
      throw bad(w, `dtype ${JSON.stringify(String(dtype).slice(0, 20))} is not supported (expected f32 or f16)`);
    }
    const shapes = expectedShapes(kind, dSrc, dTgt, link.width);
    const ts = need(link, "tensors", "object", w);
    if (JSON.stringify(Object.keys(ts).sort()) !== JSON.stringify(Object.keys(shapes).sort())) {
      throw bad(w, `tensors ${JSON.stringify(Object.keys(ts).sort().slice(0, 12))} differ from the expected ` +
        JSON.stringify(Object.keys(shapes).sort()));
    }
    const tensors = {};
    for (const [k, shape] of Object.entries(shapes)) tensors[k] = await decodeTensor(ts[k], shape, dtype, `${w}.${k}`);
    links[name] = new Link(name, kind, src, dst, dSrc, dTgt, link.width, tensors);
  }
  const missing = Object.keys(want).filter((n) => !(n in links)).sort();
  if (missing.length) throw bad(p, `missing link(s) ${JSON.stringify(missing)}`);
  if ("training" in doc && (doc.training === null || typeof doc.training !== "object" || Array.isArray(doc.training))) {
    throw bad(p, "'training' must be an object");
  }
  const meta = Object.fromEntries(Object.entries(doc).filter(([k]) => k !== "links"));
  return new LinkSet(source, meta, pattern, agents, links);
}

// Fetch and validate a recursivelink.json; `dims` (agent name -> hidden size) also checks it against the models.
// The set's `sha256` is its file's (the identity hand-off frames carry between machines: mas/wire.js).
export async function loadLinks(url, dims = null) {
  const bytes = await fetchLinksBytes(url);
  let doc;
  try {
    doc = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw bad(url, `not valid JSON, truncated or corrupted (${String(e.message).slice(0, 80)})`);
  }
  const set = await parseLinks(doc, String(url), dims);
  set.sha256 = await sha256Hex(bytes);
  return set;
}

// A links file inside a build folder (`mlcbuild make --links`) is listed in that folder's manifest.json: then it comes
// from the Cache API like the weights, sha256-checked on every load. Elsewhere it is fetched as served.
async function fetchLinksBytes(url) {
  const u = new URL(url);
  const name = decodeURIComponent(u.pathname.split("/").pop());
  const base = new URL(".", u);
  let manifest = null;
  try {
    const res = await fetch(new URL("manifest.json", base));
    if (res.ok) manifest = await res.json();
  } catch { /* not a build folder */ }
  if (manifest?.files?.[name]) return new Uint8Array(await cachedFetchVerified(base, manifest, name));
  return new Uint8Array(await (await fetchOk(url)).arrayBuffer());
}
