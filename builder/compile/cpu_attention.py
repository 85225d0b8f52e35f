"""Our CPU kernel for the self-attention of a prefill chunk (TVM's paged KV cache calls it
`batch_prefill_ragged_kv`), swapped in for TVM's reference kernel on CPU builds.

TVM's CPU version runs every (query, key, head) triple as scalar code in one single-threaded block,
including masked-out keys, which made it about a quarter of a 128-token SmolLM2 prefill. This one keeps the
same signature and results (outputs and base-2 log-sum-exp): heads run on the thread pool, only causally
visible keys are visited, and the q.k and p.v inner loops over the head dimension are vectorized.
RoPE is never inlined here: our caches use RopeMode.NORMAL or NONE, so q and k arrive rotated (rotary_mode 0).

For models with sliding-window layers (Gemma 3) it also replaces TVM's CPU attention of a prefill chunk over the
cached pages of a sliding layer (`batch_prefill_paged_kv_cpu_sliding_window`): TVM's version reads an uninitialized
running maximum when a query's first cached keys lie outside its window, and its hidden states came out NaN as soon
as a chunk followed a full window. Ours visits only the keys inside the window.
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


def sliding_prefill(h_q: int, h_kv: int, d: int, dtype: str, window: int, page_size: int = 16):
    """A prefill chunk's attention over a sliding layer's cached pages (TVM's `batch_prefill_paged_kv_cpu` signature,
    sliding variant; page_size is the CPU kernels' fixed 16). length_info[:, b] = (slots used in the last page,
    offset of the window in the first page, attention-sink length). With `causal`, chunk query i sees the last
    window - i - 1 cached keys (its chunk's first i + 1 positions fill the rest of its window); else all of them.
    A query that sees none gets zeros and a log-sum-exp of -5e4, which the merge with the chunk's own part ignores."""
    group = h_q // h_kv
    lanes = LANES if d % LANES == 0 else 1
    chunks = d // lanes

    # fmt: off
    @T.prim_func(s_tir=True)
    def batch_prefill_paged_kv_cpu_sliding_window(
            var_q: T.handle, var_q_indptr: T.handle, var_pages: T.handle, var_page_indptr: T.handle,
            var_page_values: T.handle, var_length_info: T.handle, var_k_rope_pos_offset: T.handle,
            var_q_rope_position: T.handle, var_output: T.handle, var_lse: T.handle, causal: T.int32,
            rotary_mode: T.int32, rope_scale: T.float32, rope_theta: T.float32, sm_scale: T.float32):
        batch_size = T.int32()
        total_len = T.int32()
        nnz_pages = T.int32()
        max_num_pages = T.int32()
        q_off = T.int32()
        pi_off = T.int32()
        pv_off = T.int32()
        li_off = T.int32()
        kr_off = T.int32()
        qr_off = T.int32()
        q = T.match_buffer(var_q, (total_len, h_q, d), dtype)
        q_indptr = T.match_buffer(var_q_indptr, (batch_size + 1,), "int32", elem_offset=q_off)
        pages = T.match_buffer(var_pages, (max_num_pages, 2, h_kv, page_size, d), dtype)
        page_indptr = T.match_buffer(var_page_indptr, (batch_size + 1,), "int32", elem_offset=pi_off)
        page_values = T.match_buffer(var_page_values, (nnz_pages,), "int32", elem_offset=pv_off)
        length_info = T.match_buffer(var_length_info, (3, batch_size), "int32", elem_offset=li_off)
        T.match_buffer(var_k_rope_pos_offset, (batch_size,), "int32", elem_offset=kr_off)  # unused: no inline RoPE
        T.match_buffer(var_q_rope_position, (total_len,), "int32", elem_offset=qr_off)
        output = T.match_buffer(var_output, (total_len, h_q, d), dtype)
        lse = T.match_buffer(var_lse, (total_len, h_q), "float32")
        T.func_attr({"global_symbol": "batch_prefill_paged_kv_cpu_sliding_window"})
        for h in T.parallel(h_q):
            with T.sblock("attn"):
                scores = T.sblock_alloc_buffer((nnz_pages * page_size,), "float32")
                part = T.sblock_alloc_buffer((lanes,), "float32", scope="local")
                acc = T.sblock_alloc_buffer((d,), "float32", scope="local")
                best = T.sblock_alloc_buffer((1,), "float32", scope="local")
                dot = T.sblock_alloc_buffer((1,), "float32", scope="local")
                total = T.sblock_alloc_buffer((1,), "float32", scope="local")
                hk: T.let[T.int32] = h // group
                for b in T.serial(batch_size):
                    q0: T.let[T.int32] = q_indptr[b]
                    p0: T.let[T.int32] = page_indptr[b]
                    n_pages: T.let[T.int32] = page_indptr[b + 1] - p0
                    sink: T.let[T.int32] = length_info[2, b]
                    kv_len: T.let[T.int32] = T.if_then_else(
                        n_pages > 0, (n_pages - 1) * page_size + length_info[0, b] - length_info[1, b] + sink, 0)
                    for i in T.serial(q_indptr[b + 1] - q0):
                        first: T.let[T.int32] = T.if_then_else(
                            causal > 0, T.max(kv_len - T.max(window - i - 1, 0), 0), 0)
                        best[0] = T.float32(-5e4)
                        for j in T.serial(kv_len - first):
                            pos: T.let[T.int32] = first + j
                            # the slot of cached key `pos`: sink keys first, then the window from its offset
                            slot: T.let[T.int32] = T.if_then_else(pos < sink, pos, pos - sink + length_info[1, b])
                            page: T.let[T.int32] = page_values[p0 + slot // page_size]
                            for ln in T.vectorized(lanes):
                                part[ln] = T.float32(0)
                            for c in T.serial(chunks):
                                for ln in T.vectorized(lanes):
                                    part[ln] = part[ln] + T.Cast("float32", q[q0 + i, h, c * lanes + ln]) * T.Cast(
                                        "float32", pages[page, 0, hk, slot % page_size, c * lanes + ln])
                            dot[0] = T.float32(0)
                            for ln in T.serial(lanes):
                                dot[0] = dot[0] + part[ln]
                            scores[j] = dot[0] * sm_scale * T.float32(LOG2E)
                            best[0] = T.max(best[0], scores[j])
                        total[0] = T.float32(0)
                        for j in T.serial(kv_len - first):
                            scores[j] = T.exp2(scores[j] - best[0])
                            total[0] = total[0] + scores[j]
                        for c in T.vectorized(d):
                            acc[c] = T.float32(0)
                        for j in T.serial(kv_len - first):
                            pos: T.let[T.int32] = first + j
                            slot: T.let[T.int32] = T.if_then_else(pos < sink, pos, pos - sink + length_info[1, b])
                            page: T.let[T.int32] = page_values[p0 + slot // page_size]
                            w: T.let[T.float32] = scores[j] / total[0]
                            for c in T.vectorized(d):
                                acc[c] = acc[c] + w * T.Cast("float32", pages[page, 1, hk, slot % page_size, c])
                        for c in T.vectorized(d):
                            output[q0 + i, h, c] = T.Cast(dtype, acc[c])
                        lse[q0 + i, h] = T.if_then_else(kv_len > first, best[0] + T.log2(total[0]), T.float32(-5e4))
    # fmt: on
    return batch_prefill_paged_kv_cpu_sliding_window.with_attr("tirx.is_scheduled", True)


def _swap(symbol: str, make, name: str):
    """A module pass replacing TVM's kernel `symbol` with `make()` (same GlobalVar, same signature)."""

    @tvm.transform.module_pass(opt_level=0, name=name)
    def _pass(mod: tvm.ir.IRModule, _ctx) -> tvm.ir.IRModule:
        for gv, func in list(mod.functions.items()):
            attrs = getattr(func, "attrs", None)
            if attrs is not None and attrs.get("global_symbol") == symbol:
                mod[gv] = make()
        return mod

    return _pass


def swap_ragged_prefill(h_q: int, h_kv: int, d: int, dtype: str):
    """A module pass replacing TVM's CPU ragged prefill kernel with ours."""
    return _swap("batch_prefill_ragged_kv", lambda: ragged_prefill(h_q, h_kv, d, dtype), "SwapRaggedPrefill")


def swap_sliding_prefill(h_q: int, h_kv: int, d: int, dtype: str, window: int):
    """A module pass replacing TVM's CPU prefill kernel over a sliding layer's cached pages with ours."""
    return _swap("batch_prefill_paged_kv_cpu_sliding_window", lambda: sliding_prefill(h_q, h_kv, d, dtype, window),
                 "SwapSlidingPrefill")
