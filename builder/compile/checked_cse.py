"""TVM's TIR common-subexpression elimination, checked: a kernel that CSE would break keeps its body without CSE.

TVM 0.27's `tirx.CommonSubexprElim` decides where to bind a repeated expression from the occurrences it sees, and
it does not look inside the body of an expression-level `Let` (the RoPE in TVM's attention kernels binds `freq`
that way). Its rewriter then replaces the expression everywhere, Let bodies included. If the first occurrence is
in such a body, the kernel reads `cse_vN` before the binding and `SplitHostDevice` stops with "variable cse_vN has
been used before definition". Which expressions repeat where depends on the head layout: with one KV head the head
index folds to 0, the terms that put an occurrence ahead of the RoPE vanish, and WebGPU builds of the prefill
(`batch_prefill_*`) and tree attention kernels failed (tests/test_checked_cse.py has a minimal case).

TVM's pipeline calls `tirx.transform.CommonSubexprElim()` by name, so `checked_cse()` swaps that factory while a
model compiles. Every kernel that CSE keeps well-formed stays exactly as TVM's CSE made it (see patches/README.md).
"""

import contextlib

import tvm
from tvm import tirx

_stock = tirx.transform.CommonSubexprElim


def _well_formed(func) -> bool:
    return not isinstance(func, tirx.PrimFunc) or tirx.analysis.verify_well_formed(func, False)


def checked_cse_pass() -> tvm.transform.Pass:
    """TVM's CSE over the module, then any function it made ill-formed (and that was not already) restored."""
    cse = _stock()

    @tvm.transform.module_pass(opt_level=0, name="CheckedCommonSubexprElim")
    def _pass(mod: tvm.ir.IRModule, _ctx) -> tvm.ir.IRModule:
        before = dict(mod.functions.items())
        out = cse(mod)
        for gv, func in list(out.functions.items()):
            old = before.get(gv)
            if old is not None and not _well_formed(func) and _well_formed(old):
                out[gv] = old
        return out

    return _pass


@contextlib.contextmanager
def checked_cse():
    """While inside, TVM's TIR pipelines build `checked_cse_pass` where they would build the stock CSE."""
    tirx.transform.CommonSubexprElim = checked_cse_pass
    try:
        yield
    finally:
        tirx.transform.CommonSubexprElim = _stock
