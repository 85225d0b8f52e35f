"""External tools: emscripten (Debian's emcc), node, and the installed TVM wheel's sources."""

import os
import re
import shutil
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

from mlcbuild_common.errors import ToolMissing

from .. import pins

DEBIAN_NODE_PATH = "/usr/share/nodejs"  # Debian's emcc finds node-acorn only through NODE_PATH


def emcc_env() -> dict:
    env = dict(os.environ)
    if Path(DEBIAN_NODE_PATH).is_dir() and DEBIAN_NODE_PATH not in env.get("NODE_PATH", ""):
        env["NODE_PATH"] = os.pathsep.join(p for p in (env.get("NODE_PATH"), DEBIAN_NODE_PATH) if p)
    return env


def find_emcc() -> str:
    exe = os.environ.get("MLCBUILD_EMCC") or shutil.which("emcc")
    if not exe:
        raise ToolMissing("emcc (emscripten) is not on PATH", "apt-get install emscripten")
    return exe


def find_host_cc() -> str:
    """The C/C++ compiler TVM links CPU libraries with ($CXX or $CC, else the first of its usual names on PATH)."""
    exe = os.environ.get("CXX") or os.environ.get("CC")
    for name in ([] if exe else ["g++", "gcc", "clang++", "clang", "c++", "cc"]):
        exe = shutil.which(name)
        if exe:
            break
    if not exe:
        raise ToolMissing("no C/C++ compiler (g++, gcc, clang) on PATH to link the CPU library", "apt-get install g++")
    return exe


@cache
def emcc_version(exe: str | None = None) -> str:
    exe = exe or find_emcc()
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, env=emcc_env(), timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ToolMissing(f"emcc at {exe} does not run ({e})", "apt-get install --reinstall emscripten") from None
    m = re.search(r"(\d+\.\d+\.\d+)", out)
    if not m:
        raise ToolMissing(f"cannot read the version of {exe}", "apt-get install --reinstall emscripten")
    return m.group(1)


def dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def tvm_version() -> str:
    v = dist_version("apache-tvm")
    if v is None:
        raise ToolMissing("apache-tvm is not installed", f"pip install apache-tvm=={pins.TVM}")
    return v


def tvm_sources() -> dict[str, Path]:
    """Where the installed wheels keep the sources the wasm runtime is built from."""
    import tvm
    import tvm_ffi

    tvm_dir = Path(tvm.__file__).parent
    ffi_dir = Path(tvm_ffi.__file__).parent
    parts = {"src": tvm_dir / "src", "include": tvm_dir / "include", "web": tvm_dir / "web",
             "ffi_include": ffi_dir / "include", "ffi_src": ffi_dir / "src"}
    for name, p in parts.items():
        if not p.is_dir():
            raise ToolMissing(f"the apache-tvm wheel has no {p} ({name})",
                              f"pip install --force-reinstall apache-tvm=={pins.TVM}")
    return parts
