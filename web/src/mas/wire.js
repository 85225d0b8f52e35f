// Hand-off frames: one latent hand-off on the wire between agents on different machines (docs/wire.md). The same
// format as builder/run/wire.py: an 88-byte little-endian header (magic "MLCH", version, dtype, round, sequence
// number, rows, dim, the links file's sha256, the sender's weights sha256, the edge's name lengths), the edge names,
// the [rows, dim] block after its outer link (f32 or f16), and a CRC-32 of everything before it. decodeFrame
// refuses, with a HandoffFrameError naming what is wrong, any frame that must not reach a model.
import { HandoffFrameError } from "../runtime/errors.js";
import { fromFloat16Bits } from "./links.js";
import { toFloat16Bits } from "../runtime/model.js";

export const MAGIC = "MLCH";
export const VERSION = 1;
export const HEADER_SIZE = 88;
export const MAX_FRAME = 16 << 20;
export const MAX_ROWS = 4096;
export const MAX_DIM = 1 << 16;
const DTYPES = { f32: 1, f16: 2 };
const CODES = { 1: "f32", 2: "f16" };

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

// CRC-32 (IEEE, as zlib.crc32) of bytes.
export function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function hexBytes(hex, what) {
  const s = hex || "0".repeat(64);
  if (!/^[0-9a-f]{64}$/.test(s)) throw new HandoffFrameError(`hand-off frame: ${what} is not a sha256 hex digest`);
  return Uint8Array.from(s.match(/../g), (b) => parseInt(b, 16));
}

const hexOf = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

// frame: {src, dst, slot, round, seq, data (Float32Array rows*dim), rows, dim, linksSha256, weightsSha256, dtype}
export function encodeFrame(frame) {
  const { src, dst, slot, round, seq, data, rows, dim, linksSha256, weightsSha256, dtype = "f32" } = frame;
  if (!DTYPES[dtype]) throw new HandoffFrameError(`hand-off frame: dtype ${dtype} is not supported`, "use f32 or f16");
  if (data.length !== rows * dim || rows < 1 || rows > MAX_ROWS || dim < 1 || dim > MAX_DIM) {
    throw new HandoffFrameError(`hand-off frame: a block of ${data.length} values cannot be sent as ${rows} x ${dim}`);
  }
  for (const v of data) {
    if (!Number.isFinite(v) || (dtype === "f16" && Math.abs(v) > 65504)) {
      throw new HandoffFrameError(`hand-off frame: edge ${src}->${dst}:${slot} holds values that ${dtype} ` +
        "cannot carry", "send f32 frames");
    }
  }
  const names = [src, dst, slot].map((s) => new TextEncoder().encode(s));
  if (names.some((n) => n.length < 1 || n.length > 255)) throw new HandoffFrameError("hand-off frame: bad edge name");
  const payload = dtype === "f16" ? new Uint8Array(toFloat16Bits(data).buffer)
    : new Uint8Array(Float32Array.from(data).buffer);
  const nameBytes = names.reduce((a, n) => a + n.length, 0);
  const size = HEADER_SIZE + nameBytes + payload.length + 4;
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  out.set(new TextEncoder().encode(MAGIC), 0);
  v.setUint8(4, VERSION);
  v.setUint8(5, DTYPES[dtype]);
  v.setUint16(6, round, true);
  v.setUint32(8, seq >>> 0, true);
  v.setUint16(12, rows, true);
  v.setUint32(16, dim, true);
  out.set(hexBytes(linksSha256, "links sha256"), 20);
  out.set(hexBytes(weightsSha256, "weights sha256"), 52);
  names.forEach((n, i) => v.setUint8(84 + i, n.length));
  let at = HEADER_SIZE;
  for (const n of names) { out.set(n, at); at += n.length; }
  out.set(payload, at);
  v.setUint32(size - 4, crc32(out.subarray(0, size - 4)), true);
  return out;
}

// The bytes of one frame for `edgeKey` ("src->dst:slot") carrying rows x dim values.
export function frameSize(edgeKey, rows, dim, dtype = "f32") {
  const [src, rest] = edgeKey.split("->");
  const names = new TextEncoder().encode(src + rest.replace(":", "")).length;
  return HEADER_SIZE + names + rows * dim * (dtype === "f16" ? 2 : 4) + 4;
}

const refuse = (what, fix) => new HandoffFrameError(`hand-off frame refused: ${what}`, fix);

