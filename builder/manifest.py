"""A build's manifest.json: every file with its size and sha256. Read by everything that loads a build."""

import json
from pathlib import Path

from mlcbuild_common.errors import ChecksumMismatch, MlcbuildError
from mlcbuild_common.fsutil import sha256_file

MANIFEST = "manifest.json"


def read_manifest(out: Path) -> dict:
    """The manifest of build folder `out`, parsed behind a one-line error."""
    mf = Path(out) / MANIFEST
    if not mf.is_file():
        raise MlcbuildError(f"{out}: no {MANIFEST}; not an mlcbuild output", "run `mlcbuild make` first")
    try:
        manifest = json.loads(mf.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MlcbuildError(f"{mf}: unreadable ({str(e)[:80]})", "rebuild with `mlcbuild make`") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise MlcbuildError(f"{mf}: not an mlcbuild manifest (no files table)", "rebuild with `mlcbuild make`")
    return manifest


def verify_output(out: Path) -> dict:
    """Check every file of a build output against its manifest; raise ChecksumMismatch on any difference."""
    manifest = read_manifest(out)
    for name, rec in manifest["files"].items():
        p = out / name
        if not p.is_file() or p.stat().st_size != rec["size"] or sha256_file(p) != rec["sha256"]:
            raise ChecksumMismatch(f"{p} does not match manifest.json (missing, truncated or modified)",
                                   "rebuild with `mlcbuild make`")
    return manifest
