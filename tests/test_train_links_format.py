"""recursivelink.json round trips and malformed files, the data rows, and the train-links CLI (tiny models)."""

import math

import pytest
import torch

from builder.fetch import model_source
from mlcbuild_common.errors import MlcbuildError
from train_links import format as fmt
from train_links.agents import make_agents
from train_links.data import builtin
from train_links.patterns import sequential
from train_links.system import LinkSet

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def seq_agents():
    p = sequential()
    return p, {a.name: a for a in make_agents(["tiny-qwen3"] * 3, p, resolve=model_source)}


@pytest.fixture(scope="module")
def rows():
    return builtin()


# 7. recursivelink.json -----------------------------------------------------------------------------------------------

def _saved(seq_agents, tmp_path, dtype="f32"):
    p, agents = seq_agents
    links = LinkSet(agents, p, seed=0)
    with torch.no_grad():
        for prm in links.parameters():
            prm.add_(torch.randn_like(prm) * 0.01)  # not just the init values
    return links, fmt.save(tmp_path / "rl.json", agents, p, links, 4, 3, dtype)


def test_round_trip_f32_bit_exact_and_size(seq_agents, tmp_path):
    links, path = _saved(seq_agents, tmp_path)
    lf = fmt.load(path, {"planner": 64, "critic": 64, "solver": 64})
    raw = 0
    for kind, key, mod in links.named_links():
        got = lf.tensors[f"inner:{key}" if kind == "inner" else key]
        for k, v in mod.state_dict().items():
            assert torch.equal(got[k], v), k
            raw += v.numel() * 4
    size = path.stat().st_size
    print(f"raw tensor bytes {raw}, file {size} ({size / raw:.3f}x)")
    assert raw * 4 / 3 <= size < raw * 4 / 3 * 1.03 + 8192


def test_round_trip_f16_within_precision(seq_agents, tmp_path):
    links, path = _saved(seq_agents, tmp_path, "f16")
    lf = fmt.load(path)
    for kind, key, mod in links.named_links():
        got = lf.tensors[f"inner:{key}" if kind == "inner" else key]
        for k, v in mod.state_dict().items():
            assert torch.allclose(got[k], v, rtol=1e-3, atol=1e-6), k
            assert torch.equal(got[k], v.half().float()), k


# 7. malformed recursivelink.json files --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_file(seq_agents, tmp_path_factory):
    p, agents = seq_agents
    links = LinkSet(agents, p, seed=0)
    return fmt.save(tmp_path_factory.mktemp("rl") / "good.json", agents, p, links, 4, 3)


def _tensor(doc, link=0, name="w1.weight"):
    return doc["links"][link]["tensors"][name]


def _flip_char(s, i=10):
    return s[:i] + ("B" if s[i] != "B" else "C") + s[i + 1:]


def _nan_tensor(doc):
    import base64
    import hashlib

    import numpy as np

    t = _tensor(doc, 0, "w2.bias")
    a = np.zeros(t["shape"], "<f4")
    a[0] = np.nan
    raw = a.tobytes()
    t.update(data=base64.b64encode(raw).decode(), sha256=hashlib.sha256(raw).hexdigest())


