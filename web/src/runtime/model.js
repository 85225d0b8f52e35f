// One model built by `mlcbuild make`, running on WebGPU through @mlc-ai/web-runtime (tvmjs).
// The JS side of the model ABI (builder/models/abi.py): embed, prefill, decode, get_last_hidden,
// decode_last_hidden, get_logits. A Model holds the weights once; each Sequence (model.sequence()) has its own
// TVM paged KV cache, and the Model's own methods run on its main sequence. Host arrays in, host Float32Arrays
// out; GPU temporaries are freed per call through tvmjs scopes.
import { fetchJSON } from "./fetching.js";
import { cachedFetchVerified, verifyTensorCache } from "./cache.js";
import { loadPipelines } from "./pipelines.js";
import { DeviceLimitError, MlcbuildError, NoGPUAdapterError, ShaderF16UnsupportedError, WebGPUUnavailableError }
  from "./errors.js";

const PAGE_SIZE = 16;

function tvmjsGlobal() {
  const t = globalThis.tvmjs;
  if (!t) throw new MlcbuildError("tvmjs is not loaded", "include @mlc-ai/web-runtime/lib/index.js first");
  return t;
}

const NO_ADAPTER = "this browser has WebGPU but offers no GPU adapter";
const NO_ADAPTER_FIX = "turn on hardware acceleration in the browser settings and update the GPU driver; on Linux " +
  "start Chrome/Chromium with --enable-unsafe-webgpu --enable-features=Vulkan (or --use-webgpu-adapter=swiftshader " +
  "for a CPU fallback); check chrome://gpu";

// One shared WebGPU device per page: every model instance runs on it.
let gpuPromise = null;
export function detectGPU() {
  if (!gpuPromise) {
    gpuPromise = (async () => {
      if (!navigator.gpu && globalThis.isSecureContext === false) { // WebGPU exists in secure contexts only
        throw new WebGPUUnavailableError("this page is not a secure context (plain http from a host other than " +
          "localhost), so the browser hides WebGPU", "open it over https (e.g. GitHub Pages) or from " +
          "http://localhost / http://127.0.0.1");
      }
      if (!navigator.gpu) {
        throw new WebGPUUnavailableError("this browser has no WebGPU (navigator.gpu is missing)",
          "use a recent Chrome/Edge, or Chromium with --enable-unsafe-webgpu, over https or localhost");
      }
      // ask for an adapter ourselves first: with none, tvmjs' own error names no fix
      const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" }).catch(() => null);
      if (!adapter) throw new NoGPUAdapterError(NO_ADAPTER, NO_ADAPTER_FIX);
      const out = await tvmjsGlobal().detectGPUDevice().catch(() => null);
      if (!out) throw new NoGPUAdapterError(NO_ADAPTER, NO_ADAPTER_FIX);
      return out;
    })();
  }
  return gpuPromise;
}

export class Model {
  static async load(baseUrl, { onProgress = () => {}, maxSeqLen = 2048, log = () => {} } = {}) {
    const times = {}; // ms per load stage, for the benchmarks and the playground's status line
    let t = performance.now();
    const lap = (k) => { const n = performance.now(); times[k] = n - t; t = n; };
    const base = new URL(baseUrl, location.href);
    const manifest = await fetchJSON(new URL("manifest.json", base));
    const chatConfig = await fetchJSON(new URL("mlc-chat-config.json", base));
    const libName = manifest.libs?.webgpu;
    if (!libName) throw new MlcbuildError(`${base} has no WebGPU library`, "build it with mlcbuild make --target webgpu");
    // every shard's sha256 against manifest.json before tvmjs reads them (it loads from the cache filled here)
    const verified = await verifyTensorCache(base.href, manifest,
      { onProgress: (p) => onProgress({ stage: "verify", fraction: p.fraction, text: p.text }) });
    lap("verify_ms");
    const gpu = await detectGPU();
    const f16 = chatConfig.quantization.includes("f16");
    if (f16 && !gpu.adapter.features.has("shader-f16")) {
      throw new ShaderF16UnsupportedError(`${manifest.name} ${chatConfig.quantization} needs shader-f16, which this ` +
        "GPU does not offer", `use the f32 build: ${chatConfig.quantization.replace("f16", "f32")}`);
    }
    lap("config_ms");
    onProgress({ stage: "wasm", fraction: 0 });
    const wasm = await cachedFetchVerified(base, manifest, libName);  // Cache API, sha256-checked every load
    lap("wasm_fetch_ms");
    const tvmjs = tvmjsGlobal();
    const tvm = await tvmjs.instantiate(wasm, tvmjs.createPolyfillWASI(), log);
    lap("wasm_instantiate_ms");
    tvm.initWebGPU(gpu.device);
    tvm.registerInitProgressCallback((r) => onProgress({ stage: "weights", fraction: r.progress, text: r.text }));
    const largest = Math.max(...Object.entries(manifest.files).filter(([n]) => n.startsWith("params_shard_"))
      .map(([, r]) => r.size));
    if (largest > gpu.device.limits.maxStorageBufferBindingSize) {
      throw new DeviceLimitError(`a weight shard of ${largest} bytes exceeds this GPU's storage binding limit ` +
        `(${gpu.device.limits.maxStorageBufferBindingSize})`, "use a smaller model or quantization");
    }
    await tvm.fetchTensorCache(base.href, tvm.webgpu(), { cacheScope: `mlcbuild/${manifest.name}-${manifest.quantization}` });
    lap("weights_ms");
    const model = new Model(tvm, manifest, chatConfig, maxSeqLen);
    model.verified = verified;
    model.baseUrl = base.href;
    await model.init((k) => onProgress({ stage: "kernels", fraction: k.fraction, text: k.text }));
    lap("pipelines_ms");
    const { compiled, skipped } = model.pipelines;
    model.loadTimes = { ...times, kernels_compiled: compiled, kernels_skipped: skipped };
    onProgress({ stage: "ready", fraction: 1 });
    return model;
  }

