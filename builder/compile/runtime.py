"""TVM's wasm runtime, compiled from the installed wheel's sources with Debian's emscripten.

The apache-tvm wheel ships web/emcc/*.cc and the runtime sources but not the prebuilt wasm runtime, and
nine headers those sources include (see patches/README.md). We stage a source tree from the wheels,
overlay our own headers from patches/tvm-web/overlay, and compile the three runtime units to wasm
OBJECT files: TVM emits LLVM-22 code while emscripten 3.1.6 links with LLVM 14, so bitcode cannot be
mixed but wasm objects can. The objects are cached per (tvm, tvm-ffi, emcc, patches, flags) and verified
by sha256 every time they are used.
"""

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mlcbuild_common import progress
from mlcbuild_common.errors import BuildFailed, ChecksumMismatch
from mlcbuild_common.fsutil import atomic_dir, sha256_file, write_json_atomic

from ..paths import cache_dir, patches_dir
from .toolchain import dist_version, emcc_env, emcc_version, find_emcc, tvm_sources, tvm_version

UNITS = ("wasm_runtime", "tvmjs_support", "webgpu_runtime")


def overlay_dir() -> Path:
    return patches_dir() / "tvm-web" / "overlay"


def source_patches() -> list[Path]:
    """Unified diffs applied to the staged wheel sources (patches/README.md says why each exists)."""
    return sorted((patches_dir() / "tvm-web" / "source").glob("*.patch"))

CFLAGS = ["-O3", "-std=c++17", "-Wno-ignored-attributes"]
RECIPE = 1  # bump when the staging or the flags change in a way the key below does not see


@dataclass
class Runtime:
    dir: Path
    objects: list[Path]
    reused: bool
    seconds: float


def _overlay_files() -> list[Path]:
    return sorted(p for p in overlay_dir().rglob("*") if p.is_file())


def cache_key() -> str:
    """A short hash of everything that changes the objects."""
    h = hashlib.sha256()
    parts = [f"recipe={RECIPE}", f"tvm={tvm_version()}", f"tvm-ffi={dist_version('apache-tvm-ffi')}",
             f"emcc={emcc_version()}", "flags=" + " ".join(CFLAGS)]
    for p in _overlay_files():
        parts.append(f"{p.relative_to(overlay_dir())}={sha256_file(p)}")
    for p in source_patches():
        parts.append(f"source/{p.name}={sha256_file(p)}")
    h.update("\n".join(parts).encode())
    return h.hexdigest()[:16]


def runtime_dir() -> Path:
    return cache_dir() / "wasm-runtime" / f"tvm-{tvm_version()}_emcc-{emcc_version()}_{cache_key()}"


def damaged_units(rt_dir: Path) -> list[str]:
    """Units whose object is missing, or differs in size or sha256 from the manifest (all when no manifest)."""
    try:
        files = json.loads((rt_dir / "manifest.json").read_text())["files"]
    except (OSError, ValueError, KeyError):
        return list(UNITS)
    bad = []
    for unit in UNITS:
        p, rec = rt_dir / f"{unit}.o", files.get(f"{unit}.o")
        if not rec or not p.is_file() or p.stat().st_size != rec["size"] or sha256_file(p) != rec["sha256"]:
            bad.append(unit)
    return bad


def verify(rt_dir: Path) -> list[Path]:
    """Return the object paths if the cached build is complete and every checksum matches; else raise."""
    bad = damaged_units(rt_dir)
    if bad == list(UNITS) and not (rt_dir / "manifest.json").is_file():
        raise ChecksumMismatch(f"the wasm runtime is not built yet ({rt_dir})")
    if bad:
        raise ChecksumMismatch(f"cached runtime objects {', '.join(bad)} in {rt_dir} are truncated or modified")
    return [rt_dir / f"{u}.o" for u in UNITS]


