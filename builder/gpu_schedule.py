"""The WebGPU compile pipeline: TVM's generic GPU pipeline, with the one-row LM head scheduled as one thread
per vocabulary row.

dlight's GEMV/reduction rules give the decode-step LM head one workgroup per vocabulary row (49,152 of them for
SmolLM2), each reducing the hidden size in shared memory behind seven barriers. On SwiftShader (CI, and any
machine without a GPU) every barrier is a switch between emulated invocations, and that kernel alone took
~3.3 s of a 3.4 s decode step on a tiny model. One thread per row with a serial loop over the hidden size has
no barriers, reads the same bytes, and lets the next row's weights stream; `bench/RESULTS.md` has the figures.
The many-row LM head (prefill chunks, `get_logits`) keeps dlight's matmul rule.
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


def schedule_row_lm_head():
    """A module pass: dlight's Fallback rule (spatial loops on threads, reduction serial) for `lm_head*` kernels
    whose shapes are all static (the one-row case); they are then marked scheduled so dlight leaves them."""
    from tvm.s_tir import dlight as dl

    @tvm.transform.module_pass(opt_level=0, name="ScheduleRowLMHead")
    def _pass(mod: tvm.ir.IRModule, _ctx) -> tvm.ir.IRModule:
        target = tvm.target.Target.current()
        for gv, func in list(mod.functions.items()):
            if not isinstance(func, tirx.PrimFunc) or not gv.name_hint.startswith("lm_head"):
                continue
            if not _static_shapes(func):
                continue
            sch = dl.gpu.Fallback().apply(func, target, False)
            if sch is not None:
                mod[gv] = sch.mod["main"].with_attr("tirx.is_scheduled", True)
        return mod

    return _pass


def gpu_pipeline(target, extra_first=()):
    """The relax pipeline for `tvm.compile(mod, target, relax_pipeline=...)` on WebGPU."""
    legalize = generic.legalize_passes(target)
    fuse_end = next(i for i, p in enumerate(legalize) if p.info.name == "FuseTIR") + 1

    @tvm.transform.module_pass(opt_level=0)
    def _pipeline(mod: tvm.ir.IRModule, _ctx) -> tvm.ir.IRModule:
        seq = (list(extra_first) + generic.library_dispatch_passes(target) + legalize[:fuse_end]
               + [schedule_row_lm_head()] + legalize[fuse_end:] + generic.dataflow_lower_passes(target)
               + generic.finalize_passes(target))
        with target:
            return tvm.transform.Sequential(seq)(mod)

    return _pipeline