  constructor(tvm, manifest, chatConfig, maxSeqLen) {
    this.tvm = tvm;
    this.manifest = manifest;
    this.chatConfig = chatConfig;
    this.dev = tvm.webgpu();
    this.maxSeqLen = maxSeqLen;
  }

  async init(onKernels = () => {}) {
    const tvm = this.tvm;
    tvm.beginScope();
    this.vm = tvm.detachFromCurrentScope(tvm.createVirtualMachine(this.dev));
    // sliding layers (Gemma 3) run the cache's sliding-window kernels on every call: compile those up front too
    const sliding = (this.chatConfig.model_config?.layer_types ?? []).includes("sliding_attention");
    this.pipelines = await loadPipelines(tvm, this.vm.getInternalModule(), onKernels, { sliding });
    this.meta = JSON.parse(this.vm.getFunction("_metadata")());
    this.params = tvm.detachFromCurrentScope(tvm.getParamsFromCacheByName(this.meta.params.map((p) => p.name)));
    const fn = (n) => tvm.detachFromCurrentScope(this.vm.getFunction(n));
    this.fns = Object.fromEntries(["embed", "prefill", "decode", "get_last_hidden", "decode_last_hidden", "get_logits",
      "create_tir_paged_kv_cache"].map((n) => [n, fn(n)]));
    const g = (n) => tvm.detachFromCurrentScope(tvm.getGlobalFunc(n));
    this.addSequence = g("vm.builtin.kv_state_add_sequence");
    this.beginForward = g("vm.builtin.kv_state_begin_forward");
    this.endForward = g("vm.builtin.kv_state_end_forward");
    this.popN = g("vm.builtin.kv_state_popn");
    tvm.endScope();
    this.dtype = this.meta.dtype;
    this.hiddenSize = this.meta.hidden_size;
    this.vocabSize = this.meta.vocab_size;
    this.maxSeqLen = Math.min(this.maxSeqLen, this.meta.context_window_size);
    this.chunk = this.meta.prefill_chunk_size;
    this.mainSeq = null;
  }

  // The sequence the Model's own methods use, made on first use (a KV cache costs memory; MAS agents use their own).
  get main() { return (this.mainSeq ??= this.sequence()); }

  // A new, empty sequence with its own KV cache on these weights (one per agent in the MAS).
  sequence(maxSeqLen = this.maxSeqLen) { return new Sequence(this, Math.min(maxSeqLen, this.maxSeqLen)); }

  get length() { return this.main.length; }
  reset() { this.main.reset(); }
  async hidden(embeds) { return this.main.hidden(embeds); }
  async decodeHidden(embed) { return this.main.decodeHidden(embed); }
  async decode(embed) { return this.main.decode(embed); }
  async prefill(embeds) { return this.main.prefill(embeds); }

  async toHost(t) {
    const host = this.tvm.empty(t.shape, "float32", this.tvm.cpu());
    host.copyFrom(t);
    await this.dev.sync();
    return new Float32Array(host.toArray());
  }

  upload(data, shape) {
    const t = this.tvm.empty(shape, this.dtype, this.dev);
    if (this.dtype === "float32") t.copyFrom(data instanceof Float32Array ? data : Float32Array.from(data));
    else t.copyFromRawBytes(new Uint8Array(toFloat16Bits(data).buffer));
    return t;
  }

  // Token ids -> embeddings [n, H] (float32 on the host).
  async embed(ids) {
    const n = ids.length;
    for (const id of ids) {
      if (id < 0 || id >= this.vocabSize) throw new MlcbuildError(`token id ${id} outside the vocabulary`);
    }
    this.tvm.beginScope();
    try {
      const idsT = this.tvm.empty([n], "int32", this.dev).copyFrom(Int32Array.from(ids));
      return await this.toHost(this.fns.embed(idsT, this.params));
    } finally {
      this.tvm.endScope();
    }
  }