def stage_sources(root: Path) -> None:
    """Lay out a TVM-like source tree under `root` from the wheels, add our overlay headers, then apply our
    source patches (each must apply exactly; one that does not fails the build rather than being skipped)."""
    src = tvm_sources()
    shutil.copytree(src["src"], root / "src")
    shutil.copytree(src["include"], root / "include")
    shutil.copytree(src["web"] / "emcc", root / "web" / "emcc")
    shutil.copytree(src["ffi_include"], root / "3rdparty" / "tvm-ffi" / "include")
    shutil.copytree(src["ffi_src"], root / "3rdparty" / "tvm-ffi" / "src")
    for p in _overlay_files():
        dst = root / p.relative_to(overlay_dir())
        if dst.exists():  # upstream now ships it: ours must not shadow theirs silently
            raise BuildFailed(f"patch {p} would overwrite {dst} from the wheel", "drop it from patches/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, dst)
    if source_patches() and not shutil.which("patch"):
        raise BuildFailed("the `patch` tool is missing (the wasm runtime applies patches/tvm-web/source/*.patch)",
                          "install it: apt-get install patch")
    for p in source_patches():
        proc = subprocess.run(["patch", "-p1", "--forward", "--batch", "--fuzz=0", "-d", str(root), "-i", str(p)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildFailed(f"source patch {p.name} does not apply to this TVM wheel: "
                              f"{(proc.stdout + proc.stderr).strip()[:300]}", "update or drop it in patches/")


def include_flags(root: Path) -> list[str]:
    return [f"-I{root}", f"-I{root / 'include'}", f"-I{root / '3rdparty/tvm-ffi/include'}",
            f"-I{root / '3rdparty/compiler-rt'}"]


def _compile_unit(emcc: str, root: Path, unit: str, out: Path, log: Path) -> float:
    t0 = time.perf_counter()
    cmd = [emcc, *include_flags(root), *CFLAGS, "-c", "-o", str(out), str(root / "web" / "emcc" / f"{unit}.cc")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=emcc_env())
    log.write_text(" ".join(cmd) + "\n\n" + proc.stdout + proc.stderr)
    if proc.returncode != 0:
        first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), "see log")
        raise BuildFailed(f"emcc failed on {unit}.cc: {first.strip()[:200]}", f"full log: {log}")
    return time.perf_counter() - t0


def build(final: Path, units: list[str], show_progress: bool = True) -> None:
    """(Re)compile `units` into `final`, keeping the other, verified objects; swap the folder in atomically."""
    emcc = find_emcc()
    logs = cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with atomic_dir(final) as out, tempfile.TemporaryDirectory(prefix="mlcbuild-tvmsrc-") as tmp:
        for unit in set(UNITS) - set(units):
            shutil.copy2(final / f"{unit}.o", out / f"{unit}.o")
        root = Path(tmp)
        stage_sources(root)
        times = {}
        with progress.bar(total=len(units), desc="wasm runtime (emcc)", enabled=show_progress, unit="unit") as pb:
            with ThreadPoolExecutor(max_workers=len(units)) as pool:
                futs = {u: pool.submit(_compile_unit, emcc, root, u, out / f"{u}.o", logs / f"runtime-{u}.log")
                        for u in units}
                for unit, fut in futs.items():
                    times[unit] = round(fut.result(), 1)
                    pb.update(1)
        files = {f"{u}.o": {"sha256": sha256_file(out / f"{u}.o"), "size": (out / f"{u}.o").stat().st_size}
                 for u in UNITS}
        write_json_atomic(out / "manifest.json", {
            "files": files, "tvm": tvm_version(), "tvm_ffi": dist_version("apache-tvm-ffi"),
            "emcc": emcc_version(), "cflags": CFLAGS, "compile_seconds": times})


def ensure_runtime(force: bool = False, progress: bool = True) -> Runtime:
    """Return verified runtime objects, compiling the units that are missing or damaged (all when forced)."""
    t0 = time.perf_counter()
    final = runtime_dir()
    units = list(UNITS) if force else damaged_units(final)
    if not units:
        return Runtime(final, [final / f"{u}.o" for u in UNITS], reused=True, seconds=time.perf_counter() - t0)
    build(final, units, show_progress=progress)
    return Runtime(final, verify(final), reused=False, seconds=time.perf_counter() - t0)
