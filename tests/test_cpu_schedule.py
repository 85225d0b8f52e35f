"""The CPU schedules (builder/compile/cpu_schedule.py) and our prefill attention kernel
(builder/compile/cpu_attention.py), built for this machine's CPU and checked against numpy and against TVM's own
reference kernel."""

import numpy as np
import pytest

from builder.convert.quantize import dequantize, quantize
from builder.models.params import FLOAT, INT4, INT4_MIN, INT8


def _linear_lib(k: int, o: int, fmt: str):
    import tvm
    from tvm.relax.backend.cpu_generic import pipeline as cpu_passes
    from tvm.relax.frontend import nn

    from builder.compile.cpu_schedule import LinearRule, cpu_pipeline, host_target
    from builder.models.layers import Linear

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = Linear(k, o, "float32", fmt, bias=True)

        def forward(self, x: nn.Tensor, y: nn.Tensor):
            return self.proj(x) + y  # the residual-style epilogue the schedules fuse

    spec = {"forward": {"x": nn.spec.Tensor([1, "n", k], "float32"), "y": nn.spec.Tensor([1, "n", o], "float32")}}
    mod, params = Net().export_tvm(spec)
    tgt = host_target()
    with tgt:  # the linear kernel must be one the rule schedules, not one it leaves as lowered
        fused = tvm.transform.Sequential(cpu_passes.legalize_passes(tgt))(mod)
    linear = [f for f in fused.functions.values() if isinstance(f, tvm.tirx.PrimFunc) and "matmul" in f.script()]
    assert linear and all(LinearRule().apply(f, tgt, False) is not None for f in linear)
    ex = tvm.compile(mod, tgt, relax_pipeline=cpu_pipeline(tgt))
    return tvm.relax.VirtualMachine(ex, tvm.cpu()), [n for n, _ in params]


@pytest.mark.parametrize("fmt", [FLOAT, INT4, INT4_MIN, INT8])
@pytest.mark.parametrize("k,o", [(64, 48), (64, 64), (96, 32), (32, 16)])
def test_linear_schedules_match_numpy(k, o, fmt):
    """Every row count takes one of the two schedule branches (GEMV below FEW_ROWS, GEMM above, with and
    without a row tail); panels of 3, 4, 2 and 1 vectors; the epilogue add fused; every stored weight format."""
    import tvm

    rng = np.random.default_rng(k * 1000 + o)
    vm, names = _linear_lib(k, o, fmt)
    w = rng.standard_normal((o, k)).astype("float32") * 0.1
    bias = rng.standard_normal(o).astype("float32")
    values = {"proj.bias": bias}
    if fmt == FLOAT:
        values["proj.weight"] = w
    else:
        arrays = quantize(w, fmt=fmt)
        w = dequantize(*arrays, fmt=fmt)
        values.update(zip(("proj.q_weight", "proj.q_scale", "proj.q_min")[:len(arrays)], arrays, strict=True))
    params = [tvm.runtime.tensor(values[n], tvm.cpu()) for n in names]
    for rows in (1, 2, 3, 4, 6, 7, 13, 64):
        x = rng.standard_normal((1, rows, k)).astype("float32")
        y = rng.standard_normal((1, rows, o)).astype("float32")
        got = vm["forward"](tvm.runtime.tensor(x, tvm.cpu()), tvm.runtime.tensor(y, tvm.cpu()), *params).numpy()
        want = x @ w.T + bias + y
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4, err_msg=f"rows={rows}")


