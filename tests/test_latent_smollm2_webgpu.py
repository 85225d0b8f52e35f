"""The real model in the browser: three SmolLM2-135M-Instruct q4f32_2 agents run the latent loop on WebGPU
(headless Chromium, SwiftShader) for a few latent steps and a few decoded tokens, checked against the same
loop on the CPU libraries in Python. SwiftShader takes about a minute per 60-token prefill here, so the case
is as small as still meaningful: one round, two latent steps per agent, three answer tokens."""

from pathlib import Path

import numpy as np
import pytest
from mas_system import QUESTION, links_for_dims, run_latent_page, tiny_links

from builder.make import make
from builder.run.latent import LatentMAS
from train_links import format as fmt

ROUNDS, M, MAX_NEW = 1, 2, 3


@pytest.fixture(scope="module")
def smollm2_system(tmp_path_factory, webgpu_dist):
    # the default build the other browser suites use (made once, reused); the page is served from its root
    tmp = webgpu_dist
    build = make("smollm2-135m", "q4f32_2", tmp, targets=("webgpu", "cpu"), show_progress=False).out
    agents, links, pattern = tiny_links(m=M, rounds=ROUNDS)  # the pattern and file layout; dims rewritten below
    tiny = fmt.save(tmp_path_factory.mktemp("smollm2-latent") / "tiny-links.json", agents, pattern, links, m=M,
                    rounds=ROUNDS)
    links_file = links_for_dims(tiny, tmp / "smollm2-latent-links.json", 576)  # random, self-consistent d=576
    return {"tmp": tmp, "dirs": [build] * 3, "links_file": links_file}


@pytest.mark.browser
@pytest.mark.nightly  # ~250 s on SwiftShader: .github/workflows/nightly.yml runs it
def test_smollm2_latent_loop_in_browser_matches_python(smollm2_system):
    s = smollm2_system
    art = Path(__file__).resolve().parent / "artifacts" / "test_latent_smollm2_webgpu"
    art.mkdir(parents=True, exist_ok=True)
    case = {"question": QUESTION, "rounds": ROUNDS, "m": M, "max_new_tokens": MAX_NEW, "text_tokens": M,
            "modes": ["latent"]}
    res = run_latent_page(s["tmp"], s["dirs"], s["links_file"].name, case, art / "latent-check.png", timeout_s=1500,
                          case_name="smollm2-latent-case.json")
    assert res["ok"], f"{res['error']}\n" + "\n".join(res["console"][-20:])
    got = res["result"]["latent"]
    ref = LatentMAS(s["dirs"], s["links_file"]).run(QUESTION, "latent", max_new_tokens=MAX_NEW, rounds=ROUNDS, m=M)
    assert [(h["edge"], h["round"]) for h in got["handoffs"]] == [(h["edge"], h["round"]) for h in ref["handoffs"]]
    assert got["handoffs"], "no latent hand-off happened"
    for g, py in zip(got["handoffs"], ref["handoffs"], strict=True):
        block = np.array(g["block"], dtype=np.float32)
        assert block.shape == py["block"].shape == (M, 576)
        assert np.isfinite(block).all()
        cos = (block * py["block"]).sum(-1) / np.linalg.norm(block, axis=-1) / np.linalg.norm(py["block"], axis=-1)
        assert cos.min() >= 0.999, (g["edge"], cos)
    assert got["answer"] == ref["answer"]
    assert got["metrics"]["latent_steps"] == ref["metrics"]["latent_steps"] == M * 2
    assert got["metrics"]["generated_tokens"] == ref["metrics"]["generated_tokens"] > 0
    print(f"smollm2 browser latent: answer {got['answer']!r}, e2e {got['metrics']['e2e_latency_s']:.0f} s")
