"""Proof that the whole chain works: a small TVM module compiled for WebGPU, linked with our wasm
runtime, loaded in headless Chromium through @mlc-ai/web-runtime, and checked against numpy."""

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from mlcbuild_common.errors import MlcbuildError

from .run.browser import serve_and_run

TOLERANCE = 1e-5


def build_check_module():
    """softmax(x @ w + b) * 2 - 1: a GEMM, a reduction and elementwise ops, so real kernels are scheduled."""
    from tvm.relax.frontend import nn

    class Check(nn.Module):
        def forward(self, x: nn.Tensor, w: nn.Tensor, b: nn.Tensor):
            return nn.op.softmax(nn.op.matmul(x, w) + b, axis=-1) * 2.0 - 1.0

    spec = {"forward": {"x": nn.spec.Tensor([8, 64], "float32"), "w": nn.spec.Tensor([64, 48], "float32"),
                        "b": nn.spec.Tensor([48], "float32")}}
    mod, _ = Check().export_tvm(spec=spec)
    return mod


def reference(x, w, b):
    z = x.astype(np.float64) @ w + b
    e = np.exp(z - z.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)) * 2 - 1


def run_selfcheck(progress: bool = True, workdir: Path | None = None, screenshot: Path | None = None) -> dict:
    import tvm

    from .compile.wasm import export_wasm, webgpu_target

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mlcbuild-selfcheck-") as tmp:
        data = Path(workdir or tmp)
        ex = tvm.compile(build_check_module(), webgpu_target())
        export_wasm(ex, data / "check.wasm", opt_level=1, show_progress=progress)
        rng = np.random.default_rng(0)
        x, w, b = (rng.standard_normal(s).astype("float32") for s in ((8, 64), (64, 48), (48,)))
        case = {"wasm": "check.wasm", "function": "forward",
                "inputs": [{"shape": list(a.shape), "dtype": "float32", "data": a.ravel().tolist()} for a in (x, w, b)]}
        (data / "case.json").write_text(json.dumps(case))
        res = serve_and_run("harness/tvm-check.html?case=/data/case.json", {"/data/": data}, timeout_s=120,
                            screenshot=screenshot)
    if not res["ok"]:
        raise MlcbuildError(f"the WebGPU check page failed: {res['error']}", "run `mlcbuild doctor`")
    out = np.array(res["result"]["outputs"][0]["data"], dtype=np.float64).reshape(8, 48)
    err = float(np.abs(out - reference(x, w, b)).max())
    return {"ok": err <= TOLERANCE, "max_abs_err": err, "tolerance": TOLERANCE, "adapter": res["result"]["adapter"],
            "seconds": time.perf_counter() - t0}