  async logits(hidden) {
    const n = hidden.length / this.hiddenSize;
    this.tvm.beginScope();
    try {
      const h = this.tvm.empty([1, n, this.hiddenSize], "float32", this.dev).copyFrom(hidden);
      return await this.toHost(this.fns.get_logits(h, this.params));
    } finally {
      this.tvm.endScope();
    }
  }
}

// One sequence in its own paged KV cache: every call is a forward over new positions; the cache grows until
// reset() or truncate(n), which keeps the first n positions (a prompt prefix shared by rounds).
export class Sequence {
  constructor(model, maxSeqLen) {
    Object.assign(this, { model, maxSeqLen, kv: null, length: 0 });
    this.reset();
  }

  reset() {
    const { tvm, fns, chunk } = this.model;
    if (this.kv) this.kv.dispose();
    tvm.beginScope();
    const s = (x) => tvm.makeShapeTuple([x]);
    this.kv = tvm.detachFromCurrentScope(fns.create_tir_paged_kv_cache(s(1), s(this.maxSeqLen), s(chunk),
      s(PAGE_SIZE), s(0)));
    this.model.addSequence(this.kv, seqId());
    tvm.endScope();
    this.length = 0;
  }

  // Keep the first n positions: their KV entries stay valid, causal attention never looked ahead.
  truncate(n) {
    if (!(n >= 0 && n <= this.length)) {
      throw new Error(`cannot truncate a sequence of ${this.length} positions to ${n}`);
    }
    if (n === this.length) return;
    const tvm = this.model.tvm;
    tvm.beginScope();
    this.model.popN(this.kv, seqId(), new (tvmjsGlobal().Scalar)(this.length - n, "int64"));
    tvm.endScope();
    this.length = n;
  }

  // Run `fn` over n new positions given as host embeddings [n * H]; returns the host output.
  async forward(fn, embeds, n) {
    if (this.length + n > this.maxSeqLen) {
      throw new MlcbuildError(`sequence of ${this.length + n} positions exceeds the KV cache (${this.maxSeqLen})`);
    }
    const model = this.model;
    const tvm = model.tvm;
    tvm.beginScope();
    try {
      const x = model.upload(embeds, [1, n, model.hiddenSize]);
      model.beginForward(this.kv, tvm.makeShapeTuple([0]), tvm.makeShapeTuple([n]));
      const ret = model.fns[fn](x, this.kv, model.params);
      model.endForward(this.kv);
      this.length += n;
      return await model.toHost(ret.get(0));
    } finally {
      tvm.endScope();
    }
  }

  async chunked(fn, embeds) {
    const { hiddenSize: H, chunk } = this.model;
    const n = embeds.length / H;
    const parts = [];
    for (let i = 0; i < n; i += chunk) {
      const m = Math.min(chunk, n - i);
      parts.push(await this.forward(fn, embeds.subarray(i * H, (i + m) * H), m));
    }
    return parts;
  }

  async hidden(embeds) { return concat(await this.chunked("get_last_hidden", embeds)); }
  async decodeHidden(embed) { return this.forward("decode_last_hidden", embed, 1); }
  async decode(embed) { return this.forward("decode", embed, 1); }

  // Logits [V] of the last of the new positions.
  async prefill(embeds) {
    const { hiddenSize: H, chunk } = this.model;
    const n = embeds.length / H;
    const tailStart = Math.floor(Math.max(n - 1, 0) / chunk) * chunk;
    if (tailStart > 0) await this.chunked("get_last_hidden", embeds.subarray(0, tailStart * H));
    return this.forward("prefill", embeds.subarray(tailStart * H), n - tailStart);
  }
}

// A bare JS number reaches a packed function as a float; sequence ids are int64.
const seqId = () => new (tvmjsGlobal().Scalar)(0, "int64");

export function concat(parts) {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

export function argmax(a) {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

// float32 -> IEEE half bits (round to nearest even), for f16 libraries.
export function toFloat16Bits(data) {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) {
    f[0] = data[i];
    const x = u[0];
    const sign = (x >>> 16) & 0x8000;
    let exp = ((x >>> 23) & 0xff) - 127 + 15;
    let mant = x & 0x7fffff;
    if (((x >>> 23) & 0xff) === 0xff) { out[i] = sign | 0x7c00 | (mant ? 0x200 : 0); continue; }
    if (exp >= 31) { out[i] = sign | 0x7c00; continue; }
    if (exp <= 0) {
      if (exp < -10) { out[i] = sign; continue; }
      mant |= 0x800000;
      const shift = 14 - exp;
      let h = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && (h & 1))) h++;
      out[i] = sign | h;
      continue;
    }
    let h = (exp << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
    out[i] = sign | h;
  }
  return out;
}