// The total size a header declares (null while fewer bytes than a header have arrived).
export function peekSize(bytes) {
  if (bytes.length < HEADER_SIZE) return null;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const item = v.getUint8(5) === DTYPES.f16 ? 2 : 4;
  return HEADER_SIZE + v.getUint8(84) + v.getUint8(85) + v.getUint8(86) +
    v.getUint16(12, true) * v.getUint32(16, true) * item + 4;
}

// Read and check one frame. weights: {agent: weights sha256 the links file records ("" or missing: not checked)};
// expect: {edge key: [rows, dim]} this side waits for; round: the round it waits for (null: any).
export function decodeFrame(input, { linksSha256, weights = {}, expect, round = null }) {
  const bytes = input instanceof Uint8Array ? input : new Uint8Array(input);
  const n = bytes.length;
  if (n < HEADER_SIZE + 4) {
    throw refuse(`truncated: ${n} bytes, a frame has at least ${HEADER_SIZE + 4}`,
      "the connection dropped mid-frame; run again");
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = new TextDecoder().decode(bytes.subarray(0, 4));
  if (magic !== MAGIC) throw refuse(`not a hand-off frame (starts with ${JSON.stringify(magic)})`, "connect to an mlcbuild peer");
  const version = v.getUint8(4);
  if (version !== VERSION) {
    throw refuse(`format version ${version}, this side reads ${VERSION}`, "run the same mlcbuild version on both sides");
  }
  const dtype = CODES[v.getUint8(5)];
  if (!dtype) throw refuse(`dtype code ${v.getUint8(5)} is unknown`, "send f32 or f16 frames");
  const rows = v.getUint16(12, true);
  const dim = v.getUint32(16, true);
  const size = peekSize(bytes);
  if (size > MAX_FRAME || rows > MAX_ROWS || dim > MAX_DIM) {
    throw refuse(`oversized: declares ${rows} x ${dim} (${size} bytes), at most ${MAX_FRAME} bytes`,
      "send one hand-off per frame");
  }
  if (n < size) throw refuse(`truncated: ${n} of ${size} bytes`, "the connection dropped mid-frame; run again");
  if (n > size) throw refuse(`${n - size} bytes after the frame's end`, "send one frame per message");
  if (v.getUint32(size - 4, true) !== crc32(bytes.subarray(0, size - 4))) {
    throw refuse("bad checksum: the frame was corrupted on the way", "run again; check the link between the peers");
  }
  let at = HEADER_SIZE;
  const names = [];
  for (let i = 0; i < 3; i++) {
    const k = v.getUint8(84 + i);
    try {
      names.push(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(at, at + k)));
    } catch {
      throw refuse("edge names are not UTF-8", "connect to an mlcbuild peer");
    }
    at += k;
  }
  const [src, dst, slot] = names;
  const edge = `${src}->${dst}:${slot}`;
  const lsha = hexOf(bytes.subarray(20, 52));
  const wsha = hexOf(bytes.subarray(52, 84));
  if (lsha !== linksSha256) {
    throw refuse(`edge ${edge} was sent with other links (links sha256 ${lsha.slice(0, 12)}, here ` +
      `${String(linksSha256).slice(0, 12)})`, "load the same recursivelink.json on every peer");
  }
  const want = weights[src] || "";
  if (want && wsha !== want) {
    throw refuse(`agent ${src} runs other weights (${wsha.slice(0, 12)}) than the links were trained on ` +
      `(${want.slice(0, 12)})`, `give ${src} the build its links were trained for`);
  }
  if (!Object.hasOwn(expect, edge)) {
    throw refuse(`unexpected edge ${edge}`, `this side waits for ${Object.keys(expect).sort().join(", ") || "no hand-off"}`);
  }
  const rnd = v.getUint16(6, true);
  if (round !== null && rnd !== round) {
    throw refuse(`edge ${edge} is for round ${rnd}, this side is in round ${round}`, "restart both peers' run");
  }
  const [wantRows, wantDim] = expect[edge];
  if (rows !== wantRows || dim !== wantDim) {
    throw refuse(`edge ${edge} carries a ${rows} x ${dim} block, expected ${wantRows} x ${wantDim}`,
      "use the same latent steps and builds on every peer");
  }
  const raw = bytes.slice(at, size - 4); // a copy: aligned for the typed-array views
  const data = dtype === "f16" ? fromFloat16Bits(new Uint16Array(raw.buffer)) : new Float32Array(raw.buffer);
  if (!data.every(Number.isFinite)) {
    throw refuse(`edge ${edge} carries NaN or infinite values`, "check the sender's links and build");
  }
  return { src, dst, slot, edge, round: rnd, seq: v.getUint32(8, true), data, rows, dim, dtype, bytes: size,
    linksSha256: lsha, weightsSha256: wsha };
}
