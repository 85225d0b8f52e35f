"""A race-free attention-state merge for WebGPU, swapped in for TVM's `tir_attention_merge_state`.

When a sequence that already has KV entries prefills more than one position (chunked prefill, or a prompt
continued after `truncate`), TVM's paged KV cache computes attention twice, over the new positions and over
the cached pages, and merges the two partial results with their log-sum-exps. TVM's WebGPU merge kernel
spreads one (position, head) over several threads, and each thread reads the old log-sum-exp and then writes
the merged one: a read/write race between threads of a workgroup. Lock-step warps on desktop GPUs hide it;
SwiftShader does not, and the merged hidden states came out wrong (cosine 0.80 against a single prefill,
tests/test_models_webgpu.py). Here one thread owns one (position, head): it reads both states, merges the
head's vector and writes the new state, so no other thread can see a half-updated one.
"""

import tvm
from tvm.script import tirx as T

MAX_THREADS = 256  # SwiftShader's and WebGPU's default maxComputeInvocationsPerWorkgroup


def merge_state(num_heads: int, dtype: str):
    """merge(V, S, V_other, S_other) in place: V <- softmax-weighted mix of V and V_other, S <- log2-sum-exp2."""
    bdx = min(num_heads, MAX_THREADS)
    gdy = (num_heads + bdx - 1) // bdx

    # fmt: off
    @T.prim_func(s_tir=True)
    def merge_state_inplace(v: T.handle, s: T.handle, v_other: T.handle, s_other: T.handle):
        N = T.int32()
        D = T.int32()
        V = T.match_buffer(v, (N, num_heads, D), dtype)
        S = T.match_buffer(s, (N, num_heads), "float32")
        V_other = T.match_buffer(v_other, (N, num_heads, D), dtype)
        S_other = T.match_buffer(s_other, (N, num_heads), "float32")
        for bx in T.thread_binding(N, thread="blockIdx.x"):
            for by in T.thread_binding(gdy, thread="blockIdx.y"):
                for tx in T.thread_binding(bdx, thread="threadIdx.x"):
                    with T.sblock("merge"):
                        T.where(by * bdx + tx < num_heads)
                        h: T.let[T.int32] = by * bdx + tx
                        a: T.let[T.float32] = S[bx, h]
                        b: T.let[T.float32] = S_other[bx, h]
                        top: T.let[T.float32] = T.max(a, b)
                        ea: T.let[T.float32] = T.exp2(a - top)
                        eb: T.let[T.float32] = T.exp2(b - top)
                        for c in T.serial(D):
                            V[bx, h, c] = T.Cast(dtype, (T.Cast("float32", V[bx, h, c]) * ea
                                                         + T.Cast("float32", V_other[bx, h, c]) * eb) / (ea + eb))
                        S[bx, h] = T.log2(ea + eb) + top
    # fmt: on
    return merge_state_inplace.with_attr("tirx.is_scheduled", True)


def swap_merge_state(num_heads: int, dtype: str):
    """A module pass replacing TVM's WebGPU merge kernel with ours (same GlobalVar, same signature)."""

    @tvm.transform.module_pass(opt_level=0, name="SwapMergeState")
    def _pass(mod: tvm.ir.IRModule, _ctx) -> tvm.ir.IRModule:
        for gv, func in list(mod.functions.items()):
            attrs = getattr(func, "attrs", None)
            if attrs is not None and attrs.get("global_symbol") == "tir_attention_merge_state":
                mod[gv] = merge_state(num_heads, dtype).with_attr("global_symbol", "tir_attention_merge_state")
        return mod

    return _pass
