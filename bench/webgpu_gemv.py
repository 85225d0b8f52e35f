#!/usr/bin/env python3
"""Benchmark the WebGPU one-row matmul schedules (builder/compile/gpu_schedule.py) side by side in one browser session:

  dlight     TVM's rules alone (for WebGPU: one workgroup of 64 threads per output row, seven barriers);
  gemv       ours for the layers (32 rows x 8 lanes per workgroup), dlight's for the LM head;
  default    ours for both (the LM head: a thread per vocabulary row) = what `mlcbuild make` builds.

One build's weights, three wasm libraries; headless Chromium on SwiftShader loads all three, then times decode
steps (LM head included) and decode_last_hidden steps (no LM head: the latent step) of each in turn, for a few
rounds, so all variants see the same machine load. Prints a table; the last stdout line is one JSON object.

  python3 bench/webgpu_gemv.py [--model tiny-qwen3] [--quant q0f32] [--steps 4] [--rounds 3]
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = {"dlight": {"linear": None, "lm_head": None}, "gemv": {"lm_head": None}, "default": {}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-qwen3")
    ap.add_argument("--quant", default="q0f32", help="an f32 quantization (SwiftShader has no shader-f16)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()

    from builder.compile.library import compile_model
    from builder.make import make
    from builder.models import ModelConfig
    from builder.run.browser import serve_and_run
    from mlcbuild_common.fsutil import sha256_file

    with tempfile.TemporaryDirectory(prefix="bench-gemv-") as tmp:
        tmp = Path(tmp)
        base = make(a.model, a.quant, tmp / "dist", targets=("cpu",), show_progress=False).out
        manifest = json.loads((base / "manifest.json").read_text())
        cfg = ModelConfig(**json.loads((base / "mlc-chat-config.json").read_text())["model_config"])
        for name, kernels in VARIANTS.items():
            d = tmp / name
            d.mkdir()
            for f in base.iterdir():
                if f.name != "manifest.json":
                    os.link(f, d / f.name)
            lib = f"{name}-webgpu.wasm"
            print(f"compiling {name} ...", file=sys.stderr)
            compile_model(cfg, a.quant, "webgpu", d / lib, show_progress=False, row_kernels=kernels)
            m = {**manifest, "name": f"{manifest['name']}-{name}", "libs": {"webgpu": lib}}
            m["files"] = {**manifest["files"], lib: {"size": (d / lib).stat().st_size, "sha256": sha256_file(d / lib)}}
            (d / "manifest.json").write_text(json.dumps(m))
        urls = ",".join(f"/v/{n}/" for n in VARIANTS)
        res = serve_and_run(f"harness/decode-bench.html?models={urls}&steps={a.steps}&rounds={a.rounds}",
                            {"/v/": tmp}, timeout_s=1800)
        shutil.rmtree(tmp / "dist", ignore_errors=True)
    if not res["ok"]:
        sys.exit(f"bench page failed: {res['error']}")
    rows = {n: res["result"][f"/v/{n}/"] for n in VARIANTS}
    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in rows.items()}
    print(f"{a.model} {a.quant}, SwiftShader, median of {a.steps * a.rounds} steps (ms)")
    print(f"{'variant':<10}{'decode':>10}{'latent step':>14}{'decode vs dlight':>18}")
    for n, m in med.items():
        print(f"{n:<10}{m['decode_ms']:>10.1f}{m['decode_hidden_ms']:>14.1f}"
              f"{med['dlight']['decode_ms'] / m['decode_ms']:>17.1f}x")
    print(json.dumps({"model": a.model, "quant": a.quant, "median_ms": med}))


if __name__ == "__main__":
    main()
