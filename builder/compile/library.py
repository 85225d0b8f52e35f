"""Compile a model graph to a WebGPU .wasm (wasm32 host, linked with our runtime) or a CPU .so."""

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from mlcbuild_common import progress
from mlcbuild_common.errors import BuildFailed, MlcbuildError
from mlcbuild_common.fsutil import public_mode

from ..buildlock import die_with_parent
from ..models import ModelConfig, build_graph
from .watch import PassWatch, error_line, save_log

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
                  show_progress: bool = True, verbose: bool = False, row_kernels: dict | None = None,
                  cpu_dot: str = "f32") -> dict:
    """Compile in a child process with a fixed PYTHONHASHSEED and address-space randomization off.

    Both pins are a second line of defence: the order that followed heap addresses (TVM's VMShapeLower, which
    moved with the size of the environment) is fixed by stable_order.py, so builds are byte-identical in any
    environment (tests/test_reproducible.py). The child also gives its memory back to the OS when it exits.
    """
    if target not in TARGETS:  # validate before starting a process (without importing TVM here)
        raise MlcbuildError(f"unknown target '{target}'", f"use one of {', '.join(TARGETS)}")
    args = {"cfg": cfg.as_dict(), "quant": quant, "target": target, "out": str(out), "opt_level": opt_level,
            "show_progress": show_progress, "row_kernels": row_kernels, "cpu_dot": cpu_dot}
    pkg_root = str(Path(__file__).resolve().parents[2])  # the child imports this very builder package
    env = {**os.environ, "PYTHONHASHSEED": "0", progress.TTY_PARENT: "1" if sys.stderr.isatty() else "0",
           "PYTHONPATH": os.pathsep.join(p for p in (pkg_root, os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "builder.compile.library", json.dumps(args)]
    if shutil.which("setarch"):
        cmd = ["setarch", platform.machine(), "-R", *cmd]
    # the child's stderr is read by a thread (the progress line goes on to ours) so its error lines can be parsed
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=die_with_parent)  # a SIGKILLed parent takes its compile along
    err_chunks: list[bytes] = []

    def pump():  # raw bytes, so a progress line's carriage returns redraw it in place on our terminal
        while chunk := os.read(proc.stderr.fileno(), 4096):
            err_chunks.append(chunk)
            if show_progress and b"mlcbuild: " not in chunk:
                raw = getattr(sys.stderr, "buffer", None)
                if raw:
                    raw.write(chunk)
                else:
                    sys.stderr.write(chunk.decode(errors="replace"))
                sys.stderr.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        stdout = proc.stdout.read().decode()
        proc.wait()
    except BaseException:  # Ctrl-C or SIGTERM here: stop the child before the temp folder goes
        proc.kill()
        proc.wait()
        raise
    reader.join()
    if proc.returncode != 0:
        err = b"".join(err_chunks).decode(errors="replace").replace("\r", "\n").strip().splitlines()
        msg = next((ln for ln in reversed(err) if ln.startswith("mlcbuild: error:")), err[-1] if err else "")
        log = next((ln.removeprefix("mlcbuild: log: ") for ln in err if ln.startswith("mlcbuild: log: ")), None)
        if log and verbose:
            sys.stderr.write(Path(log).read_text())
        # a compiler failure points at its log; an input error from the child already carries its fix
        fix = f"full trace in {log}; --verbose prints it" if log else None
        msg = msg.removeprefix("mlcbuild: error: ")
        sep = " " if msg.startswith(("in pass ", "while ")) else ": "
        raise BuildFailed(f"compiling {out.name} failed{sep}{msg}", fix)
    return json.loads(stdout.strip().splitlines()[-1])


def compile_here(cfg: ModelConfig, quant: str, target: str, out: Path, opt_level: int = 1,
                 show_progress: bool = True, watch: "PassWatch | None" = None, row_kernels: dict | None = None,
                 cpu_dot: str = "f32") -> dict:
    """Build the ABI graph for `target` and write the library to `out` atomically; returns timings.
    `watch` follows the passes (progress, and the failing pass for the error message). `row_kernels`: WebGPU
    only, {"linear": (rows, lanes) | None, "lm_head": ...} overriding gpu_schedule's defaults (for benches).
    `cpu_dot`: CPU only, "f32" or "int8" (one-row kernels with 8-bit activations: cpu_int8_dot.py)."""
    import tvm

    from ..models.params import model_dtype
    from .checked_cse import checked_cse
    from .wasm import export_wasm

    watch = watch or PassWatch(f"compiling {out.name}", False)
    t0 = time.perf_counter()
    watch.stage = "graph"
    tgt = tvm_target(target)
    mod, names, meta = build_graph(cfg, quant, tgt)
    t1 = time.perf_counter()
    watch.stage = "compile"
    ctx = tvm.transform.PassContext.current()
    passes = tvm.transform.PassContext(opt_level=ctx.opt_level, config=dict(ctx.config),
                                       instruments=[watch.instrument()])
    with passes, checked_cse():  # TVM's CSE breaks some attention kernels (one KV head): they go without it
        if target == "cpu":
            from .cpu_schedule import cpu_pipeline

            if cpu_dot == "int8":
                from .cpu_int8_dot import has_vnni

                if not has_vnni(tgt):
                    raise MlcbuildError(f"--cpu-dot int8 needs AVX-512 VNNI, which this CPU ({tgt.mcpu}) lacks",
                                        "build with --cpu-dot f32 (the default)")
            heads = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, model_dtype(quant))
            sliding = cfg.sliding_window if "sliding_attention" in cfg.layer_types else 0
            ex = tvm.compile(mod, tgt, relax_pipeline=cpu_pipeline(tgt, heads, sliding, cpu_dot == "int8"))
        else:
            from .gpu_attention import swap_merge_state
            from .gpu_schedule import gpu_pipeline

            ex = tvm.compile(swap_merge_state(cfg.num_attention_heads, model_dtype(quant))(mod), tgt,
                             relax_pipeline=gpu_pipeline(tgt, **(row_kernels or {})))
    t2 = time.perf_counter()
    watch.stage = "link"
    watch.stack.clear()
    watch.close(f"{watch.count} passes in {t2 - t1:.0f} s; linking")
    if target == "webgpu":
        export_wasm(ex, out, opt_level=opt_level, show_progress=show_progress)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".so")
        os.close(fd)
        try:
            ex.export_library(tmp)
            public_mode(tmp)
            os.replace(tmp, out)
        finally:
            Path(tmp).unlink(missing_ok=True)
    t3 = time.perf_counter()
    return {"graph_s": round(t1 - t0, 2), "compile_s": round(t2 - t1, 2), "link_s": round(t3 - t2, 2),
            "bytes": out.stat().st_size, "params": names, "metadata": meta}


if __name__ == "__main__":  # the child side of compile_model
    a = json.loads(sys.argv[1])
    out = Path(a["out"])
    watch = PassWatch(f"compiling {out.name}", a["show_progress"])
    try:
        res = compile_here(ModelConfig(**a["cfg"]), a["quant"], a["target"], out, a["opt_level"],
                           a["show_progress"], watch, a.get("row_kernels"), a.get("cpu_dot", "f32"))
    except MlcbuildError as e:
        print(f"mlcbuild: error: {e.format_message()}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # a compiler failure: a short summary here, the whole trace in a log
        watch.close()
        where = f"in pass {watch.failing_pass()}" if watch.stage == "compile" and watch.failing_pass() \
            else f"while {'building the graph' if watch.stage == 'graph' else 'linking'}"
        log = save_log(out.name, watch.stage, watch.failing_pass(), e)
        print(f"mlcbuild: error: {where}: {error_line(e)}", file=sys.stderr)
        print(f"mlcbuild: log: {log}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(res))
