"""Compile a model graph to a WebGPU .wasm (wasm32 host, linked with our runtime) or a CPU .so."""

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .errors import BuildFailed, MlcbuildError
from .models import ModelConfig, build_graph

TARGETS = ("webgpu", "cpu")


def lib_name(name: str, quant: str, target: str) -> str:
    return f"{name}-{quant}-{target}.{'wasm' if target == 'webgpu' else 'so'}"


def tvm_target(target: str):
    from .wasm import webgpu_target

    if target == "webgpu":
        return webgpu_target()
    if target == "cpu":
        from .cpu_schedule import host_target

        return host_target()
    raise MlcbuildError(f"unknown target '{target}'", f"use one of {', '.join(TARGETS)}")


def compile_model(cfg: ModelConfig, quant: str, target: str, out: Path, opt_level: int = 1,
                  show_progress: bool = True) -> dict:
    """Compile in a child process with a fixed PYTHONHASHSEED and address-space randomization off.

    The order of a few emitted instructions depends on Python's string hash seed and on heap addresses
    (pointer-keyed maps in the compiler); pinning both makes two builds byte-identical. The child also
    gives its memory back to the OS when it exits.
    """
    if target not in TARGETS:  # validate before starting a process (without importing TVM here)
        raise MlcbuildError(f"unknown target '{target}'", f"use one of {', '.join(TARGETS)}")
    args = {"cfg": cfg.as_dict(), "quant": quant, "target": target, "out": str(out), "opt_level": opt_level,
            "show_progress": show_progress}
    pkg_root = str(Path(__file__).resolve().parent.parent)  # the child imports this very builder package
    env = {**os.environ, "PYTHONHASHSEED": "0",
           "PYTHONPATH": os.pathsep.join(p for p in (pkg_root, os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "builder.compile", json.dumps(args)]
    if shutil.which("setarch"):
        cmd = ["setarch", platform.machine(), "-R", *cmd]
    proc = subprocess.run(cmd, env=env,
                          stdout=subprocess.PIPE, stderr=None if show_progress else subprocess.PIPE, text=True)
    if proc.returncode != 0:
        err = (proc.stderr or "").strip().splitlines()
        msg = next((ln for ln in reversed(err) if ln.startswith("mlcbuild: error:")), err[-1] if err else "")
        raise BuildFailed(f"compiling {out.name} failed: {msg.removeprefix('mlcbuild: error: ')}",
                          "re-run with the same command to see the compiler output")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compile_here(cfg: ModelConfig, quant: str, target: str, out: Path, opt_level: int = 1,
                 show_progress: bool = True) -> dict:
    """Build the ABI graph for `target` and write the library to `out` atomically; returns timings."""
    import tvm

    from .wasm import export_wasm

    t0 = time.perf_counter()
    tgt = tvm_target(target)
    mod, names, meta = build_graph(cfg, quant, tgt)
    t1 = time.perf_counter()
    if target == "cpu":
        from .cpu_schedule import cpu_pipeline
        from .models.params import model_dtype

        heads = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, model_dtype(quant))
        ex = tvm.compile(mod, tgt, relax_pipeline=cpu_pipeline(tgt, heads))
    else:
        from .gpu_attention import swap_merge_state
        from .models.params import model_dtype

        ex = tvm.compile(swap_merge_state(cfg.num_attention_heads, model_dtype(quant))(mod), tgt)
    t2 = time.perf_counter()
    if target == "webgpu":
        export_wasm(ex, out, opt_level=opt_level, show_progress=show_progress)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".so")
        os.close(fd)
        try:
            ex.export_library(tmp)
            os.replace(tmp, out)
        finally:
            Path(tmp).unlink(missing_ok=True)
    t3 = time.perf_counter()
    return {"graph_s": round(t1 - t0, 2), "compile_s": round(t2 - t1, 2), "link_s": round(t3 - t2, 2),
            "bytes": out.stat().st_size, "params": names, "metadata": meta}


if __name__ == "__main__":  # the child side of compile_model
    a = json.loads(sys.argv[1])
    try:
        res = compile_here(ModelConfig(**a["cfg"]), a["quant"], a["target"], Path(a["out"]), a["opt_level"],
                           a["show_progress"])
    except MlcbuildError as e:
        print(f"mlcbuild: error: {e.format_message()}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(res))
