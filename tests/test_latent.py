"""The latent loop on compiled CPU libraries vs the same algorithm in PyTorch (train_links)."""

import numpy as np
import pytest
import torch
from mas_system import AGENTS, QUESTION, tiny_links

from builder.make import make
from builder.run.latent import LatentMAS
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
    from mlcbuild_common.errors import MlcbuildError

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


@pytest.mark.slow
def test_single_mode_is_the_final_agent_alone(system, cli):
    """"single" decodes the final agent's prompt with its slots empty, equal to PyTorch; `run --mode all` prints the
    three answers side by side."""
    mas = LatentMAS(system["dirs"], system["links_file"])
    out = mas.run(QUESTION, "single", max_new_tokens=8)
    solver = system["agents"]["solver"]
    with torch.no_grad():
        want = generate(solver, solver.prompt_embeds({"question": QUESTION}, {}), 8)
    assert out["answer"] == want and out["metrics"]["latent_steps"] == 0 and out["handoffs"] == []
    agents = ",".join(str(d) for d in system["dirs"])
    p = cli("run", "--agents", agents, "--links", str(system["links_file"]), "-q", QUESTION, "--max-tokens", "4",
            "--text-tokens", "4", "--mode", "all")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert [x.split("]")[0] for x in lines[:3]] == ["[single agent", "[text MAS", "[latent MAS"]
    assert "latent vs text:" in p.stdout


