// WebGPU pipelines of a model library, compiled ahead of the first call.
//
// tvmjs' asyncLoadWebGPUPipelines compiles every kernel in the library. TVM's paged KV cache brings kernels our
// ABI never runs: tree attention, MLA, the page copies that forking and tree decoding use, and sliding-window
// attention unless the model has sliding layers (Gemma 3). On SwiftShader compiling one attention kernel takes
// seconds. So we compile only the kernels we use, in parallel; anything else still works, because the runtime
// compiles a kernel that was not prebuilt on its first call.
const UNUSED = [/tree_attn/, /_mla_/, /compact_kv_copy/, /copy_single_page/, /debug_get_kv/];
const SLIDING = /sliding_window/;

// `sliding`: the model has sliding-window layers, whose prefill and decode kernels it runs on every call.
export function isPrebuilt(name, { sliding = false } = {}) {
  return !UNUSED.some((re) => re.test(name)) && (sliding || !SLIDING.test(name));
}

// Compile the kernels of `mod` (a VM's internal module) that isPrebuilt() picks; returns {compiled, skipped, names}
// (names: the kernels compiled).
export async function loadPipelines(tvm, mod, onProgress = () => {}, { sliding = false } = {}) {
  const gpu = tvm.lib.webGPUContext;
  if (!gpu) throw new Error("WebGPU is not initialised (call tvm.initWebGPU first)");
  tvm.beginScope();
  const fmap = JSON.parse(mod.getFunction("webgpu.get_fmap", true)());
  const getShader = tvm.detachFromCurrentScope(mod.getFunction("webgpu.get_shader"));
  const setPrebuilt = tvm.detachFromCurrentScope(mod.getFunction("webgpu.update_prebuild"));
  tvm.endScope();
  const names = Object.keys(fmap).filter((n) => isPrebuilt(n, { sliding }));
  let done = 0;
  await Promise.all(names.map(async (name) => {
    const fn = await gpu.createShaderAsync(fmap[name], getShader(name));
    tvm.beginScope();
    setPrebuilt(name, fn);
    tvm.endScope();
    done += 1;
    onProgress({ fraction: done / names.length, text: `GPU kernels ${done}/${names.length}` });
  }));
  getShader.dispose();
  setPrebuilt.dispose();
  return { compiled: names.length, skipped: Object.keys(fmap).length - names.length, names };
}