MALFORMED = {
    "wrong version": (lambda d: d.update(version=2), "version 2 is not supported"),
    "not recursivelink": (lambda d: d.pop("format"), "not a recursivelink file"),
    "bad base64": (lambda d: _tensor(d).update(data="!" + _tensor(d)["data"][1:]), "bad base64"),
    "base64 length": (lambda d: _tensor(d).update(data=_tensor(d)["data"][:-4]), "base64 length"),
    "tensor shape": (lambda d: _tensor(d).update(shape=[65, 64]), "does not match the agents' dims"),
    "link dims": (lambda d: d["links"][3].update(src_dim=65), "do not match the agents' hidden sizes"),
    "checksum": (lambda d: _tensor(d).update(data=_flip_char(_tensor(d)["data"])), "sha256 mismatch"),
    "huge hidden size": (lambda d: d["agents"][0].update(hidden_size=1 << 40), "hidden_size must be"),
    "huge width": (lambda d: d["links"][0].update(width=1 << 40), "width must be"),
    "huge shape": (lambda d: _tensor(d).update(shape=[1 << 40, 1 << 40]), "does not match the agents' dims"),
    "missing agent": (lambda d: d["links"][4].update(src="ghost"), "not in the file's agents"),
    "agent dropped": (lambda d: d["agents"].pop(1), "differ from the agents"),
    "missing link": (lambda d: d["links"].pop(2), "missing link"),
    "nan": (_nan_tensor, "NaN"),
    "unknown kind": (lambda d: d["links"][0].update(kind="sideways"), "unknown link kind"),
    "wrong dtype": (lambda d: d["links"][0].update(dtype="f64"), "dtype 'f64' is not supported"),
    "negative m": (lambda d: d.update(latent_steps=-1), "latent_steps must be"),
    "missing tensor": (lambda d: d["links"][0]["tensors"].pop("w1.bias"), "differ from the expected"),
    "bad pattern": (lambda d: d["pattern"]["edges"].append({"src": "solver", "dst": "critic", "slot": "plan"}),
                    "goes backwards"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_link_files_fail_clearly(good_file, tmp_path, case):
    import json
    import time

    doc = json.loads(good_file.read_text())
    mutate, want = MALFORMED[case]
    mutate(doc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    t = time.perf_counter()
    with pytest.raises(MlcbuildError) as e:
        fmt.load(bad)
    msg = e.value.format_message()
    assert want in msg and "\n" not in msg and str(bad) in msg, msg
    assert time.perf_counter() - t < 5


def test_truncated_garbage_and_oversized_files(good_file, tmp_path):
    cases = {"truncated": good_file.read_bytes()[:5000], "garbage": bytes(range(256)) * 4, "empty": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(MlcbuildError, match="not valid JSON"):
            fmt.load(tmp_path / name)
    with pytest.raises(MlcbuildError, match="larger than"):
        fmt.load(good_file, max_bytes=1000)
    with pytest.raises(MlcbuildError, match="no such file"):
        fmt.load(tmp_path / "absent.json")
    with pytest.raises(MlcbuildError, match="hidden size 64 here but 96"):
        fmt.load(good_file, agent_dims={"planner": 64, "critic": 96, "solver": 64})
    # the size cap follows the links: a file padded far beyond its tensors is refused before any is decoded
    import json

    doc = json.loads(good_file.read_text())
    tensor_b64 = sum(len(t["data"]) for link in doc["links"] for t in link["tensors"].values())
    doc["training"]["padding"] = "x" * (3 * tensor_b64 + (1 << 20))
    (tmp_path / "padded.json").write_text(json.dumps(doc))
    with pytest.raises(MlcbuildError, match="its links' tensors need"):
        fmt.load(tmp_path / "padded.json")
    doc["training"]["padding"] = "x" * (tensor_b64 // 2)  # well within the cap: still loads
    (tmp_path / "fine.json").write_text(json.dumps(doc))
    assert fmt.load(tmp_path / "fine.json").tensors.keys() == fmt.load(good_file).tensors.keys()


# 6. data -------------------------------------------------------------------------------------------------------------

def test_builtin_task_set(rows):
    """Thousands of worked, checkable rows over nine families; a fixed held-out split of >= 300 rows covering every
    family, whose questions never appear in training."""
    import re
    from collections import Counter

    from train_links.data import exact_match, is_numeric

    train, held = rows
    assert len(train) >= 2000 and len(held) >= 300
    assert builtin() == rows  # seeded: the same set every time
    kinds = Counter(r["kind"] for r in train), Counter(r["kind"] for r in held)
    assert set(kinds[0]) == set(kinds[1]) and len(kinds[1]) >= 6, kinds
    assert not {r["question"] for r in train} & {r["question"] for r in held}
    assert len({r["question"] for r in train + held}) == len(train) + len(held)
    for r in train + held:
        assert set(r) == {"question", "plan", "refined_plan", "answer", "kind"}
        assert r["refined_plan"].startswith(r["plan"])  # the refined plan works the plan out ...
        assert exact_match(r["refined_plan"], r["answer"]), r  # ... and ends with the answer
        work = r["refined_plan"][len(r["plan"]):]
        for expr, value in re.findall(r"(\d+(?: [-+*/] \d+)+) = (\d+)", work):  # every step's arithmetic is right
            assert eval(expr) == float(value), r
        if is_numeric(r["answer"]):
            assert re.fullmatch(r"-?\d+", r["answer"]), r


def test_exact_match_rules():
    from train_links.data import exact_match, well_formed

    assert exact_match("The answer is 12.", "12") and not exact_match("13", "12") and exact_match(" 7<", "7.0")
    assert exact_match("3 + 4 = 7", "7") and not exact_match("", "7") and exact_match(" Yes ", "yes")
    assert exact_match("The capital of France is Paris.", "Paris") and not exact_match("Parisian food", "Paris")
    assert exact_match("It was BOGOTA", "Bogotá") and exact_match("it is new york.", "New York")
    assert not exact_match("York", "New York") and not exact_match("", "cold")
    assert well_formed("about 12", "7") and not well_formed("twelve", "7") and well_formed("Paris", "Rome")


def test_only_the_final_answer_scores():
    """Listing candidates or echoing the question scores nothing: only the text after the last "answer is" /
    "Answer:" (else the last sentence) counts, and a word answer must come without a rival of its family."""
    from train_links.data import exact_match, final_answer, rivals_by_kind

    rows = [{"question": "q", "answer": d, "kind": "dates"} for d in ("Monday", "Tuesday", "Friday")]
    rows += [{"question": "q", "answer": "Ana", "kind": "table"}, {"question": "q", "answer": "Ben", "kind": "table"},
             {"question": "q", "answer": "12", "kind": "table"}]
    rivals = rivals_by_kind(rows)
    assert rivals == {"dates": {"Monday", "Tuesday", "Friday"}, "table": {"Ana", "Ben"}}
    days = rivals["dates"]
    assert not exact_match("Monday, Tuesday, Friday", "Tuesday", days)
    assert exact_match("Monday -> Tuesday. The answer is Tuesday.", "Tuesday", days)
    assert not exact_match("The answer is Monday, not Tuesday", "Tuesday", days)
    assert not exact_match("Ana 4, Ben 9. Who has the most points?", "Ben", rivals["table"])
    assert exact_match("9 is the most, so the answer is Ben.", "Ben", rivals["table"])
    assert not exact_match("7 + 5 = 12. The answer is 13", "12")  # the number after the last cue counts
    assert exact_match("4 + 8 = 12. The answer is 12.", "12") and final_answer("x. Answer: 3") == "3"
    assert final_answer("One. Two. Three") == "Three" and final_answer("") == ""


@pytest.mark.parametrize("line,want", [
    ('{"question": "q", "answer": "1"', "not valid JSON"),
    ('["q", "1"]', "must be a JSON object"),
    ('{"question": "q"}', "missing 'answer'"),
    ('{"question": "q", "answer": "1", "plan": 3}', "'plan' must be a string"),
    ('{"question": " ", "answer": "1"}', "empty question"),
])
def test_bad_data_rows_name_file_and_line(tmp_path, line, want):
    from train_links.data import load_jsonl

    f = tmp_path / "d.jsonl"
    f.write_text('{"question": "a", "answer": 2}\n\n' + line + "\n")
    with pytest.raises(MlcbuildError, match=want) as e:
        load_jsonl(f)
    assert f"{f}:3:" in e.value.format_message()
    f.write_text('{"question": "a", "answer": 2}\n')
    assert load_jsonl(f) == [{"question": "a", "answer": "2"}]


# 8. CLI --------------------------------------------------------------------------------------------------------------

def test_cli_trains_writes_and_evaluates(tmp_path):
    import json

    from click.testing import CliRunner

    from builder.fetch import fetch
    from builder.train_cmd import train_links_cmd
    from mlcbuild_common.fsutil import source_digest

    assert train_links_cmd.name == "train-links"
    out = tmp_path / "recursivelink.json"
    args = ["--agents", "tiny-qwen3,tiny-qwen3,tiny-qwen3", "--rounds", "2", "--latent-steps", "2",
            "--inner-steps", "10", "--outer-steps", "12", "--rollout-steps", "4", "--batch", "4", "--lr", "2e-3",
            "--pair-rows", "40", "--out", str(out)]
    r = CliRunner().invoke(train_links_cmd, [*args, "--eval", "--eval-rows", "8", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    ev = summary["eval"]
    assert set(ev) == {"single agent", "text MAS", "latent MAS, closed-form init", "latent MAS, trained links"}
    assert all(v["rows"] == 8 and (v["accuracy"] * 8).is_integer() for v in ev.values())
    # 16 outer steps on random tiny agents: the held-out answer CE (through rollouts) must drop below the start's
    init, trained = ev["latent MAS, closed-form init"]["answer_ce"], ev["latent MAS, trained links"]["answer_ce"]
    print(f"tiny agents, held-out answer CE: closed-form init {init:.4f} -> trained {trained:.4f}")
    assert math.isfinite(init) and trained < init - 0.05
    lf = fmt.load(out)
    assert lf.meta["latent_steps"] == 2 and lf.meta["training"]["outer_steps"] == 12
    assert lf.meta["training"]["rollout_steps"] == 4 and lf.meta["training"]["init"] == "ridge"
    assert {a["weights_sha256"] for a in lf.meta["agents"]} == {source_digest(fetch("tiny-qwen3").path)}
    r = CliRunner().invoke(train_links_cmd, [*args, "--resume", "--quiet"])
    assert r.exit_code == 0 and "resumed from" in r.output, r.output
    again = fmt.load(out).tensors  # nothing left to train: the same links
    assert all(torch.equal(again[k][n], lf.tensors[k][n]) for k in again for n in again[k])


def test_cli_bad_input_is_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    bad = tmp_path / "d.jsonl"
    bad.write_text('{"question": "q", "answer": "1"}\n{"question": 1, "answer": "2"}\n')
    r = subprocess.run([sys.executable, "-m", "builder.cli", "train-links", "--agents", "tiny-qwen3",
                        "--data", str(bad)], capture_output=True, text=True, cwd=repo, timeout=120)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"mlcbuild: error: {bad}:2: 'question' must be a string")


def test_worked_targets_end_on_the_answer(rows):
    """--answer-target worked: every built-in training row's worked text is the refined plan's computation and is
    scored right by the same rule as the answers (the last number, or the whole words)."""
    from train_links.data import exact_match, with_targets

    train = with_targets(rows[0], "worked")
    for r in train:
        assert r["target"] != r["answer"] and r["refined_plan"].endswith(r["target"].split(" The answer is ")[0])
        assert exact_match(r["target"], r["answer"]), r
    assert with_targets(rows[0], "answer") == rows[0]
    assert with_targets([{"question": "q", "answer": "7"}], "worked")[0]["target"] == "7"  # no plan: the answer


def test_cli_init_from_keeps_inner_links_and_trains_the_outer(tmp_path):
    from click.testing import CliRunner

    from builder.train_cmd import train_links_cmd

    base = ["--agents", "tiny-qwen3,tiny-qwen3,tiny-qwen3", "--rounds", "1", "--latent-steps", "2", "--batch", "2",
            "--quiet"]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    r = CliRunner().invoke(train_links_cmd, [*base, "--inner-steps", "5", "--outer-steps", "2", "--pair-rows", "16",
                                             "--out", str(a)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(train_links_cmd, [*base, "--outer-steps", "0", "--rollout-steps", "3", "--lr", "1e-2",
                                             "--answer-target", "worked", "--init-from", str(a), "--out", str(b)])
    assert r.exit_code == 0 and f"started from {a}" in r.output, r.output
    la, lb = fmt.load(a), fmt.load(b)
    assert lb.meta["training"]["answer_target"] == "worked" and lb.meta["training"]["init_from"] == str(a)
    assert lb.meta["training"]["init_from_commands"] == [la.meta["training"]["command"]]  # how to remake a first
    for name in la.tensors:
        same = all(torch.equal(la.tensors[name][k], lb.tensors[name][k]) for k in la.tensors[name])
        unused = name.startswith("inner:") or name == "solver->planner:feedback"  # feedback needs a 2nd round
        assert same == unused, name  # inner links kept, every outer link the run uses trained
    r = CliRunner().invoke(train_links_cmd, [*base, "--outer-steps", "1", "--inner-width", "32", "--init-from",
                                             str(a), "--out", str(tmp_path / "c.json")])
    assert r.exit_code == 1 and "its link widths differ" in r.output and "--inner-width" in r.output, r.output


def test_train_prompt_on_varied_wordings_leaving_a_family_out(tmp_path):
    """`train-prompt` (the prompt-tuned baseline) on the varied set without one family: it trains the final
    agent's slot vectors on the same rows as train-links, validates on the held-out wordings (never the left-out
    family), writes a slotprompt file that loads back, and --init-from chains like links."""
    import json

    from click.testing import CliRunner

    from builder.train_cmd import train_prompt_cmd
    from train_links import prompt_tuning
    from train_links.config import Config
    from train_links.pipeline import load_rows

    cfg = Config(agents=["x"] * 3, data="varied", exclude_family=("dates",), val_rows=6, answer_target="worked")
    train, val, held = load_rows(cfg)
    assert train and len(val) == 6 and all(r["kind"] != "dates" for r in train + val)
    assert {r["kind"] for r in held} >= {"dates", "facts"} and all("target" in r for r in train)
    train_templates, val_templates = {r["template"] for r in train}, {r["template"] for r in val}
    assert not train_templates & val_templates  # validation wordings are never trained on

    out = tmp_path / "prompt.json"
    args = ["--agents", "tiny-qwen3,tiny-qwen3,tiny-qwen3", "--data", "varied", "--exclude-family", "dates",
            "--latent-steps", "2", "--outer-steps", "6", "--rollout-steps", "2", "--batch", "4", "--val-rows", "6",
            "--select-every", "4", "--max-new-tokens", "4", "--answer-target", "worked", "--out", str(out)]
    r = CliRunner().invoke(train_prompt_cmd, [*args, "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert [s for s, _ in summary["validation"]] == [0, 4, 8] and summary["exclude_family"] == ["dates"]
    sp = prompt_tuning.load(out)
    assert sp.slots["refined_plan"].shape[0] == 2 and sp.meta["training"]["steps"] == 8
    assert "--exclude-family dates" in sp.meta["training"]["command"]
    more = tmp_path / "more.json"
    r = CliRunner().invoke(train_prompt_cmd, [*args[:-2], "--out", str(more), "--init-from", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    chained = prompt_tuning.load(more).meta["training"]
    assert chained["init_from"] == str(out) and chained["init_from_commands"] == [sp.meta["training"]["command"]]
    out.write_text(out.read_text()[:-200])
    r = CliRunner().invoke(train_prompt_cmd, [*args[:-2], "--out", str(more), "--init-from", str(out)])
    assert r.exit_code != 0 and "not valid JSON" in r.output
