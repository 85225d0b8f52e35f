"""Our CPU kernel for the self-attention of a prefill chunk (TVM's paged KV cache calls it
`batch_prefill_ragged_kv`), swapped in for TVM's reference kernel on CPU builds.

TVM's CPU version runs every (query, key, head) triple as scalar code in one single-threaded block,
including masked-out keys, which made it about a quarter of a 128-token SmolLM2 prefill. This one keeps the
same signature and results (outputs and base-2 log-sum-exp): heads run on the thread pool, only causally
visible keys are visited, and the q.k and p.v inner loops over the head dimension are vectorized.
RoPE is never inlined here: our caches use RopeMode.NORMAL, so q and k arrive rotated (rotary_mode 0).
"""

import math

import tvm
from tvm.script import tirx as T

LANES = 16  # partial sums of the q.k dot product (one AVX-512 register of f32)
LOG2E = math.log2(math.e)


def ragged_prefill(h_q: int, h_kv: int, d: int, dtype: str):
    group = h_q // h_kv
    chunks = d // LANES

    # fmt: off
    @T.prim_func(s_tir=True)
    def batch_prefill_ragged_kv(var_q: T.handle, var_q_indptr: T.handle, var_k: T.handle, var_v: T.handle,
                                var_kv_indptr: T.handle, var_q_rope_position: T.handle,
                                var_k_rope_pos_offset: T.handle, var_output: T.handle, var_lse: T.handle,
                                causal: T.int32, rotary_mode: T.int32, rope_scale: T.float32,
                                rope_theta: T.float32, sm_scale: T.float32):
        batch_size = T.int32()
        qo_len = T.int32()
        kv_len = T.int32()
        q_off = T.int32()
        kv_off = T.int32()
        qr_off = T.int32()
        kr_off = T.int32()
        q = T.match_buffer(var_q, (qo_len, h_q, d), dtype)
        q_indptr = T.match_buffer(var_q_indptr, (batch_size + 1,), "int32", elem_offset=q_off)
        k = T.match_buffer(var_k, (kv_len, h_kv, d), dtype)
        v = T.match_buffer(var_v, (kv_len, h_kv, d), dtype)
        kv_indptr = T.match_buffer(var_kv_indptr, (batch_size + 1,), "int32", elem_offset=kv_off)
        T.match_buffer(var_q_rope_position, (qo_len,), "int32", elem_offset=qr_off)  # unused: no inline RoPE
        T.match_buffer(var_k_rope_pos_offset, (batch_size,), "int32", elem_offset=kr_off)
        output = T.match_buffer(var_output, (qo_len, h_q, d), dtype)
        lse = T.match_buffer(var_lse, (qo_len, h_q), "float32")
        T.func_attr({"global_symbol": "batch_prefill_ragged_kv"})
        for h in T.parallel(h_q):
            with T.sblock("attn"):
                scores = T.sblock_alloc_buffer((kv_len,), "float32")
                part = T.sblock_alloc_buffer((LANES,), "float32", scope="local")
                acc = T.sblock_alloc_buffer((d,), "float32", scope="local")
                best = T.sblock_alloc_buffer((1,), "float32", scope="local")
                dot = T.sblock_alloc_buffer((1,), "float32", scope="local")
                total = T.sblock_alloc_buffer((1,), "float32", scope="local")
                hk: T.let[T.int32] = h // group
                for b in T.serial(batch_size):
                    q0: T.let[T.int32] = q_indptr[b]
                    k0: T.let[T.int32] = kv_indptr[b]
                    n_q: T.let[T.int32] = q_indptr[b + 1] - q0
                    n_k: T.let[T.int32] = kv_indptr[b + 1] - k0
                    for i in T.serial(n_q):
                        # keys this query may see: all of them, or up to its own position when causal
                        n_vis: T.let[T.int32] = T.if_then_else(causal > 0, T.min(n_k - n_q + i + 1, n_k), n_k)
                        best[0] = T.float32(-5e4)
                        for j in T.serial(n_vis):
                            for ln in T.vectorized(LANES):
                                part[ln] = T.float32(0)
                            for c in T.serial(chunks):
                                for ln in T.vectorized(LANES):
                                    part[ln] = part[ln] + T.Cast("float32", q[q0 + i, h, c * LANES + ln]) * T.Cast(
                                        "float32", k[k0 + j, hk, c * LANES + ln])
                            dot[0] = T.float32(0)
                            for ln in T.serial(LANES):
                                dot[0] = dot[0] + part[ln]
                            scores[j] = dot[0] * sm_scale * T.float32(LOG2E)
                            best[0] = T.max(best[0], scores[j])
                        total[0] = T.float32(0)
                        for j in T.serial(n_vis):
                            scores[j] = T.exp2(scores[j] - best[0])
                            total[0] = total[0] + scores[j]
                        for c in T.vectorized(d):
                            acc[c] = T.float32(0)
                        for j in T.serial(n_vis):
                            w: T.let[T.float32] = scores[j] / total[0]
                            for c in T.vectorized(d):
                                acc[c] = acc[c] + w * T.Cast("float32", v[k0 + j, hk, c])
                        for c in T.vectorized(d):
                            output[q0 + i, h, c] = T.Cast(dtype, acc[c])
                        lse[q0 + i, h] = best[0] + T.log2(total[0])
    # fmt: on
    return batch_prefill_ragged_kv.with_attr("tirx.is_scheduled", True)


def swap_ragged_prefill(h_q: int, h_kv: int, d: int, dtype: str):
    """A module pass replacing TVM's CPU ragged prefill kernel with ours (same GlobalVar, same signature)."""

    @tvm.transform.module_pass(opt_level=0, name="SwapRaggedPrefill")
    def _pass(mod: tvm.ir.IRModule, _ctx) -> tvm.ir.IRModule:
        for gv, func in list(mod.functions.items()):
            attrs = getattr(func, "attrs", None)
            if attrs is not None and attrs.get("global_symbol") == "batch_prefill_ragged_kv":
                mod[gv] = ragged_prefill(h_q, h_kv, d, dtype)
        return mod

    return _pass
