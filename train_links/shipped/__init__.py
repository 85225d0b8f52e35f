"""RecursiveLinks trained by mlcbuild and shipped with it (package data): `make --links` uses the file whose
agents were trained on the build's exact weights (the source's content hash) instead of training again.
Each file's `training` block holds the command that reproduces it."""

import json
from pathlib import Path

HERE = Path(__file__).parent


def _shipped() -> list[tuple[Path, dict]]:
    """(path, document) of every shipped links file, in name order; unreadable files left out."""
    docs = []
    for path in sorted(HERE.glob("*.json")):
        try:
            docs.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue
    return docs


def find_shipped(weights_sha256: str, pattern: str) -> Path | None:
    """The shipped recursivelink.json for `pattern` whose every agent has these weights, if there is one."""
    for path, doc in _shipped():
        agents = doc.get("agents") or []
        same = agents and all(a.get("weights_sha256") == weights_sha256 for a in agents)
        if same and doc.get("pattern", {}).get("name") == pattern:
            return path
    return None


def shipped_for_several(weights: set[str]) -> list[Path]:
    """The shipped links files that join two or more different models (a heterogeneous pair or set) whose every
    agent was trained on weights in `weights` (the content hashes of builds at hand)."""
    hits = []
    for path, doc in _shipped():
        need = {a.get("weights_sha256") for a in doc.get("agents") or []}
        if len(need) > 1 and need <= weights:
            hits.append(path)
    return hits
