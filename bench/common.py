"""Helpers the bench scripts share: paths, run metadata, the JSON result line, tables, peak memory.

Imported as `common`: a script run as `python3 bench/NAME.py` has bench/ first on sys.path.
"""

import argparse
import importlib.util
import json
import os
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# a script run as `python3 bench/NAME.py` has bench/ first on sys.path, where bench/train_links.py would shadow the
# train_links package: the checkout goes first and bench/ last (its modules still import from there)
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() not in (BENCH, REPO)] + [str(BENCH)]


# -- paths and loading ----------------------------------------------------------------------------------------------

def bench_cache() -> Path:
    """<mlcbuild cache>/bench: generated models and builds that later runs reuse."""
    from builder.paths import cache_dir

    return cache_dir() / "bench"


def load_script(name: str):
    """bench/NAME.py as a module, loaded by path (bench/ is no package, and latent_vs_text.py puts it last on
    sys.path so that bench/train_links.py cannot shadow the train_links package)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# -- run metadata and the result line -------------------------------------------------------------------------------

def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def loadavg() -> list[float]:
    """Timings are noisy on a shared machine: every result records the load around it."""
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of the script's docstring."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0])


def add_json_file(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--json-file", type=Path, default=None, help="also append the JSON result line here")


def append_line(path: Path | None, line: str) -> None:
    """Append one JSON line to --json-file (nothing when it was not given)."""
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def last_json(stdout: str):
    """A child's result: the last line of its stdout is one JSON object."""
    return json.loads(stdout.strip().splitlines()[-1])


def print_table(rows, head=None, align: str = "l") -> None:
    """Columns two spaces apart, each as wide as its widest cell; `head` and a line of dashes on top if given.
    align: one letter per column, l(eft), r(ight) or - (unpadded); the last letter holds for the rest."""
    table = ([[str(c) for c in head]] if head else []) + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    if head:
        table.insert(1, ["-" * n for n in w])
    for r in table:
        cells = []
        for i, (c, n) in enumerate(zip(r, w, strict=True)):
            how = align[min(i, len(align) - 1)]
            cells.append(c.ljust(n) if how == "l" else c.rjust(n) if how == "r" else c)
        print("  ".join(cells))


# -- memory ---------------------------------------------------------------------------------------------------------

def rss_mb(pid="self") -> float:
    """A process's resident set now (MiB)."""
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def reset_peak() -> bool:
    """Reset this process's RSS high-water mark, so peak_mb() measures from here; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def trim() -> None:
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back so the next phase's peak starts low
    except OSError:
        pass
