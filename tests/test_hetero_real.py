"""Real heterogeneous agents: Gemma 3 270M (hidden 640, its own 262k-token tokenizer, a base model's plain prompt
layout) as the distillation pattern's expert, SmolLM2-135M-Instruct (hidden 576, ChatML) as the learner, joined by
the links shipped for this pair (outer links 640 -> 576 and 576 -> 640). The CPU libraries answer a held-out question
through `mlcbuild run` in CI; the browser loop (WebGPU, SwiftShader) against the Python loop on the CPU libraries
runs nightly: the same hand-offs, cosine >= 0.999, the same answer."""

import json
import subprocess

import numpy as np
import pytest
from conftest import mlcbuild_script
from mas_system import run_latent_page

from builder import builds_index
from builder.make import SHIPPED_SETS, make, place_shipped_sets
from builder.run.latent import LatentMAS
from train_links import format as fmt
from train_links.data import builtin
from train_links.shipped import HERE

LINKS = HERE / "gemma3-270m+smollm2-135m-distillation.json"
PRESETS = ("gemma3-270m", "smollm2-135m")  # expert, learner
M, MAX_NEW = 4, 6


def _question() -> str:
    return builtin()[1][0]["question"]  # the first held-out row


@pytest.fixture(scope="module")
def pair(webgpu_dist):
    return [make(p, None, webgpu_dist, targets=("webgpu", "cpu"), show_progress=False).out for p in PRESETS]


def test_shipped_pair_links_map_between_the_two_models():
    lf = fmt.load(LINKS, {"expert": 640, "learner": 576})
    assert lf.pattern.name == "distillation" and lf.meta["rounds"] == 1
    shapes = {k: tuple(v["w_res.weight"].shape) for k, v in lf.tensors.items() if "w_res.weight" in v}
    assert shapes == {"expert->learner:guidance": (576, 640), "learner->expert:attempt": (640, 576)}, shapes
    assert "train-links" in lf.meta["training"]["command"]


@pytest.mark.slow
def test_cpu_libraries_answer_through_mlcbuild_run(webgpu_dist):
    # the builds tests/test_gemma3.py and the SmolLM2 browser suites made (reused, not rebuilt)
    dirs = [make("gemma3-270m", None, webgpu_dist, targets=("cpu",), show_progress=False).out,
            make("smollm2-135m", None, webgpu_dist, targets=("webgpu", "cpu"), show_progress=False).out]
    r = subprocess.run([mlcbuild_script(), "run", "--agents", ",".join(map(str, dirs)), "--links", str(LINKS),
                        "--question", _question(), "--mode", "all", "--max-tokens", str(MAX_NEW), "--text-tokens", "16",
                        "--json"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    lat = res["latent"]
    assert lat["metrics"]["latent_steps"] == M and lat["answer"].strip()  # the expert's m latent steps, one hand-off
    assert res["text"]["metrics"]["generated_tokens"] > lat["metrics"]["generated_tokens"]
    print(f"gemma3-270m -> smollm2-135m on {_question()!r}: latent {lat['answer']!r}, "
          f"single {res['single']['answer']!r}")
    # with both builds in one root, the pair's shipped links go to OUT/links/ and builds.json maps each role to
    # its build, which is what the playground's pickers read
    (placed,) = place_shipped_sets(webgpu_dist)
    assert placed == webgpu_dist / SHIPPED_SETS / LINKS.name and placed.read_bytes() == LINKS.read_bytes()
    doc = json.loads(builds_index.update(webgpu_dist).read_text())
    (entry,) = [x for x in doc["links"] if x["file"].startswith(SHIPPED_SETS + "/")]
    assert entry["pattern"] == "distillation"
    assert {a["name"]: a["builds"] for a in entry["agents"]} == {"expert": [dirs[0].name], "learner": [dirs[1].name]}


def _fake_build(root, name, sha, hidden):
    # a build folder as builds.json reads it: its manifest (the weights' hash and hidden size) and no files
    (root / name).mkdir()
    (root / name / "manifest.json").write_text(json.dumps({
        "name": name, "quantization": "q4f32_1", "model_type": "x", "hidden_size": hidden, "libs": {}, "files": {},
        "source": {"model_id": name, "sha256": sha}}))


def test_shipped_pair_links_are_placed_only_when_both_builds_are_there(tmp_path):
    doc = json.loads(LINKS.read_text())
    expert, learner = (next(a for a in doc["agents"] if a["name"] == r) for r in ("expert", "learner"))
    _fake_build(tmp_path, "smollm2-135m-q4f32_2", learner["weights_sha256"], 576)
    assert place_shipped_sets(tmp_path) == [] and not (tmp_path / SHIPPED_SETS).exists()
    _fake_build(tmp_path, "gemma3-270m-q4f32_1", expert["weights_sha256"], 640)
    (placed,) = place_shipped_sets(tmp_path)
    mtime = placed.stat().st_mtime_ns
    assert place_shipped_sets(tmp_path) == [placed] and placed.stat().st_mtime_ns == mtime  # same bytes: untouched
    assert [p.name for p in (tmp_path / SHIPPED_SETS).iterdir()] == [LINKS.name]  # no temp file left


@pytest.mark.browser
@pytest.mark.nightly  # Gemma 3's prefill and 262k-row embedding on SwiftShader: several minutes
def test_browser_pair_matches_python(pair, webgpu_dist, artifacts):
    links_name = LINKS.name
    (webgpu_dist / links_name).write_bytes(LINKS.read_bytes())
    q = _question()
    ref = LatentMAS(pair, LINKS).run(q, "latent", max_new_tokens=MAX_NEW, rounds=1, m=M)
    case = {"question": q, "rounds": 1, "m": M, "max_new_tokens": MAX_NEW, "text_tokens": M, "modes": ["latent"]}
    res = run_latent_page(webgpu_dist, pair, links_name, case, artifacts / "latent-check.png", timeout_s=2400,
                          case_name="hetero-real-case.json")
    assert res["ok"], f"{res['error']}\n" + "\n".join(res["console"][-20:])
    got = res["result"]["latent"]
    assert [(h["edge"], h["round"]) for h in got["handoffs"]] == [(h["edge"], h["round"]) for h in ref["handoffs"]]
    for g, py in zip(got["handoffs"], ref["handoffs"], strict=True):
        block = np.array(g["block"], dtype=np.float32)
        assert block.shape == py["block"].shape == (M, 576)
        cos = (block * py["block"]).sum(-1) / np.linalg.norm(block, axis=-1) / np.linalg.norm(py["block"], axis=-1)
        print(f"{g['edge']}: hand-off cosine min {cos.min():.6f}")
        assert cos.min() >= 0.999, (g["edge"], cos)
    assert got["answer"] == ref["answer"]
    print(f"browser and Python answer {got['answer']!r}")
