"""Atomic writes and checksums: nothing half-written is ever left under a final name."""

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def source_digest(src: Path) -> str:
    """Content hash of a model's source weights and configs (a folder's files, or one GGUF): a build manifest's
    source.sha256, and the weights hash a recursivelink.json records for each agent."""
    src = Path(src)
    files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.name}\0{p.stat().st_size}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


def umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask can only read by setting)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def public_mode(path, is_dir: bool = False) -> None:
    """Give a temp file or folder (mkstemp: 0600, mkdtemp: 0700) the modes open() and mkdir() would have given
    it, so a web server running as another user can read what we publish. Executable files stay executable."""
    full = is_dir or os.stat(path).st_mode & 0o100
    os.chmod(path, (0o777 if full else 0o666) & ~umask())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        public_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


@contextmanager
def atomic_dir(final: Path):
    """Yield a temp dir beside `final`; on success it replaces `final` in one rename, on error it is removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        yield tmp
        public_mode(tmp, is_dir=True)
        if final.exists():
            old = final.with_name(f".{final.name}.old.{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
