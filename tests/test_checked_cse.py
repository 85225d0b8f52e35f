"""builder/compile/checked_cse.py: TVM's CSE binds a repeated expression after a Let body that already uses it;
the checked pass keeps such a function without CSE, and leaves every other function as TVM's CSE made it."""

import numpy as np
import pytest
import tvm
from tvm import tirx
from tvm.script import tirx as T

from builder.compile.checked_cse import checked_cse, checked_cse_pass


# fmt: off
@T.prim_func
def let_first(A: T.Buffer((4,), "int32"), B: T.Buffer((2,), "int32"), n: T.int32):
    for i in range(4):
        x = T.int32()
        A[i] = T.Let(x * x + n % 8, where={x: A[i] + i})  # n % 8 first occurs in a Let body
    B[0] = n % 8 + 1
    B[1] = n % 8 + 2


@T.prim_func
def plain(B: T.Buffer((2,), "int32"), n: T.int32):
    B[0] = n % 8 + 1
    B[1] = n % 8 + 2
# fmt: on


def test_stock_cse_breaks_a_let_body():
    """The upstream bug this module works around; if this fails, TVM fixed it and checked_cse can go."""
    out = tirx.transform.CommonSubexprElim()(tvm.IRModule({"main": let_first}))["main"]
    assert not tirx.analysis.verify_well_formed(out, False)
    with pytest.raises(tvm.error.InternalError, match="used before definition"):
        tvm.compile(let_first, "llvm")


def test_checked_cse_keeps_broken_functions_whole_and_cses_the_rest():
    mod = tvm.IRModule({"let_first": let_first, "plain": plain})
    out = checked_cse_pass()(mod)
    tvm.ir.assert_structural_equal(out["let_first"], let_first)
    stock = tirx.transform.CommonSubexprElim()(tvm.IRModule({"main": plain}))["main"]
    tvm.ir.assert_structural_equal(out["plain"], stock)
    assert "cse_v" in out["plain"].script()


def test_checked_cse_in_tvms_pipeline():
    stock = tirx.transform.CommonSubexprElim
    with checked_cse():
        lib = tvm.compile(let_first, "llvm")
    assert tirx.transform.CommonSubexprElim is stock
    a, b = tvm.runtime.tensor(np.zeros(4, "int32")), tvm.runtime.tensor(np.zeros(2, "int32"))
    lib(a, b, 13)
    assert a.numpy().tolist() == [i * i + 5 for i in range(4)] and b.numpy().tolist() == [6, 7]
