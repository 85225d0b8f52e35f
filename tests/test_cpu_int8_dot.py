"""The opt-in int8-activation GEMVs (builder/compile/cpu_int8_dot.py, `make --cpu-dot int8`): each kernel computes
exactly the integer scheme its docstring states (checked against numpy doing the same rounding and integer sums), and
a tiny model built with them answers close to, but not bit-equal with, its f32 build."""

import numpy as np
import pytest
import tvm

from builder.compile.cpu_int8_dot import has_vnni, int8_dot_gemv
from builder.compile.cpu_schedule import host_target
from builder.make import make
from builder.models.params import GROUP_SIZE, INT4, INT4_MIN, INT8, INT8_ZERO, MAX_INT
from builder.run.engine import Engine
from mlcbuild_common.errors import MlcbuildError

K, O = 192, 64  # noqa: E741 - 6 scale groups, 4 row blocks


def _weights(rng, fmt):
    per_word, bits = (4, 8) if fmt == INT8 else (8, 4)
    qw = rng.integers(0, 2**32, (O, K // per_word), dtype=np.uint64).astype(np.uint32)
    q = np.stack([(qw >> (bits * j)) & ((1 << bits) - 1) for j in range(per_word)], -1).reshape(O, K)
    qs = (rng.random((O, K // GROUP_SIZE)) * 0.02 + 0.001).astype(np.float32)
    qm = (-rng.random((O, K // GROUP_SIZE)) * 0.1).astype(np.float32)
    return qw, q.astype(np.int64), qs, qm


def _integer_scheme(x, q, qs, qm, fmt):
    """The kernel's arithmetic in numpy: x rounded to int8 per group, integer dots, scaled once per group."""
    xg = x.reshape(-1, GROUP_SIZE).astype(np.float64)
    amax = np.abs(xg).max(1)
    dx = (amax / 127).astype(np.float32)
    inv = np.float32(127) / np.maximum(amax, 1e-30).astype(np.float32) * (amax > 0)
    xq = np.round(xg.astype(np.float32) * inv[:, None]).astype(np.int64)
    isum = (q.reshape(O, -1, GROUP_SIZE) * xq[None]).sum(2)  # [O, groups], exact
    xs = xg.sum(1)
    if fmt == INT4_MIN:
        return (qs * dx * isum).sum(1) + (qm * xs).sum(1)
    zero = MAX_INT if fmt == INT4 else INT8_ZERO
    return (qs * (dx * isum - zero * xs)).sum(1)


@pytest.mark.skipif(not has_vnni(host_target()), reason="no AVX-512 VNNI on this CPU (its build error is tested)")
@pytest.mark.parametrize("fmt", [INT4_MIN, INT4, INT8])
@pytest.mark.parametrize("residual", [False, True])
def test_kernel_is_the_integer_scheme(fmt, residual):
    rng = np.random.default_rng(3)
    qw, q, qs, qm = _weights(rng, fmt)
    x = rng.standard_normal(K).astype(np.float32)
    x[GROUP_SIZE:2 * GROUP_SIZE] = 0  # an all-zero group: its scale is 0, not a division by zero
    res = rng.standard_normal(O).astype(np.float32)
    lib = tvm.compile(tvm.IRModule({"main": int8_dot_gemv(fmt, K, O, residual).with_attr("global_symbol", "main")}),
                      target=host_target())
    args = [x.reshape(1, 1, K), qw, qs] + ([qm] if fmt == INT4_MIN else []) + ([res.reshape(1, 1, O)] if residual
                                                                                 else [])
    bufs = [tvm.runtime.tensor(a, tvm.cpu()) for a in [*args, np.zeros((1, 1, O), np.float32)]]
    lib["main"](*bufs)
    got = bufs[-1].numpy().ravel()
    want = _integer_scheme(x, q, qs, qm, fmt) + (res if residual else 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    # and what it approximates: the f32 product with the dequantized weights, within int8 rounding
    w = q * np.repeat(qs, GROUP_SIZE, 1) + (np.repeat(qm, GROUP_SIZE, 1) if fmt == INT4_MIN else
                                            -(MAX_INT if fmt == INT4 else INT8_ZERO) * np.repeat(qs, GROUP_SIZE, 1))
    exact = w @ x + (res if residual else 0)
    assert 0 < np.abs(got - exact).max() < 0.02 * np.abs(exact).max()


def test_tiny_model_with_int8_dots(tmp_path):
    """A tiny q4f32_2 model built with --cpu-dot int8: its manifest says so, and its decode logits are near its
    f32 build's (cosine > 0.99) but not equal to them (the kernels did change), and a batch on it gives its lone
    rows' logits. On a CPU
    without VNNI, the build fails with one clear error instead."""
    if not has_vnni(host_target()):
        with pytest.raises(MlcbuildError, match="VNNI"):
            make("tiny-llama", "q4f32_2", tmp_path / "i8", targets=("cpu",), show_progress=False, cpu_dot="int8")
        return
    f32 = Engine(make("tiny-llama", "q4f32_2", tmp_path / "f32", targets=("cpu",), show_progress=False).out)
    built = make("tiny-llama", "q4f32_2", tmp_path / "i8", targets=("cpu",), show_progress=False, cpu_dot="int8")
    assert built.manifest["options"]["cpu_dot"] == "int8"
    i8 = Engine(built.out)
    prompt = f32.embed([5, 17, 33, 2, 9, 41, 7])
    np.testing.assert_array_equal(f32.hidden(prompt), i8.hidden(prompt))  # many rows: the f32 kernels
    f32.reset()
    i8.reset()
    pairs = [(f32.prefill(prompt), i8.prefill(prompt))]  # its last row's LM head is a one-row kernel
    pairs += [(f32.decode(f32.embed([t])).ravel(), i8.decode(i8.embed([t])).ravel()) for t in (11, 23, 4)]
    for a, b in pairs:
        cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
        assert 0.99 < cos and not np.array_equal(a, b)
    # a batch on this build steps each row alone, so it keeps the lone rows' answers
    batch = i8.batch(2)
    lone = [i8.sequence() for _ in range(2)]
    for j, toks in enumerate(([3, 8, 13], [21, 34])):
        batch.prefill(j, i8.embed(toks))
        lone[j].prefill(i8.embed(toks))
    got = batch.decode([0, 1], i8.embed([55, 89]))
    want = [lone[j].decode(i8.embed([t])).ravel() for j, t in enumerate((55, 89))]
    np.testing.assert_array_equal(got, np.stack(want))
