"""All four collaboration patterns (sequential, mixture, distillation, deliberation) end to end on heterogeneous
tiny agents: tiny-qwen3 (hidden 64, SmolLM2's tokenizer and ChatML) beside tiny-llama-bpe (hidden 96, its own
512-token BPE tokenizer and chat template), so every outer link maps 64 -> 96 or 96 -> 64. For each pattern, the
browser loop (WebGPU on SwiftShader) against the Python loop on the CPU libraries: the same hand-offs in the same
order, hand-off cosine >= 0.9999 at every row, the same answer text. Two rounds, so the next-round edges run too."""

import numpy as np
import pytest
from mas_system import QUESTION, run_latent_page, tiny_links

from builder.make import make
from builder.run.latent import LatentMAS
from train_links import format as fmt
from train_links.patterns import get_pattern

MODELS = ("tiny-llama-bpe", "tiny-qwen3")  # alternated over each pattern's roles
ROUNDS, M, MAX_NEW = 2, 2, 4
PATTERNS = {"sequential": 3, "mixture": 3, "distillation": 2, "deliberation": 2}  # pattern: its agents here


@pytest.fixture(scope="module")
def builds(webgpu_dist):
    return {m: make(m, "q0f32", webgpu_dist, targets=("webgpu", "cpu"), show_progress=False).out for m in MODELS}


def _links(tmp, name: str, n_agents: int):
    """Random links for `name` with the agents alternating over MODELS (perturbed from their init)."""
    pattern = get_pattern(name, n_agents)
    specs = [MODELS[i % 2] for i in range(len(pattern.agents))]
    agents, links, _ = tiny_links(M, ROUNDS, pattern, specs)
    path = fmt.save(tmp / f"patterns-{name}.json", agents, pattern, links, m=M, rounds=ROUNDS)
    return path, specs


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("name", list(PATTERNS))
def test_pattern_in_browser_matches_python(name, builds, webgpu_dist, artifacts):
    links_file, specs = _links(webgpu_dist, name, PATTERNS[name])
    dirs = [builds[s] for s in specs]
    dims = {fmt.load(links_file).meta["agents"][i]["hidden_size"] for i in range(len(specs))}
    assert dims == {64, 96}, dims  # really heterogeneous
    ref = LatentMAS(dirs, links_file).run(QUESTION, "latent", max_new_tokens=MAX_NEW, rounds=ROUNDS, m=M)
    case = {"question": QUESTION, "rounds": ROUNDS, "m": M, "max_new_tokens": MAX_NEW, "text_tokens": M,
            "modes": ["latent"]}
    res = run_latent_page(webgpu_dist, dirs, links_file.name, case, artifacts / "latent-check.png",
                          case_name=f"patterns-{name}-case.json")
    assert res["ok"], f"{res['error']}\n" + "\n".join(res["console"][-20:])
    got = res["result"]["latent"]
    assert [(h["edge"], h["round"]) for h in got["handoffs"]] == [(h["edge"], h["round"]) for h in ref["handoffs"]]
    assert {h["round"] for h in ref["handoffs"]} == set(range(ROUNDS))
    worst = 1.0
    for g, py in zip(got["handoffs"], ref["handoffs"], strict=True):
        block = np.array(g["block"], dtype=np.float32)
        assert block.shape == py["block"].shape
        cos = (block * py["block"]).sum(-1) / np.linalg.norm(block, axis=-1) / np.linalg.norm(py["block"], axis=-1)
        worst = min(worst, float(cos.min()))
        assert cos.min() >= 0.9999, (g["edge"], g["round"], cos)
    assert got["answer"] == ref["answer"]
    print(f"{name}: {len(ref['handoffs'])} hand-offs, worst cosine {worst:.6f}, answer {got['answer']!r}")
