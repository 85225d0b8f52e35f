"""Smoke run of bench/latent_vs_text.py --quick (the tiny 3-agent set, Python side only): it must print its table
with the latent-vs-text rows and end with one JSON line of the same structure. About a minute."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_latent_vs_text_bench_quick(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "bench" / "latent_vs_text.py"), "--quick", "--root", str(tmp_path)],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("# ") and "loadavg" in lines[0] and "threads" in lines[0], lines[0]
    assert lines[1].split() == ["side", "measure", "values", "figure", "target", "verdict"], lines[1]
    res = json.loads(lines[-1])
    assert set(res) >= {"meta", "targets", "python", "table"} and "browser" not in res
    assert set(res["targets"]) == {"speedup", "token_reduction", "step_ratio", "load_ratio"}
    py = res["python"]
    assert py["rounds"] == 3 and len(py["prompts"]) == 2
    # two text baselines: messages up to 16 tokens (the quick run's stand-in for "until the turn ends"), and m = 4
    assert set(py["modes"]) == {"latent", "text@16", "text@4"} and set(py["compare"]) == {"text@16", "text@4"}
    for mode, runs in py["runs"].items():
        assert len(runs) == 2 and all(x["e2e_s"] > 0 and x["prompt_tokens"] > 0 for x in runs), mode
    lat, txt = py["modes"]["latent"], py["modes"]["text@4"]
    assert lat["latent_steps"] == 2 * 4 * (3 * 3 - 1) and txt["latent_steps"] == 0
    assert 0 < lat["generated_tokens"] <= 2 * 8 and lat["generated_tokens"] < txt["generated_tokens"]
    c = py["compare"]["text@4"]
    # the comparison's figures are the ratios of the measured runs (no timing threshold: figures, not tests)
    assert c["speedup"] == pytest.approx(txt["e2e_s_median"] / lat["e2e_s_median"])
    assert c["token_reduction"] == pytest.approx(1 - lat["generated_tokens"] / txt["generated_tokens"])
    steps = py["steps"]
    assert steps["ratio"] == pytest.approx(steps["median_ms"]["latent"] / steps["median_ms"]["decode"])
    # each run's end-to-end time is the median of its runs
    assert lat["e2e_s_median"] == pytest.approx(sorted(x["e2e_s"] for x in py["runs"]["latent"])[0] / 2
                                                 + sorted(x["e2e_s"] for x in py["runs"]["latent"])[1] / 2)
    rows = {row["measure"]: row for row in res["table"]}
    want = "MEETS" if c["token_reduction"] >= res["targets"]["token_reduction"] else "MISSES"
    assert rows["latent vs text@4: generated tokens"]["verdict"] == want
    assert rows["latent step / decode step (ms)"]["target"] == "<= 0.75"
    for row in res["table"]:  # every table row is printed
        assert any(row["measure"] in ln and row["figure"] in ln for ln in lines[2:-1]), row
