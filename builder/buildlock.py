"""Kill-safe builds: one lock per output folder, leftovers of killed runs swept, children that die with us.

The lock file lives in the user cache (not in OUT/, so a failed run leaves OUT/ as it found it). Holding the lock
means no live run writes OUT/.NAME.*.tmp, so any such folder is a dead run's. The steps it had finished (its
.mlcbuild-steps.json says which) are kept as OUT/.NAME.salvage for the next run, which checks and reuses them.
"""

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path

from mlcbuild_common.errors import MlcbuildError

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


STEPS_RECORD = ".mlcbuild-steps.json"  # in a build's temp folder: the steps finished there, with their files


def salvage_dir(final: Path) -> Path:
    """Where the finished steps of a killed run wait for the next run: OUT/.NAME.salvage."""
    return final.with_name(f".{final.name}.salvage")


def _recorded_steps(folder: Path) -> int:
    try:
        return len(json.loads((folder / STEPS_RECORD).read_text()).get("steps", {}))
    except (OSError, ValueError, AttributeError):
        return 0


def sweep_leftovers(final: Path) -> list[str]:
    """Clear what killed runs left beside OUT/NAME (only call with the lock held): OUT/.NAME.old.* go, and of the
    temp folders (OUT/.NAME.*.tmp, an earlier salvage) the one with the most finished steps becomes
    OUT/.NAME.salvage, whose steps the next build reuses after checking them; the others go."""
    gone, keep = [], salvage_dir(final)
    if not final.parent.is_dir():
        return gone
    temps = [p for p in final.parent.glob(f".{final.name}.*") if p.is_dir() and p.name.endswith(".tmp")]
    if keep.is_dir():
        temps.append(keep)
    best = max(temps, key=_recorded_steps, default=None)
    for p in final.parent.glob(f".{final.name}.*"):
        if p == best or not p.is_dir() or not (p.name.endswith(".tmp") or ".old." in p.name or p == keep):
            continue
        shutil.rmtree(p, ignore_errors=True)
        gone.append(p.name)
    if best is not None and _recorded_steps(best) and best != keep:
        os.replace(best, keep)
    elif best is not None and not _recorded_steps(best):
        shutil.rmtree(best, ignore_errors=True)
        gone.append(best.name)
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
