"""Our CPU kernel for a decode step's attention over the cached pages (TVM's paged KV cache calls it
`batch_decode_paged_kv_cpu`, and `..._sliding_window` for sliding layers), swapped in for TVM's reference kernel.

TVM's CPU version walks every (sequence, query head, cached key) in one single-threaded scalar loop and rescales
the whole output row after each key; it was 4.2 ms of SmolLM2's 18.9 ms decode step at 130 cached positions. This
one keeps the signature and the results (output and base-2 log-sum-exp): every (sequence, query head) pair runs
on the thread pool, scores are computed first and normalised once (two passes, as our prefill kernel does), and
the q.k and p.v loops over the head dimension are vectorized. As in cpu_attention.py, RoPE is never inlined here
(our caches rotate q and k before they arrive: rotary_mode 0).
"""

import tvm
from tvm.script import tirx as T

from .cpu_attention import LANES, LOG2E, _swap

PAGE_SIZE = 16  # the CPU kernels' page size (TVM's default for these functions)


def decode_attention(h_q: int, h_kv: int, d: int, dtype: str, sliding: bool):
    group = h_q // h_kv
    lanes = LANES if d % LANES == 0 else 1
    chunks = d // lanes
    symbol = "batch_decode_paged_kv_cpu" + ("_sliding_window" if sliding else "")

    def info_shape(batch_size):
        return (3, batch_size) if sliding else (batch_size,)

    def info(length_info, row, b):  # row 0: last page's used slots; 1: window offset; 2: sink length
        return length_info[row, b] if sliding else (length_info[b] if row == 0 else 0)

    # fmt: off
    @T.prim_func(s_tir=True)
    def batch_decode_paged_kv(var_q: T.handle, var_pages: T.handle, var_page_indptr: T.handle,
                              var_page_values: T.handle, var_length_info: T.handle, var_k_rope_pos_offset: T.handle,
                              var_q_rope_position: T.handle, var_output: T.handle, var_lse: T.handle,
                              rotary_mode: T.int32, rope_scale: T.float32, rope_theta: T.float32,
                              sm_scale: T.float32):
        batch_size = T.int32()
        nnz_pages = T.int32()
        max_num_pages = T.int32()
        pi_off = T.int32()
        pv_off = T.int32()
        li_off = T.int32()
        kr_off = T.int32()
        qr_off = T.int32()
        q = T.match_buffer(var_q, (batch_size, h_q, d), dtype)
        pages = T.match_buffer(var_pages, (max_num_pages, 2, h_kv, PAGE_SIZE, d), dtype)
        page_indptr = T.match_buffer(var_page_indptr, (batch_size + 1,), "int32", elem_offset=pi_off)
        page_values = T.match_buffer(var_page_values, (nnz_pages,), "int32", elem_offset=pv_off)
        length_info = T.match_buffer(var_length_info, info_shape(batch_size), "int32", elem_offset=li_off)
        T.match_buffer(var_k_rope_pos_offset, (batch_size,), "int32", elem_offset=kr_off)  # unused: no inline RoPE
        T.match_buffer(var_q_rope_position, (batch_size,), "int32", elem_offset=qr_off)
        output = T.match_buffer(var_output, (batch_size, h_q, d), dtype)
        lse = T.match_buffer(var_lse, (batch_size, h_q), "float32")
        T.func_attr({"global_symbol": symbol})
        for bh in T.parallel(batch_size * h_q):
            with T.sblock("attn"):
                scores = T.sblock_alloc_buffer((nnz_pages * PAGE_SIZE,), "float32")
                part = T.sblock_alloc_buffer((lanes,), "float32", scope="local")
                acc = T.sblock_alloc_buffer((d,), "float32", scope="local")
                best = T.sblock_alloc_buffer((1,), "float32", scope="local")
                dot = T.sblock_alloc_buffer((1,), "float32", scope="local")
                total = T.sblock_alloc_buffer((1,), "float32", scope="local")
                b: T.let[T.int32] = bh // h_q
                h: T.let[T.int32] = bh % h_q
                hk: T.let[T.int32] = h // group
                p0: T.let[T.int32] = page_indptr[b]
                n_pages: T.let[T.int32] = page_indptr[b + 1] - p0
                sink: T.let[T.int32] = info(length_info, 2, b)
                start: T.let[T.int32] = info(length_info, 1, b)
                kv_len: T.let[T.int32] = T.if_then_else(
                    n_pages > 0, (n_pages - 1) * PAGE_SIZE + info(length_info, 0, b) - start + sink, 0)
                best[0] = T.float32(-5e4)
                for j in T.serial(kv_len):
                    # the slot of cached key j: sink keys first, then the window from its offset
                    slot: T.let[T.int32] = T.if_then_else(j < sink, j, j - sink + start)
                    page: T.let[T.int32] = page_values[p0 + slot // PAGE_SIZE]
                    for ln in T.vectorized(lanes):
                        part[ln] = T.float32(0)
                    for c in T.serial(chunks):
                        for ln in T.vectorized(lanes):
                            part[ln] = part[ln] + T.Cast("float32", q[b, h, c * lanes + ln]) * T.Cast(
                                "float32", pages[page, 0, hk, slot % PAGE_SIZE, c * lanes + ln])
                    dot[0] = T.float32(0)
                    for ln in T.serial(lanes):
                        dot[0] = dot[0] + part[ln]
                    scores[j] = dot[0] * sm_scale * T.float32(LOG2E)
                    best[0] = T.max(best[0], scores[j])
                total[0] = T.float32(0)
                for j in T.serial(kv_len):
                    scores[j] = T.exp2(scores[j] - best[0])
                    total[0] = total[0] + scores[j]
                for c in T.vectorized(d):
                    acc[c] = T.float32(0)
                for j in T.serial(kv_len):
                    slot: T.let[T.int32] = T.if_then_else(j < sink, j, j - sink + start)
                    page: T.let[T.int32] = page_values[p0 + slot // PAGE_SIZE]
                    w: T.let[T.float32] = scores[j] / total[0]
                    for c in T.vectorized(d):
                        acc[c] = acc[c] + w * T.Cast("float32", pages[page, 1, hk, slot % PAGE_SIZE, c])
                for c in T.vectorized(d):
                    output[b, h, c] = T.Cast(dtype, T.if_then_else(kv_len > 0, acc[c], T.float32(0)))
                lse[b, h] = T.if_then_else(kv_len > 0, best[0] + T.log2(total[0]), T.float32(-5e4))
    # fmt: on
    return batch_decode_paged_kv.with_attr("tirx.is_scheduled", True)


def swap_decode(h_q: int, h_kv: int, d: int, dtype: str) -> list[tvm.transform.Pass]:
    """Module passes replacing TVM's two CPU decode-attention kernels (full and sliding layers) with ours."""
    return [_swap(f"batch_decode_paged_kv_cpu{s}", lambda s=s: decode_attention(h_q, h_kv, d, dtype, bool(s)),
                  f"SwapDecodeAttention{s.title().replace('_', '')}") for s in ("", "_sliding_window")]