@pytest.mark.slow
def test_eval_command_scores_every_mode_and_family(system, cli, tmp_path):
    """`mlcbuild eval` on the compiled libs: per-mode and per-family exact match computed from the outputs it
    reports, the same answers as `run`, and bad rows named by file and line."""
    import json

    from train_links.data import exact_match

    rows = [{"question": QUESTION, "answer": "12", "kind": "arithmetic"},
            {"question": "What is the capital of France?", "answer": "Paris", "kind": "facts"},
            {"question": "Which number is larger, 3 or 9?", "answer": "9", "kind": "comparison"}]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    agents = ",".join(str(d) for d in system["dirs"])
    p = cli("eval", "--agents", agents, "--links", str(system["links_file"]), "--data", str(data), "--max-tokens",
            "6", "--text-tokens", "4", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert set(res["modes"]) == {"single", "text", "latent"} and len(res["rows"]) == 3
    mas = LatentMAS(system["dirs"], system["links_file"])
    for mode, summary in res["modes"].items():
        outs = [r["outputs"][mode]["output"] for r in res["rows"]]
        hits = [exact_match(o, r["answer"]) for o, r in zip(outs, rows, strict=True)]
        assert summary["correct"] == sum(hits) and summary["accuracy"] == sum(hits) / 3
        assert {k: v["correct"] for k, v in summary["by_kind"].items()} == \
            {r["kind"]: int(h) for r, h in zip(rows, hits, strict=True)}
        assert summary["generated_tokens"] > 0 and summary["prompt_tokens"] > 0
        assert (summary["latent_steps"] > 0) == (mode == "latent")
        assert outs[0] == mas.run(QUESTION, mode, max_new_tokens=6, text_tokens=4)["answer"].strip()
    table = cli("eval", "--agents", agents, "--links", str(system["links_file"]), "--data", str(data), "--limit",
                "1", "--modes", "single,latent", "--quiet")
    assert table.returncode == 0 and "exact match" in table.stdout and "latent MAS" in table.stdout
    data.write_text(json.dumps(rows[0]) + "\n" + '{"question": "q"}\n')
    bad = cli("eval", "--agents", agents, "--links", str(system["links_file"]), "--data", str(data))
    assert bad.returncode == 1 and bad.stderr.strip() == f"mlcbuild: error: {data}:2: missing 'answer' " \
        "(every row needs question and answer)"
    bad = cli("eval", "--agents", agents, "--links", str(system["links_file"]), "--modes", "latent,oracle")
    assert bad.returncode != 0 and "unknown mode" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_shuffled_control_gives_the_final_agent_another_rows_hand_offs(system, cli, tmp_path):
    """The control `eval --modes shuffled`: the senders work on another row's question, so the hand-offs are
    exactly those of that row's own run, while the final agent reads its own question."""
    import json

    other = "What is 7 plus 8?"
    mas = LatentMAS(system["dirs"], system["links_file"])
    mixed = mas.run(QUESTION, "latent", max_new_tokens=4, rounds=1, senders_question=other)
    own = mas.run(other, "latent", max_new_tokens=4, rounds=1)
    assert [h["edge"] for h in mixed["handoffs"]] == [h["edge"] for h in own["handoffs"]]
    for a, b in zip(mixed["handoffs"], own["handoffs"], strict=True):
        np.testing.assert_array_equal(a["block"], b["block"])
    straight = mas.run(QUESTION, "latent", max_new_tokens=4, rounds=1)
    assert not np.array_equal(straight["handoffs"][0]["block"], mixed["handoffs"][0]["block"])
    rows = [{"question": QUESTION, "answer": "12"}, {"question": other, "answer": "15"}]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    p = cli("eval", "--agents", ",".join(str(d) for d in system["dirs"]), "--links", str(system["links_file"]),
            "--data", str(data), "--modes", "latent,shuffled", "--rounds", "1", "--max-tokens", "4", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["modes"]["shuffled"]["latent_steps"] == res["modes"]["latent"]["latent_steps"] > 0
    # row 0's control is row 1's hand-offs with row 0's question
    assert res["rows"][0]["outputs"]["shuffled"]["output"] == mixed["answer"].strip()


@pytest.mark.slow
def test_links_trained_on_other_weights_are_refused(system, cli, tmp_path):
    """A links file whose agents record other weights than the builds' runs only with --force-links (and warns)."""
    import json

    doc = json.loads(system["links_file"].read_text())
    assert all(a["weights_sha256"] for a in doc["agents"])
    doc["agents"][1]["weights_sha256"] = "0" * 64
    doc["agents"][1]["model_id"] = "Qwen/Qwen3-0.6B"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    agents = ",".join(str(d) for d in system["dirs"])
    p = cli("run", "--agents", agents, "--links", str(other), "-q", QUESTION, "--mode", "latent", "--max-tokens", "2")
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert "agent critic was trained on Qwen/Qwen3-0.6B" in p.stderr and "--force-links" in p.stderr
    p = cli("run", "--agents", agents, "--links", str(other), "-q", QUESTION, "--mode", "latent", "--max-tokens", "2",
            "--force-links")
    assert p.returncode == 0 and "warning:" in p.stderr and "running anyway" in p.stderr


@pytest.mark.slow
def test_ask_and_the_context_limit(system, cli):
    """`mlcbuild ask` answers from a build's CPU library (JSON with token counts); a prompt longer than the KV cache
    is refused up front in one line that gives its real length, the cache size and the option that raises it."""
    import json

    from builder.run.engine import Engine

    build = str(system["dirs"][0])
    p = cli("ask", build, QUESTION, "--max-tokens", "5", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    eng = Engine(system["dirs"][0])
    ids = eng.chat_ids([{"role": "user", "content": QUESTION}])
    assert res["prompt_tokens"] == len(ids) and 0 < res["generated_tokens"] <= 5
    assert res["answer"] == eng.tokenizer().decode(eng.generate(ids, 5), skip_special_tokens=True).strip()
    long_q = " ".join(["apples"] * 300)
    n = len(eng.chat_ids([{"role": "user", "content": long_q}]))
    p = cli("ask", build, long_q, "--max-seq-len", "64")
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert f"{n} positions do not fit the 64-position KV cache" in p.stderr
    assert f"--max-seq-len up to {eng.meta['context_window_size']}" in p.stderr