def _run_attention(lib, q, k, v, q_indptr, kv_indptr, causal: int):
    import tvm

    dev = tvm.cpu()
    t = lambda a: tvm.runtime.tensor(a, dev)  # noqa: E731
    out = t(np.zeros(q.shape, q.dtype))
    lse = t(np.zeros(q.shape[:2], "float32"))
    n_q = q.shape[0]
    lib["main"](t(q), t(q_indptr), t(k), t(v), t(kv_indptr), t(np.arange(n_q, dtype="int32")),
                t(np.zeros(len(q_indptr) - 1, "int32")), out, lse, causal, 0, 1.0, 10000.0,
                float(q.shape[-1]) ** -0.5)
    return out.numpy().astype("float32"), lse.numpy()


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float16", 2e-2)])
@pytest.mark.parametrize("causal", [1, 0])
def test_ragged_prefill_matches_tvm_reference(dtype, tol, causal):
    """Two sequences of different lengths in one ragged batch, grouped-query heads: the same outputs and
    log-sum-exp as TVM's own CPU kernel, which ours replaces."""
    import tvm
    from tvm.relax.frontend.nn.llm._prefill_kernels import _attention_prefill_ragged_cpu

    from builder.compile.cpu_attention import ragged_prefill
    from builder.compile.cpu_schedule import host_target

    h_q, h_kv, d = 8, 2, 32
    lens = [13, 29]
    indptr = np.array([0, lens[0], sum(lens)], dtype="int32")
    rng = np.random.default_rng(7)
    q, k, v = (rng.standard_normal((sum(lens), h, d)).astype(dtype) for h in (h_q, h_kv, h_kv))
    tgt = host_target()
    ours = tvm.compile(tvm.IRModule({"main": ragged_prefill(h_q, h_kv, d, dtype).with_attr("global_symbol", "main")}),
                       target=tgt)
    ref_func = _attention_prefill_ragged_cpu(h_kv, h_q, d, d, dtype, {})
    ref = tvm.compile(tvm.IRModule({"main": ref_func.with_attr("global_symbol", "main")}), target=tgt)
    got = _run_attention(ours, q, k, v, indptr, indptr, causal)
    want = _run_attention(ref, q, k, v, indptr, indptr, causal)
    np.testing.assert_allclose(got[0], want[0], atol=tol, rtol=tol)
    np.testing.assert_allclose(got[1], want[1], atol=tol, rtol=tol)


def _run_decode(lib, q, pages, indptr, values, length_info):
    import tvm

    dev = tvm.cpu()
    t = lambda a: tvm.runtime.tensor(a, dev)  # noqa: E731
    out = t(np.zeros(q.shape, q.dtype))
    lse = t(np.zeros(q.shape[:2], "float32"))
    b = q.shape[0]
    lib["main"](t(q), t(pages), t(indptr), t(values), t(length_info), t(np.zeros(b, "int32")),
                t(np.zeros(b, "int32")), out, lse, 0, 1.0, 10000.0, float(q.shape[-1]) ** -0.5)
    return out.numpy().astype("float32"), lse.numpy()


@pytest.mark.parametrize("sliding", [False, True])
@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float16", 2e-2)])
def test_decode_attention_matches_tvm_reference(dtype, tol, sliding):
    """A decode step of four sequences (one of them empty) over shuffled cache pages, grouped-query heads; for
    sliding layers a window offset and an attention sink: the same outputs and log-sum-exp as TVM's CPU kernel."""
    import tvm
    from tvm.relax.frontend.nn.llm._decode_kernels import _attention_decode_cpu

    from builder.compile.cpu_decode_attention import PAGE_SIZE, decode_attention
    from builder.compile.cpu_schedule import host_target

    h_q, h_kv, d = 6, 2, 32
    n_pages = [3, 1, 0, 2]  # pages per sequence
    last = [5, 16, 0, 9]  # used slots of each one's last page
    rng = np.random.default_rng(11)
    pages = rng.standard_normal((sum(n_pages) + 2, 2, h_kv, PAGE_SIZE, d)).astype(dtype)
    values = rng.permutation(sum(n_pages) + 2)[:sum(n_pages)].astype("int32")
    indptr = np.concatenate([[0], np.cumsum(n_pages)]).astype("int32")
    info = np.array(last, "int32")
    if sliding:  # window offset into the first page, and attention-sink length
        info = np.stack([info, np.array([4, 0, 0, 3], "int32"), np.array([2, 1, 0, 0], "int32")])
    q = rng.standard_normal((len(n_pages), h_q, d)).astype(dtype)
    tgt = host_target()
    ours = tvm.compile(tvm.IRModule({"main": decode_attention(h_q, h_kv, d, dtype, sliding).with_attr(
        "global_symbol", "main")}), target=tgt)
    ref_func = _attention_decode_cpu(h_kv, h_q, d, dtype, sliding, {})
    ref = tvm.compile(tvm.IRModule({"main": ref_func.with_attr("global_symbol", "main")}), target=tgt)
    got = _run_decode(ours, q, pages, indptr, values, info)
    want = _run_decode(ref, q, pages, indptr, values, info)
    assert np.abs(want[0]).max() > 0.1  # keys were visited: not an all-empty batch
    np.testing.assert_allclose(got[0], want[0], atol=tol, rtol=tol)
    np.testing.assert_allclose(got[1], want[1], atol=tol, rtol=tol)
