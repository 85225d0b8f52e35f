"""The latent loop on compiled CPU libraries vs the same algorithm in PyTorch (train_links)."""

import numpy as np
import pytest
import torch
from mas_system import AGENTS, QUESTION, tiny_links

from builder.latent import LatentMAS
from builder.make import make
from train_links import format as fmt
from train_links.rollout import generate
from train_links.system import run_latent


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("latent")
    agents, links, pattern = tiny_links(m=4, rounds=2)
    rl = fmt.save(tmp / "recursivelink.json", agents, pattern, links, m=4, rounds=2)
    dirs = {a: make(a, "q0f32", tmp, targets=("cpu",), show_progress=False).out for a in set(AGENTS)}
    return {"agents": agents, "links": links, "pattern": pattern, "links_file": rl,
            "dirs": [dirs[a] for a in AGENTS]}


def cosine_rows(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.mark.slow
def test_cpu_latent_loop_matches_pytorch(system):
    mas = LatentMAS(system["dirs"], system["links_file"])
    out = mas.run(QUESTION, "latent", max_new_tokens=8)
    trace = []
    with torch.no_grad():
        emb = run_latent(system["agents"], system["links"], system["pattern"], QUESTION, 2, 4, trace=trace)
        want = generate(system["agents"]["solver"], emb, 8)
    assert [(h["edge"], h["round"]) for h in out["handoffs"]] == [(t["edge"], t["round"]) for t in trace]
    for got, ref in zip(out["handoffs"], trace, strict=True):
        assert cosine_rows(got["block"], ref["block"].numpy()).min() >= 0.9999, got["edge"]
    assert out["answer"] == want
    m = out["metrics"]
    assert m["latent_steps"] == 4 * (3 * 2 - 1) and m["generated_tokens"] <= 8 and m["prompt_tokens"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["latent", "text"])
def test_kv_prefix_reuse_across_rounds_changes_nothing_but_the_work(system, mode):
    """Keeping each agent's prompt prefix in its KV cache between rounds gives the same hand-offs and answer as
    prefilling every prompt from scratch, with fewer positions prefilled."""
    mas = LatentMAS(system["dirs"], system["links_file"])
    kw = {"max_new_tokens": 8, "text_tokens": 4}
    warm = mas.run(QUESTION, mode, **kw)
    cold = LatentMAS(system["dirs"], system["links_file"], reuse_kv=False).run(QUESTION, mode, **kw)
    for a, b in zip(warm["handoffs"], cold["handoffs"], strict=True):
        assert cosine_rows(a["block"], b["block"]).min() >= 0.9999, a["edge"]
    assert warm["answer"] == cold["answer"]
    w, c = warm["metrics"], cold["metrics"]
    assert c["reused_tokens"] == 0 and w["reused_tokens"] > 0
    assert w["prompt_tokens"] + w["reused_tokens"] == c["prompt_tokens"]
    again = mas.run(QUESTION, mode, **kw)  # a new run starts cold: the same work as the first
    assert again["metrics"]["prompt_tokens"] == w["prompt_tokens"] and again["answer"] == warm["answer"]


@pytest.mark.slow
def test_text_baseline_runs_the_same_graph(system):
    mas = LatentMAS(system["dirs"], system["links_file"])
    out = mas.run(QUESTION, "text", max_new_tokens=8, text_tokens=4)
    m = out["metrics"]
    assert out["handoffs"] == [] and m["latent_steps"] == 0
    assert m["generated_tokens"] <= 4 * 5 + 8
    stages = {(s["agent"], s["round"], s["stage"]) for s in m["stages"]}
    assert ("planner", 0, "decode") in stages and ("solver", 1, "decode") in stages


def test_links_for_other_models_are_refused(system, tmp_path):
    from builder.errors import MlcbuildError

    with pytest.raises(MlcbuildError, match="pass one build folder per agent"):
        LatentMAS(system["dirs"][:2], system["links_file"])


@pytest.mark.slow
def test_run_command_reports_latent_and_text(system, cli):
    import json

    agents = ",".join(str(d) for d in system["dirs"])
    p = cli("run", "--agents", agents, "--links", str(system["links_file"]), "-q", QUESTION, "--max-tokens", "4",
            "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert set(res) == {"latent", "text"}
    for r in res.values():
        m = r["metrics"]
        assert m["e2e_latency_s"] > 0 and m["prompt_tokens"] > 0 and "prefill_tokens_per_s" in m
    assert res["latent"]["metrics"]["generated_tokens"] < res["text"]["metrics"]["generated_tokens"]
    bad = cli("run", "--agents", agents, "--links", str(system["dirs"][0] / "manifest.json"), "-q", QUESTION)
    assert bad.returncode != 0 and bad.stderr.startswith("mlcbuild: error:") and "Traceback" not in bad.stderr
