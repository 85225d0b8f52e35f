"""Link a TVM executable built for WebGPU (wasm32 host) into a standalone .wasm that tvmjs can load.

`export_library` hands our linker wasm OBJECT files (object_format = "o") for the host code and the
packed device modules; emcc links them with the cached runtime objects (builder/compile/runtime.py).
"""

import os
import subprocess
import tempfile
from pathlib import Path

from tvm.target import Target

from mlcbuild_common.errors import BuildFailed
from mlcbuild_common.fsutil import public_mode

from .runtime import ensure_runtime
from .toolchain import emcc_env, find_emcc

WASM_HOST = {"kind": "llvm", "mtriple": "wasm32-unknown-unknown-wasm", "vector-width": 128}  # wasm simd128
LINK_FLAGS = ["--no-entry", "-s", "WASM_BIGINT=1", "-s", "ERROR_ON_UNDEFINED_SYMBOLS=0",
              "-s", "STANDALONE_WASM=1", "-s", "ALLOW_MEMORY_GROWTH=1", "-s", "INITIAL_MEMORY=64MB"]


def webgpu_target() -> Target:
    return Target({"kind": "webgpu"}, host=WASM_HOST)


def make_linker(opt_level: int = 1, show_progress: bool = True):
    """An fcompile for `export_library`: links TVM's wasm objects with the runtime objects."""
    runtime = ensure_runtime(progress=show_progress)

    def link(output, objects, options=None):
        objects = [objects] if isinstance(objects, str) else list(objects)
        cmd = [find_emcc(), f"-O{opt_level}", *LINK_FLAGS, "-o", str(output),
               *[str(p) for p in runtime.objects], *objects, *(options or [])]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=emcc_env())
        if proc.returncode != 0:
            log = Path(tempfile.gettempdir()) / "mlcbuild-wasm-link.log"
            log.write_text(" ".join(cmd) + "\n\n" + proc.stdout + proc.stderr)
            first = next((ln for ln in proc.stderr.splitlines() if "error" in ln.lower()), "see log")
            raise BuildFailed(f"wasm link failed: {first.strip()[:200]}", f"full log: {log}")

    link.object_format = "o"
    return link


def export_wasm(executable, out: Path, opt_level: int = 1, show_progress: bool = True) -> Path:
    """Write `executable` (a VMExecutable built for webgpu_target()) to `out` atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".wasm")
    os.close(fd)
    try:
        executable.export_library(tmp, fcompile=make_linker(opt_level, show_progress))
        public_mode(tmp)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out
