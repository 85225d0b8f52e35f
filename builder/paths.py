"""Where mlcbuild keeps things: its own data folders (web/, patches/) and the user cache.

In a checkout, web/ and patches/ sit next to the package. An installed wheel carries them as package data
under builder/_data/ (setup.py copies them at build time); the playground is then copied once per content
hash into the user cache, where `npm ci` may write its node_modules.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from functools import cache
from importlib import resources
from pathlib import Path

from mlcbuild_common.errors import MlcbuildError, ToolMissing

REPO = Path(__file__).resolve().parent.parent
WEB_PACKAGES = "node_modules"


def cache_dir() -> Path:
    """User cache root: $MLCBUILD_CACHE, else $XDG_CACHE_HOME/mlcbuild, else ~/.cache/mlcbuild."""
    if os.environ.get("MLCBUILD_CACHE"):
        return Path(os.environ["MLCBUILD_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "mlcbuild"


def _packaged(name: str) -> Path | None:
    p = Path(str(resources.files("builder") / "_data" / name))
    return p if p.is_dir() else None


def _checkout(name: str) -> Path | None:
    p = REPO / name
    return p if (REPO / "pyproject.toml").is_file() and p.is_dir() else None


def patches_dir() -> Path:
    """patches/: our overlay on TVM's web runtime sources (read only)."""
    found = _packaged("patches") or _checkout("patches")
    if not found:
        raise MlcbuildError("mlcbuild's patches/ folder is missing from this install", "reinstall mlcbuild")
    return found


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and WEB_PACKAGES not in p.relative_to(root).parts:
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


@cache  # an installed copy is hashed once per process, not on every page served
def web_dir() -> Path:
    """The playground and browser harness folder (web/), in a place where its npm packages can be installed."""
    found = _checkout("web")
    if found:
        return found
    src = _packaged("web")
    if not src:
        raise MlcbuildError("mlcbuild's web/ folder is missing from this install", "reinstall mlcbuild")
    dst = cache_dir() / "web" / _tree_digest(src)
    if not dst.is_dir():
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        try:
            tmp.rename(dst)
        except OSError:  # another process got there first
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


def ensure_web_packages(web: Path, need: str) -> None:
    """Install web/'s locked npm packages when `need` (a path under node_modules) is missing."""
    if (web / WEB_PACKAGES / need).exists():
        return
    npm = shutil.which("npm")
    if not npm:
        raise ToolMissing(f"{web}/{WEB_PACKAGES} lacks {need} and npm is not installed", "apt-get install npm")
    print(f"mlcbuild: installing the playground's npm packages into {web} (once)", file=sys.stderr, flush=True)
    proc = subprocess.run([npm, "ci", "--prefix", str(web), "--no-audit", "--no-fund", "--loglevel=error"],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not (web / WEB_PACKAGES / need).exists():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ToolMissing(f"npm ci in {web} failed: {tail}", f"run: npm ci --prefix {web}")
