"""The CPU compile pipeline: fuse, then schedule the kernels that matter for the host CPU.

TVM's default CPU pipeline neither fuses nor schedules, so every op runs as a single-threaded scalar loop
nest. Here, on top of fusion:
  - linear layers (builder/models/layers.py `matmul_nt`: one reduction `matmul`, an optional int4
    `dequantize` stage, an optional elementwise epilogue such as the residual add):
      few rows, known (decode): a GEMV; GEMV_ROWS weight rows read side by side, each dot product in 8-lane
                          partial sums (rfactor), dequantization inlined into the load, row groups on the pool;
                          int8 weights (q4f32_2's LM head) with lanes over whole words, one weight row at a time;
      many rows (prefill): an outer-product GEMM; a ROWS x (3-4 vectors) accumulator tile in registers,
                          weights copied/dequantized once per panel into a transposed local buffer;
      rows known only at run time: one kernel that branches between a GEMV whose input rows share each
                          dequantized weight vector (a batched decode step, a short prefill; each row summed in
                          the one-row GEMV's order, so batching never changes a bit) and the GEMM;
  - TVM's CPU prefill attention over cached pages: query heads on the pool (the chunk's own attention is
    replaced by builder/compile/cpu_attention.py, a decode step's by cpu_decode_attention.py);
  - elementwise kernels: producers inlined, vectorized, rows on the pool when there are many.
"""

import tvm
from tvm import s_tir, tirx
from tvm.relax.backend.cpu_generic import pipeline as cpu_passes
from tvm.s_tir import dlight
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.target import Target

FEW_ROWS = 16  # below this many rows a GEMV (rows tiled) beats packing weight panels for a GEMM
PARALLEL_MIN = 1 << 15  # elements below which an elementwise kernel stays on one thread (launch cost)
GEMV_ROWS = 8  # weight rows a GEMV reads side by side: more memory streams in flight per core
WORD_LANES = 8  # GEMV partial sums: 8 lanes, the 8 int4 of one uint32 word
ROW_TILE = 4  # few-rows GEMV: input rows sharing each dequantized weight vector
TILE_WEIGHT_ROWS = 4  # ... and weight rows side by side (ROW_TILE x this accumulators in registers)
BYTE_LANES = 8  # int8 GEMV: words per vector = one scale group of 32 weights (params.GROUP_SIZE)
ROWS = 6  # GEMM register tile: ROWS input rows x (3 or 4) vectors of output features


def host_target(num_cores: int | None = None) -> Target:
    """An llvm target for this machine's CPU (its vector ISA) with the thread count the pool will use."""
    import os

    from tvm.target.codegen import llvm_get_system_cpu

    cores = num_cores or len(os.sched_getaffinity(0))
    return Target({"kind": "llvm", "mcpu": llvm_get_system_cpu(), "num-cores": cores})


