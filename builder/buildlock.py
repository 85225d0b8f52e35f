"""Kill-safe builds: one lock per output folder, leftovers of killed runs swept, children that die with us.

The lock file lives in the user cache (not in OUT/, so a failed run leaves OUT/ as it found it). Holding the lock
means no live run writes OUT/.NAME.*.tmp, so any such folder is a dead run's and is removed.
"""

import contextlib
import ctypes
import fcntl
import hashlib
import os
import shutil
import signal
import sys
from pathlib import Path

from .errors import MlcbuildError
from .paths import cache_dir

PR_SET_PDEATHSIG = 1


@contextlib.contextmanager
def output_lock(final: Path, wait: bool = True, say=lambda s: print(s, file=sys.stderr, flush=True)):
    """Exclusive use of the build folder `final` (OUT/NAME) for this process."""
    key = hashlib.sha256(str(final.absolute()).encode()).hexdigest()[:16]
    path = cache_dir() / "locks" / f"{final.name}-{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            if not wait:
                raise MlcbuildError(f"another mlcbuild run (pid {holder}) is writing {final}",
                                    "wait for it, or drop --no-wait to queue behind it") from None
            say(f"mlcbuild: waiting for another run (pid {holder}) writing {final}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        sweep_leftovers(final)
        yield
    finally:
        os.close(fd)  # releases the lock


def sweep_leftovers(final: Path) -> list[str]:
    """Remove OUT/.NAME.*.tmp and OUT/.NAME.old.* left by killed runs (only call with the lock held)."""
    gone = []
    if final.parent.is_dir():
        for p in final.parent.glob(f".{final.name}.*"):
            if p.is_dir() and (p.name.endswith(".tmp") or ".old." in p.name):
                shutil.rmtree(p, ignore_errors=True)
                gone.append(p.name)
    return gone


def die_with_parent() -> None:
    """preexec_fn for children: the kernel sends them SIGKILL when the parent dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass  # not Linux/glibc: the parent's SIGTERM handler still stops its children


def remove_if_we_made_it(root: Path, existed: bool) -> None:
    """After a failed run: remove OUT/ if this run created it and nothing is in it."""
    if not existed and root.is_dir() and not any(root.iterdir()):
        with contextlib.suppress(OSError):
            root.rmdir()
