"""builds.json: the index of a build output root that the playground reads from any base URL.

`make` rewrites it after each successful build (`update(out_root)`); `mlcbuild index DIR` writes it for a folder put
together by hand or by the release. It lists the build folders directly under the root (those holding a
manifest.json) and every links file under the root (any *.json whose format is "recursivelink"; dot folders left
out) with its pattern and its agents' hidden sizes, which the page's pattern picker shows. Every URL in it is relative
to builds.json itself, so the same file works from a local folder, GitHub Pages or a Hugging Face repo's
`resolve/main/`. No timestamps: the same folders give the same bytes.
"""

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import click

from mlcbuild_common.errors import MlcbuildError
from mlcbuild_common.fsutil import sha256_file, write_json_atomic

INDEX = "builds.json"
FORMAT = "mlcbuild-builds/1"
MANIFEST = "manifest.json"


# a links file says so near its start ({"format": "recursivelink", ...} as train_links writes it), so the other
# JSON files of a build (tokenizer.json can be megabytes) are sniffed, not parsed
SNIFF = 65536


def _maybe_links(path: Path) -> bool:
    with open(path, "rb") as f:
        return b'"recursivelink"' in f.read(SNIFF)


def _links_paths(root: Path) -> list[Path]:
    """*.json files under `root` that may be links files: folder by folder (root first, then sorted subfolders),
    recursivelink.json first in each (the page's default); dot folders and dot files (temp files) skipped."""
    found = []
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names = sorted((n for n in files if n.endswith(".json") and not n.startswith(".")),
                       key=lambda n: (n != "recursivelink.json", n))
        for n in names:
            path = Path(here) / n
            if path != root / INDEX and path.is_file() and _maybe_links(path):
                found.append(path)
    return found


def _build_entry(folder: Path) -> dict | None:
    raw = (folder / MANIFEST).read_bytes()
    try:
        m = json.loads(raw)
    except ValueError:
        return None  # a damaged build is left out, not fatal to the index
    if not isinstance(m, dict):
        return None
    libs = m.get("libs") or {}
    files = m.get("files") if isinstance(m.get("files"), dict) else {}
    sizes = {n: int(r.get("size", 0)) for n, r in files.items() if isinstance(r, dict)} or \
        {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name != MANIFEST}
    total = sum(sizes.values()) + len(raw)
    cpu = sizes.get(libs.get("cpu"), 0)
    url = quote(folder.name) + "/"
    src = m.get("source") if isinstance(m.get("source"), dict) else {}
    return {
        "name": folder.name, "folder": url, "model": m.get("name"), "quantization": m.get("quantization"),
        "model_type": m.get("model_type"), "hidden_size": m.get("hidden_size"), "targets": sorted(libs),
        "libs": libs, "source": {"model_id": src.get("model_id"), "sha256": src.get("sha256")},
        # what a browser downloads (everything but the CPU library) next to the whole folder
        "sizes": {"total": total, "webgpu": total - cpu},
        "manifest_sha256": hashlib.sha256(raw).hexdigest(), "links": [],  # filled by scan()
    }


def _links_entry(path: Path, url: str, builds: list[dict]) -> dict | None:
    try:
        doc = json.loads(path.read_bytes())
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("format") != "recursivelink":
        return None
    pattern = doc.get("pattern") if isinstance(doc.get("pattern"), dict) else {}
    agents = []
    for a in doc.get("agents") or []:
        if not isinstance(a, dict):
            continue
        w = a.get("weights_sha256")
        # the builds made from the weights this agent was trained on, with this hidden size
        fits = [b["name"] for b in builds if w and b["source"]["sha256"] == w and b["hidden_size"] == a.get(
            "hidden_size")]
        agents.append({"name": a.get("name"), "model_id": a.get("model_id"), "hidden_size": a.get("hidden_size"),
                       "weights_sha256": w, "builds": fits})
    return {"file": url, "size": path.stat().st_size, "sha256": sha256_file(path), "pattern": pattern.get("name"),
            "rounds": doc.get("rounds"), "latent_steps": doc.get("latent_steps"), "agents": agents}


def scan(root: Path) -> dict:
    """The builds.json document for output root `root`."""
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                     and (p / MANIFEST).is_file())
    builds = [b for b in (_build_entry(f) for f in folders) if b]
    links = []
    for path in _links_paths(root):
        entry = _links_entry(path, quote(path.relative_to(root).as_posix()), builds)
        if entry:  # valid links files only
            links.append(entry)
    for b in builds:
        b["links"] = [x["file"] for x in links if x["file"].startswith(b["folder"])]
    return {"format": FORMAT, "builds": builds, "links": links}


@contextmanager
def _root_lock(root: Path):
    """Two makes finishing at once in one root: each scans and writes under a lock on the root folder itself, so
    the last writer's scan sees both builds."""
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update(root: Path) -> Path:
    """(Re)write root/builds.json atomically (temp file + rename); returns its path."""
    root = Path(root)
    with _root_lock(root):
        doc = scan(root)
        write_json_atomic(root / INDEX, doc)
    return root / INDEX


@click.command(name="index")
@click.argument("root", type=click.Path(file_okay=False, exists=True))
def index_cmd(root):
    """Write ROOT/builds.json: the builds and links files in ROOT, for the playground (make does it after a build)."""
    try:
        path = update(Path(root))
    except OSError as e:
        raise MlcbuildError(f"cannot write {Path(root) / INDEX}: {e.strerror or e}", "pick a writable folder") \
            from None
    doc = json.loads(path.read_text())
    click.echo(f"{path}: {len(doc['builds'])} build(s), {len(doc['links'])} links file(s)")
