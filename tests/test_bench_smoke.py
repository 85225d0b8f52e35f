"""Smoke run of bench/train_links.py --quick (tiny model only): it must print its table, find the KV-cache and the
naive outer step to be the same computation, and end with its JSON line. About 10 s on 1 thread."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_train_links_bench_quick():
    r = subprocess.run([sys.executable, str(REPO / "bench" / "train_links.py"), "--quick", "--threads", "1"],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert any(ln.startswith("config ") and "outer kv" in ln and "naive/kv" in ln for ln in lines), r.stdout
    assert any(ln.startswith("tiny ") for ln in lines), r.stdout
    assert "same computation" in r.stdout, r.stdout
    res = json.loads(lines[-1])
    (tiny,) = res["results"]
    assert tiny["phases"]["kv"]["step_s"] > 0 and tiny["phases"]["naive"]["step_s"] > 0
    assert tiny["check"]["grad_rel_diff"] < 1e-2