def _lanes(target: Target) -> int:
    from tvm.target.codegen import llvm_get_vector_width

    bits = llvm_get_vector_width(target)
    return max(4, (bits if bits > 0 else 128) // 32)


def _extent(sch: s_tir.Schedule, loop) -> int | None:
    ext = sch.get(loop).extent
    return int(ext) if isinstance(ext, tirx.IntImm) else None


def _block(sch: s_tir.Schedule, name: str):
    try:
        return sch.get_sblock(name)
    except Exception:  # noqa: BLE001 - ScheduleError: no block of that name
        return None


def _consumers(sch: s_tir.Schedule, block) -> list:
    """The elementwise chain after `block` (bias, residual add), nearest first."""
    out, frontier = [], list(sch.get_consumers(block))
    while frontier:
        c = frontier.pop(0)
        out.append(c)
        frontier.extend(sch.get_consumers(c))
    return out


class LinearRule(ScheduleRule):
    """Schedules the kernels that `matmul_nt` produces (possibly fused with an elementwise epilogue).
    `int8_dot`: one-row f32 kernels become cpu_int8_dot.py's (8-bit activations, integer dots; opt-in)."""

    def __init__(self, int8_dot: bool = False):
        super().__init__()
        self.int8_dot = int8_dot

    def apply(self, func, target: Target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or "cpu" not in target.keys:
            return None
        sch = s_tir.Schedule(func)
        mm = _block(sch, "matmul")
        if mm is None or len(sch.get_loops(mm)) != 4:
            return None
        if len(_consumers(sch, mm)) > 2:
            return None
        k_len = _extent(sch, sch.get_loops(mm)[3])
        lanes = _lanes(target)
        out_len = _extent(sch, sch.get_loops(mm)[2])
        if k_len is None or k_len % lanes or out_len is None or out_len % lanes:
            return None  # not a shape these schedules cover: left as lowered
        rows = sch.get(sch.get_loops(mm)[1]).extent
        if self.int8_dot and isinstance(rows, tirx.IntImm) and int(rows) == 1:
            from .cpu_int8_dot import swap_in

            swapped = swap_in(func, sch, mm, _block(sch, "dequantize"), k_len, out_len, _consumers(sch, mm))
            if swapped is not None:
                return s_tir.Schedule(swapped)
        gemv = self._gemv_bytes if _byte_weights(sch, mm, k_len) else self._gemv
        if isinstance(rows, tirx.IntImm) and int(rows) < FEW_ROWS:
            return gemv(sch, lanes)
        if isinstance(rows, tirx.IntImm):
            return self._gemm(sch, lanes)
        # rows known only at run time (prefill, get_logits, batched decode): branch between the two schedules
        few = self._gemv_bytes(s_tir.Schedule(func), lanes, tiled=True) if gemv == self._gemv_bytes \
            else self._gemv_rows(s_tir.Schedule(func), lanes)
        many = self._gemm(s_tir.Schedule(func), lanes)
        return s_tir.Schedule(_branch(rows, few.mod["main"], many.mod["main"]))

    @staticmethod
    def _gemv(sch, lanes):
        """Rows of W in groups of GEMV_ROWS read side by side (several memory streams per core), each
        row's dot product in `lanes`-wide partial sums; groups spread over the pool."""
        mm, deq = sch.get_sblock("matmul"), _block(sch, "dequantize")
        consumers = _consumers(sch, mm)
        if deq is not None:
            sch.compute_inline(deq)
        i, t, o, k = sch.get_loops(mm)
        lanes = min(lanes, WORD_LANES)  # the same partial sums as _gemv_rows: a batched row gets a lone row's bits
        ko, ki = sch.split(k, [None, lanes])  # one accumulator per row: measured best with rows interleaved
        rf = sch.rfactor(ki, factor_axis=3)  # lanes last: contiguous in the accumulator
        i, t, o, r = sch.get_loops(mm)
        rows = GEMV_ROWS if _extent(sch, o) % GEMV_ROWS == 0 else 1
        oo, oi = sch.split(o, [None, rows])
        sch.parallel(oo)
        sch.compute_at(rf, oo, preserve_unit_loops=True)
        sch.set_scope(rf, 0, "local")
        rki, _, _, roi, rko = sch.get_loops(rf)[-5:]  # compute_at: the factored iter first, then block order
        sch.reorder(rko, roi, rki)
        sch.unroll(roi)
        sch.vectorize(rki)
        sch.decompose_reduction(rf, rko)
        for c in consumers:
            sch.reverse_compute_at(c, oo)
        return sch

    @staticmethod
    def _gemv_rows(sch, lanes):
        """The GEMV for a few rows known only at run time (a batched decode step, a short prefill): rows in
        tiles of ROW_TILE, each weight vector dequantized once into a register and used by every row of the
        tile. Each row sums in the same order as `_gemv`'s lone row, so a batched step gives a lone step's bits."""
        mm, deq = sch.get_sblock("matmul"), _block(sch, "dequantize")
        sch.pad_einsum(mm, [1, ROW_TILE, 1, 1])  # whole tiles: the accumulators then have a fixed size
        i, t, o, k = sch.get_loops(mm)
        # 8 lanes, one uint32 word of int4: its word index is a broadcast. 16 lanes over two words were gathered
        # element by element once this kernel sits in _branch's function (measured 3x slower)
        lanes = min(lanes, WORD_LANES)
        ko, ki = sch.split(k, [None, lanes])
        rf = sch.rfactor(ki, factor_axis=3)
        i, t, o, r = sch.get_loops(mm)
        rows = TILE_WEIGHT_ROWS if _extent(sch, o) % TILE_WEIGHT_ROWS == 0 else 1
        oo, oi = sch.split(o, [None, rows])
        to, ti = sch.split(t, [None, ROW_TILE])
        sch.reorder(oo, i, to, ti, oi)
        sch.parallel(oo)
        sch.compute_at(rf, to, preserve_unit_loops=True)
        sch.set_scope(rf, 0, "local")
        rki, _, rti, roi, rko = sch.get_loops(rf)[-5:]
        sch.reorder(rko, roi, rti, rki)
        if deq is not None:
            sch.compute_at(deq, roi, preserve_unit_loops=True)
            sch.set_scope(deq, 0, "local")
            sch.vectorize(sch.get_loops(deq)[-1])
        sch.unroll(roi)
        sch.unroll(rti)
        sch.vectorize(rki)
        sch.decompose_reduction(rf, rko)
        return sch  # the copy out of the padded rows and the epilogue stay whole-tensor loops: few rows, cheap

    @staticmethod
    def _gemv_bytes(sch, lanes, tiled: bool = False):
        """The GEMV for int8 weights (4 bytes per uint32 word; the LM head and embedding of q4f32_2). Vector
        lanes run over BYTE_LANES consecutive words, i.e. one scale group, and an unrolled loop over the 4 byte
        positions: each vector is one contiguous load and a constant shift, and the group scale is a broadcast.
        (Lanes over the bytes of one word would need a gather of word j // 4 per lane, which LLVM scalarizes: 4x
        slower.) x is read in the matching order, x_perm[byte, word] = x[4 * word + byte], written once per call.
        `tiled` (rows known at run time): rows in tiles of ROW_TILE, unrolled, so the tile's rows share each
        dequantized vector, and each row sums in the untiled kernel's order (the same bits as a lone row).
        """
        mm = sch.get_sblock("matmul")
        if tiled:
            sch.pad_einsum(mm, [1, ROW_TILE, 1, 1])
        consumers = [] if tiled else _consumers(sch, mm)
        x_read = next(j for j, r in enumerate(sch.get(mm).reads) if len(r.region) == 3)  # x [b, rows, k]
        x_perm = sch.cache_read(mm, x_read, "global")
        sch.transform_layout(x_perm, ("write", 0), lambda i, t, k: (i, t, k % 4, k // 4))
        sch.compute_inline(sch.get_sblock("dequantize"))
        i, t, o, k = sch.get_loops(mm)
        kw, kb = sch.split(k, [None, 4])
        kwo, kwl = sch.split(kw, [None, BYTE_LANES])
        sch.reorder(kwo, kb, kwl)
        rf = sch.rfactor(sch.fuse(kb, kwl), factor_axis=3)  # a partial sum per (byte position, lane)
        i, t, o, _ = sch.get_loops(mm)
        rows = GEMV_ROWS if _extent(sch, o) % GEMV_ROWS == 0 else 1
        oo, oi = sch.split(o, [None, rows])
        at = oo
        if tiled:  # accumulators per (weight row, row tile): 4 x 32 lanes, few enough for registers
            to, ti = sch.split(t, [None, ROW_TILE])
            sch.reorder(oo, i, to, oi, ti)
            at = oi
        sch.parallel(oo)
        sch.compute_at(rf, at, preserve_unit_loops=True)
        sch.set_scope(rf, 0, "local")
        rf_lanes, _, rt, roi, rkwo = sch.get_loops(rf)[-5:]
        rkb, rkl = sch.split(rf_lanes, [4, BYTE_LANES])
        # one row at a time, its 4 byte positions as independent sums: the weights stream through memory in
        # order (8 rows side by side were 8 streams of 576 bytes, too short for the prefetcher: 2.1x slower on
        # the 28 MB LM head; the int4 rows are compute-bound and keep their interleave)
        sch.reorder(roi, rkwo, rkb, rt, rkl)
        sch.unroll(rkb)
        sch.unroll(rt)
        sch.unroll(roi)
        sch.vectorize(rkl)
        sch.decompose_reduction(rf, rkwo)
        for c in consumers:
            sch.reverse_compute_at(c, oo)
        return sch

    @staticmethod
    def _gemm(sch, lanes):
        """Outer-product GEMM: acc[ROWS, COLS] += x[row, k] * Wp[k, COLS], Wp a transposed weight panel."""
        mm, deq = sch.get_sblock("matmul"), _block(sch, "dequantize")
        out_len = _extent(sch, sch.get_loops(mm)[2])
        vectors = next(v for v in (3, 4, 2, 1) if out_len % (v * lanes) == 0)
        cols = vectors * lanes
        # Pad the rows to a multiple of ROWS: without a tail predicate the accumulator tile has a constant
        # size and LLVM keeps it in vector registers.
        sch.pad_einsum(mm, [1, ROWS, 1, 1])
        consumers = _consumers(sch, mm)
        if deq is None:
            weight = next(j for j, r in enumerate(sch.get(mm).reads) if len(r.region) == 2)  # W [out, in]
            deq = sch.cache_read(mm, weight, "local")
        acc = sch.cache_write(mm, 0, "local")
        i, t, o, k = sch.get_loops(mm)
        oo, oi = sch.split(o, [None, cols])
        to, ti = sch.split(t, [None, ROWS])
        sch.reorder(oo, to, k, ti, oi)
        ov, ol = sch.split(oi, [None, lanes])
        sch.unroll(ti)
        sch.unroll(ov)
        sch.vectorize(ol)
        par = sch.fuse(i, oo)
        sch.parallel(par)
        sch.reverse_compute_at(acc, to)
        sch.vectorize(sch.get_loops(acc)[-1])
        for c in consumers:
            sch.reverse_compute_at(c, to)
        sch.decompose_reduction(mm, k)
        # the weight panel of `cols` output features, dequantized/copied once, stored [k, cols]
        sch.compute_at(deq, par, preserve_unit_loops=True)
        sch.set_scope(deq, 0, "local")
        sch.transform_layout(deq, ("write", 0), lambda a, b: (b, a))
        if vectors & (vectors - 1) == 0:  # a power-of-two panel stride thrashes cache sets: pad it
            sch.storage_align(deq, 0, axis=0, factor=cols * 2, offset=lanes)
        _, dk = sch.get_loops(deq)[-2:]  # (out feature, k): contiguous loads along k
        _, dl = sch.split(dk, [None, lanes])
        sch.vectorize(dl)
        return sch


def _byte_weights(sch: s_tir.Schedule, mm, k_len: int) -> bool:
    """Whether `mm` dequantizes int8 weights (uint32 words of 4 bytes) in whole scale groups of words."""
    deq = _block(sch, "dequantize")
    if deq is None or k_len % (4 * BYTE_LANES):
        return False
    words = [r.source for r in sch.get(deq).reads if getattr(r.source, "dtype", None) == "uint32"]
    return len(words) == 1 and _extent_of(words[0].shape[-1]) * 4 == k_len


def _extent_of(dim) -> int | None:
    return int(dim) if isinstance(dim, tirx.IntImm) else None


def _branch(rows, few, many):
    """One PrimFunc that runs `few`'s body when rows < FEW_ROWS, else `many`'s.

    Both are schedules of the same function, so their blocks share iteration variables; a TVMScript
    round trip gives every definition its own variable again.
    """
    from tvm.s_tir.stmt import SBlock, SBlockRealize

    def inner(f, name):
        root = f.body.block
        block = SBlock(root.iter_vars, root.reads, root.writes, name, root.body, root.init, root.alloc_buffers,
                       root.match_buffers, root.annotations)
        return SBlockRealize([], True, block)

    body = tirx.IfThenElse(rows < FEW_ROWS, inner(few, "few_rows"), inner(many, "many_rows"))
    merged = few.with_body(SBlockRealize([], True, SBlock([], [], [], "root", body)))
    return tvm.script.from_source(merged.script())


class AttentionRule(ScheduleRule):
    """TVM's CPU prefill attention (paged KV cache) loops over query heads serially; heads are independent
    (each writes its own output rows, the block allocates its own scratch), so run them on the pool."""

    def apply(self, func, target: Target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or "cpu" not in target.keys:
            return None
        sch = s_tir.Schedule(func)
        attn = _block(sch, "attn")
        if attn is None or len(sch.get_loops(attn)) != 2:  # for h_qo: for b_idx: attn
            return None
        sch.parallel(sch.get_loops(attn)[0])
        return sch


class ElementwiseRule(ScheduleRule):
    """Elementwise kernels (activation, split, residual add, RoPE, KV append): producers inlined, rows
    spread over the pool when there are many, the innermost axis vectorized."""

    def apply(self, func, target: Target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or "cpu" not in target.keys:
            return None
        sch = s_tir.Schedule(func)
        blocks = sch.get_child_blocks(sch.get_sblock("root")) if _block(sch, "root") else []
        if not blocks or any(not _spatial(sch, b) for b in blocks):
            return None
        for b in blocks[:-1]:  # fold producers into their consumers where possible
            try:
                sch.compute_inline(b)
            except Exception:  # noqa: BLE001 - ScheduleError: this one has to stay
                pass
        lanes = _lanes(target)
        for b in sch.get_child_blocks(sch.get_sblock("root")):
            loops = sch.get_loops(b)
            if not loops:
                continue
            inner = _extent(sch, loops[-1])
            if inner and inner % lanes == 0 and len(loops) > 1:
                _, vec = sch.split(loops[-1], [None, lanes])
                sch.vectorize(vec)
            total = 1
            for lp in loops[:-1]:
                ext = _extent(sch, lp)
                total = total * ext if ext is not None and total is not None else None
            if total is None or total * (inner or 1) >= PARALLEL_MIN:  # rows known at run time, or many
                sch.parallel(sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0])
        return sch


def _spatial(sch: s_tir.Schedule, block) -> bool:
    """A block with only data-parallel iterations that sits directly in a loop nest (not opaque)."""
    iters = sch.get(block).iter_vars
    return bool(iters) and all(int(iv.iter_type) == 0 for iv in iters)


@tvm.transform.module_pass(opt_level=0, name="MarkNoAlias")
def mark_noalias(mod: tvm.ir.IRModule, _ctx) -> tvm.ir.IRModule:
    """Declare every kernel's buffer arguments non-aliasing (true here: no kernel is ever handed one tensor
    twice). Measured: when one function of the LLVM module lacks the flag, the register-tiled GEMM kernels
    of the same module lose their register accumulators and run about 2x slower."""
    for gv, func in list(mod.functions.items()):
        if isinstance(func, tirx.PrimFunc) and not func.attrs.get("tirx.noalias"):
            mod[gv] = func.with_attr("tirx.noalias", True)
    return mod


def schedule_passes(target: Target, int8_dot: bool = False) -> list:
    return [dlight.ApplyDefaultSchedule(LinearRule(int8_dot), AttentionRule(), ElementwiseRule()), mark_noalias]


def cpu_pipeline(target: Target, heads: tuple[int, int, int, str] | None = None, sliding_window: int = 0,
                 int8_dot: bool = False):
    """The relax pipeline for `tvm.compile(mod, target, relax_pipeline=...)` on CPU. `heads` =
    (query heads, kv heads, head dim, dtype) swaps in our prefill and decode attention kernels (cpu_attention.py,
    cpu_decode_attention.py), and for a model
    with sliding layers (`sliding_window` > 0) our attention over their cached pages. `int8_dot`: `make --cpu-dot
    int8` (cpu_int8_dot.py)."""
    from .cpu_attention import swap_ragged_prefill, swap_sliding_prefill
    from .cpu_decode_attention import swap_decode
    from .stable_order import after_shape_lower

    swap = [swap_ragged_prefill(*heads)] if heads and heads[2] % 16 == 0 else []
    swap += swap_decode(*heads) if heads else []
    if heads and sliding_window > 0:
        swap.append(swap_sliding_prefill(*heads, sliding_window))

    @tvm.transform.module_pass(opt_level=0)
    def _pipeline(mod: tvm.ir.IRModule, _ctx) -> tvm.ir.IRModule:
        seq = (cpu_passes.library_dispatch_passes(target) + cpu_passes.legalize_passes(target) + swap
               + schedule_passes(target, int8_dot) + cpu_passes.dataflow_lower_passes(target)
               + after_shape_lower(cpu_passes.finalize_passes(target)))  # same bytes in any environment
        with target:
            return tvm.transform.Sequential(seq)(mod)

    return _pipeline
