"""The WebGPU compile pipeline: TVM's generic GPU pipeline, with our schedule for one-row matmuls.

For WebGPU, dlight's GEMV rule falls back to one workgroup per output row (64 threads summing the row in
shared memory behind seven barriers): 49,152 workgroups for SmolLM2's LM head in every decode step. On
SwiftShader (CI, and any machine without a GPU) each barrier is a switch between emulated invocations; that LM
head alone took ~3.2 s of a 3.3 s tiny-model decode step. `gemv` gives the layers' kernels 32 rows x 8 lanes per
workgroup (32x fewer workgroups, three barriers each, adjacent lanes reading adjacent weights) and the LM head a
thread per vocabulary row with its sum in a register (no barrier; 192 workgroups for 49k rows). bench/RESULTS.md
has the figures. Kernels with a symbolic row count (prefill chunks, `get_logits`) keep dlight's rules.
"""

import tvm
from tvm import s_tir, tirx
from tvm.relax.backend.gpu_generic import pipeline as generic


def _static_shapes(func: tirx.PrimFunc) -> bool:
    """No symbolic sizes: every variable the body uses but does not bind is a block's iteration variable."""
    import tvm_ffi

    iters = set()
    tvm_ffi.structural_walk(func.body, [(s_tir.SBlock, lambda b: iters.update(iv.var for iv in b.iter_vars))],
                            order="post")
    return all(v in iters for v in tirx.analysis.undefined_vars(func.body, list(func.params)))


ROWS, LANES = 32, 8  # a workgroup: 32 output rows x 8 lanes (256 threads); 3 barriers for the lane sum
LM_HEAD = (256, 1)  # the vocabulary is wide enough for a thread per row: 192 workgroups for 49,152 rows


def gemv(func: tirx.PrimFunc, rows: int = ROWS, lanes: int = LANES) -> tirx.PrimFunc | None:
    """One-row matmul (any weight format, its dequantization inlined): ROWS rows per workgroup, LANES threads
    per row striding over k (adjacent lanes read adjacent weights), partial sums reduced across the lanes.
    None when `func` is not a single reduction over static shapes."""
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.base import try_inline

    if not _static_shapes(func):
        return None
    sch = s_tir.Schedule(func)
    infos = normalize_prim_func(sch)
    if infos is None:
        return None
    infos = try_inline(sch, infos)
    reductions = [b for b in infos if b.is_reduction()]
    if len(reductions) != 1 or any(k not in "SR" for k in reductions[0].dom_kind()):
        return None
    block = reductions[0].block_rv
    after = [b.block_rv for b in infos if not b.is_reduction()]
    loops, kinds = sch.get_loops(block), reductions[0].dom_kind()
    spatial = [lp for lp, k in zip(loops, kinds, strict=True) if k == "S"]
    reduce = [lp for lp, k in zip(loops, kinds, strict=True) if k == "R"]
    sch.reorder(*spatial, *reduce)
    if lanes == 1:  # a thread per row, k serial, the sum in a register: no barrier at all
        if after:
            sch.set_scope(block, 0, "local")
        else:
            after = [sch.cache_write(block, 0, "local")]
        bx, tx = sch.split(sch.fuse(*spatial), [None, rows])
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")
        sch.decompose_reduction(block, sch.get_loops(block)[2])
        for b in after:
            sch.reverse_compute_at(b, tx)
        return sch.mod["main"].with_attr("tirx.is_scheduled", True)
    bx, ty = sch.split(sch.fuse(*spatial), [None, rows])
    _, tx = sch.split(sch.fuse(*reduce), [None, lanes])
    rf = sch.rfactor(tx, 0)
    bx, ty, ko, tx = sch.get_loops(rf)
    sch.reorder(bx, ty, tx, ko)
    sch.bind(bx, "blockIdx.x")
    sch.bind(ty, "threadIdx.y")
    sch.bind(tx, "threadIdx.x")
    sch.set_scope(rf, 0, "local")
    sch.decompose_reduction(rf, ko)
    sch.reverse_compute_at(block, ty)
    sch.bind(sch.get_loops(block)[-1], "threadIdx.x")
    if after:  # epilogues (a cast, a residual add) read the row's sum from a register, once per row
        sch.set_scope(block, 0, "local")
    for b in after:
        sch.reverse_compute_at(b, ty)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def schedule_row_matmuls(linear=(ROWS, LANES), lm_head=LM_HEAD):
    """A module pass: `gemv` with (rows, lanes) for every static one-row matmul kernel (decode steps, the
    prefill's last-row LM head); None leaves a kind to dlight, which schedules everything else."""

    @tvm.transform.module_pass(opt_level=0, name="ScheduleRowMatmuls")
    def _pass(mod: tvm.ir.IRModule, _ctx) -> tvm.ir.IRModule:
        for gv, func in list(mod.functions.items()):
            if isinstance(func, tirx.PrimFunc) and ("linear" in gv.name_hint or "lm_head" in gv.name_hint):
                shape = lm_head if "lm_head" in gv.name_hint else linear
                scheduled = gemv(func, *shape) if shape else None
                if scheduled is not None:
                    mod[gv] = scheduled
        return mod

    return _pass


def gpu_pipeline(target, linear=(ROWS, LANES), lm_head=LM_HEAD):
    """The relax pipeline for `tvm.compile(mod, target, relax_pipeline=...)` on WebGPU; `linear` / `lm_head`:
    (rows, lanes) of their one-row kernels, or None for dlight's schedule (bench/webgpu_gemv.py)."""
    from .stable_order import after_shape_lower

    legalize = generic.legalize_passes(target)
    fuse_end = next(i for i, p in enumerate(legalize) if p.info.name == "FuseTIR") + 1

    @tvm.transform.module_pass(opt_level=0)
    def _pipeline(mod: tvm.ir.IRModule, _ctx) -> tvm.ir.IRModule:
        seq = (generic.library_dispatch_passes(target) + legalize[:fuse_end]
               + [schedule_row_matmuls(linear, lm_head)] + legalize[fuse_end:] + generic.dataflow_lower_passes(target)
               + after_shape_lower(generic.finalize_passes(target)))  # same bytes in any environment
        with target:
            return tvm.transform.Sequential(seq)(mod)

    return _pipeline

