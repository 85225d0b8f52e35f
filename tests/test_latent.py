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
    only = cli("eval", "--agents", agents, "--links", str(system["links_file"]), "--data", str(data), "--family",
               "facts", "--family", "comparison", "--modes", "single", "--max-tokens", "6", "--json")
    assert only.returncode == 0, only.stderr
    picked = json.loads(only.stdout)
    assert [r["question"] for r in picked["rows"]] == [rows[1]["question"], rows[2]["question"]]
    assert [r["outputs"]["single"]["output"] for r in picked["rows"]] == \
        [r["outputs"]["single"]["output"] for r in res["rows"][1:]]
    none = cli("eval", "--agents", agents, "--links", str(system["links_file"]), "--data", str(data), "--family",
               "dates")
    assert none.returncode == 1 and none.stderr.count("\n") == 1 and "arithmetic, comparison, facts" in none.stderr
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


def test_within_family_partners_stay_in_the_family():
    """`shuffled` pairs each row with the next row of its own family; `shuffled-cross` with the row half the data
    away; a family of one row (no other question of its kind) takes the cross-family partner."""
    from builder.run.evaluate import partners

    rows = [{"question": f"q{i}", "kind": k} for i, k in enumerate("aabbbc")]
    assert partners(rows) == [1, 0, 3, 4, 2, 2]
    assert partners(rows, within_family=False) == [3, 4, 5, 0, 1, 2]
    pairs = enumerate(zip(rows, partners(rows), strict=True))
    assert all(rows[j]["kind"] == r["kind"] and j != i for i, (r, j) in pairs if r["kind"] != "c")


@pytest.mark.slow
def test_zero_and_prompt_tuned_modes_match_pytorch(system, cli, tmp_path):
    """`eval --modes zero` gives the final agent zeros where the hand-off goes; `prompt-tuned` gives it the trained
    slot vectors of `train-prompt`'s file (trained here for 2 steps). Each answer equals PyTorch's greedy answer
    from the same prompt embeddings, and a prompt file for another role is refused in one line."""
    import json

    from train_links import prompt_tuning

    agents, pattern = system["agents"], system["pattern"]
    solver = agents["solver"]
    rows = [{"question": QUESTION, "answer": "12", "kind": "x"}, {"question": "What is 7 plus 8?", "answer": "15",
                                                                  "kind": "x"}]
    res = prompt_tuning.train(solver, prompt_tuning.slot_rows(pattern, 4), [{**r, "target": r["answer"]}
                                                                           for r in rows], rows[:1], steps=2,
                              batch=2, lr=1e-2, seed=0, select_every=1, max_new=4, echo=lambda s: None)
    assert [s for s, _ in res["validation"]] == [0, 1, 2] and res["slots"]["refined_plan"].shape == (4, solver.d)
    pfile = prompt_tuning.save(tmp_path / "prompt.json", solver, res["slots"], {"command": "test"})
    sp = prompt_tuning.load(pfile, solver.d)
    np.testing.assert_array_equal(sp.slots["refined_plan"], res["slots"]["refined_plan"].numpy())
    with torch.no_grad():
        want_prompt = generate(solver, solver.prompt_embeds({"question": QUESTION}, {
            "refined_plan": torch.from_numpy(sp.slots["refined_plan"])}), 4)
        want_zero = generate(solver, solver.prompt_embeds({"question": QUESTION}, {
            "refined_plan": torch.zeros(4, solver.d)}), 4)
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    agents_arg = ",".join(str(d) for d in system["dirs"])
    p = cli("eval", "--agents", agents_arg, "--links", str(system["links_file"]), "--data", str(data), "--modes",
            "single,prompt-tuned,latent,zero,shuffled", "--prompt", str(pfile), "--rounds", "1", "--max-tokens", "4",
            "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["rows"][0]["outputs"]["prompt-tuned"]["output"] == want_prompt.strip()
    assert out["rows"][0]["outputs"]["zero"]["output"] == want_zero.strip()
    assert out["modes"]["prompt-tuned"]["latent_steps"] == 0 and out["modes"]["zero"]["latent_steps"] > 0
    assert set(out["paired"]) == {"reference", "single", "prompt-tuned", "zero", "shuffled"}
    assert out["paired"]["reference"] == "latent" and 0 <= out["paired"]["zero"]["p"] <= 1
    lo, hi = out["modes"]["latent"]["ci95"]
    assert 0 <= lo <= out["modes"]["latent"]["accuracy"] <= hi <= 1
    doc = json.loads(pfile.read_text())
    doc["agent"]["role"]["user"] = "Question: {question}\nAnswer:"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    bad = cli("eval", "--agents", agents_arg, "--links", str(system["links_file"]), "--data", str(data), "--modes",
              "prompt-tuned", "--prompt", str(other))
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "another role" in bad.stderr, bad.stderr
    bad = cli("eval", "--agents", agents_arg, "--links", str(system["links_file"]), "--modes", "prompt-tuned")
    assert bad.returncode == 1 and "--prompt FILE" in bad.stderr


@pytest.mark.slow
def test_batched_eval_gives_every_row_the_same_outputs(system):
    """`eval --batch 3` over 5 rows (a chunk of 3, then 2) in every mode the eval runs through the MAS, r = 2 (the
    feedback edge and the KV prefix reuse run too): each row's output and token counts equal the one-row-at-a-time
    run's; the batched decode steps are bit-identical (builder/run/batch.py), so greedy text cannot differ."""
    from builder.run.evaluate import evaluate

    rows = [{"question": q, "answer": a, "kind": k} for q, a, k in [
        (QUESTION, "12", "arithmetic"), ("What is the capital of France?", "Paris", "facts"),
        ("Which number is larger, 3 or 9?", "9", "comparison"), ("What is 2 + 2?", "4", "arithmetic"),
        ("What is the capital of Italy?", "Rome", "facts")]]
    modes = ["single", "text", "latent", "shuffled", "zero"]
    mas = LatentMAS(system["dirs"], system["links_file"])
    one = evaluate(mas, rows, modes, max_new_tokens=6, text_tokens=4)
    many = evaluate(mas, rows, modes, max_new_tokens=6, text_tokens=4, batch=3)
    for a, b in zip(one["rows"], many["rows"], strict=True):
        assert a["outputs"] == b["outputs"], a["question"]
    for mode in modes:
        for k in ("correct", "prompt_tokens", "reused_tokens", "generated_tokens", "latent_steps"):
            assert one["modes"][mode][k] == many["modes"][mode][k], (mode, k)
    assert many["modes"]["latent"]["reused_tokens"] > 0 and many["modes"]["text"]["generated_tokens"] > 0
