"""Smoke runs of the benchmarks. bench/train_links.py --quick (tiny model only) must print its table, find
the KV-cache and the naive outer step to be the same computation, and end with its JSON line (about 10 s on
1 thread); bench/cpu_decode.py --quick times tiny-llama libs against transformers (about 25 s)."""

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


@pytest.mark.slow
def test_cpu_decode_bench_quick():
    """bench/cpu_decode.py --quick: tiny-llama CPU libs against transformers, table plus one JSON line."""
    r = subprocess.run([sys.executable, str(REPO / "bench" / "cpu_decode.py"), "--quick"],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["model", "lib", "threads"], r.stdout
    (res,) = json.loads(lines[-1])["results"]
    assert res["model"] == "tiny-llama" and set(res["times"]) == {"q0f32", "q4f32_1", "torch"}
    for q in ("q0f32", "q4f32_1"):
        assert res["times"][q]["decode_s"] > 0 and res["times"][q]["prefill_s"] > 0
        assert res["ratios"][q]["decode"] > 0


@pytest.mark.slow
def test_outer_step_bench_quick():
    """bench/outer_step.py --quick: the three outer steps on tiny agents; the batched rollout and the row-by-row
    rollout are the same computation (same loss), and the table plus the JSON line come out."""
    r = subprocess.run([sys.executable, str(REPO / "bench" / "outer_step.py"), "--quick", "--threads", "1"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert lines[1].split()[0] == "mode" and [ln.split()[0] for ln in lines[2:5]] == ["teacher", "batched", "rollout"]
    res = json.loads(lines[-1])
    assert res["loss"]["batched"] == pytest.approx(res["loss"]["rollout"], rel=1e-4)
    assert all(v > 0 for v in res["step_s"].values())


def test_answers_table_joins_eval_runs(tmp_path):
    """bench/answers_table.py joins two `eval --json` outputs on the same rows into one table with intervals and
    paired counts against the reference column, and refuses runs over other rows."""

    def run(path, modes_correct, questions=("q1", "q2", "q3", "q4")):
        rows = [{"question": q, "kind": "a" if i < 2 else "b",
                 "outputs": {m: {"correct": ok[i]} for m, ok in modes_correct.items()}}
                for i, q in enumerate(questions)]
        path.write_text(json.dumps({"modes": {m: {} for m in modes_correct}, "rows": rows}))
        return path

    a = run(tmp_path / "a.json", {"single": [1, 0, 0, 0], "latent": [1, 1, 1, 0]})
    b = run(tmp_path / "b.json", {"latent": [0, 1, 1, 1]})
    r = subprocess.run([sys.executable, str(REPO / "bench" / "answers_table.py"), f"one={a}", f"two={b}"],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["reference"] == "one:latent" and res["columns"]["one:latent"]["correct"] == 3
    assert res["columns"]["one:single"]["paired"] == {"only_a": 2, "only_b": 0, "p": 0.5}
    assert res["columns"]["two:latent"]["by_kind"] == {"a": 1, "b": 2}
    c = run(tmp_path / "c.json", {"latent": [1, 1, 1, 1]}, questions=("q1", "q2", "q3", "x"))
    r = subprocess.run([sys.executable, str(REPO / "bench" / "answers_table.py"), f"one={a}", f"three={c}"],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode != 0 and "other rows" in r.stderr
