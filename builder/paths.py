"""Where mlcbuild keeps things: the repo's own folders and the user cache."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WEB = REPO / "web"
PATCHES = REPO / "patches"


def cache_dir() -> Path:
    """User cache root: $MLCBUILD_CACHE, else $XDG_CACHE_HOME/mlcbuild, else ~/.cache/mlcbuild."""
    if os.environ.get("MLCBUILD_CACHE"):
        return Path(os.environ["MLCBUILD_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "mlcbuild"
