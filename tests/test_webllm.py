"""Stock WebLLM (@mlc-ai/web-llm 0.2.86, its own bundled tvmjs and chat pipeline) loads our builds and chats.

The page gets a custom appConfig pointing at a local server laid out like a Hugging Face repo
(`.../resolve/main/`); its answers are compared with our CPU library on the same prompt: the prompt's token
count (our conv_template reproduces the Jinja chat template), the greedy text, logit_bias and the
presence/frequency penalties (our sampling kernels on WebGPU against numpy on CPU logits).
"""

import json
from urllib.parse import quote

import numpy as np
import pytest

from builder.make import make
from builder.run.browser import serve_and_run
from builder.run.engine import Engine

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PROMPT = "What is the capital of France?"
TOKENS = 8


def webllm_chat(out, artifacts, extras: bool, timeout_s=900) -> dict:
    base = f"/hf/{out.name}/resolve/main/"  # WebLLM appends resolve/main/ unless the URL carries it
    lib = next(out.glob("*-webgpu.wasm")).name
    page = (f"harness/webllm-check.html?model={base}&lib={base}{lib}&id={out.name}&prompt={quote(PROMPT)}"
            f"&tokens={TOKENS}&extras={int(extras)}&bias_token=42")
    res = serve_and_run(page, {base: out}, timeout_s=timeout_s, screenshot=artifacts / f"{out.name}.png")
    assert res["ok"], f"{res['error']}\n" + "\n".join(res["console"][-20:])
    return res["result"]


def greedy_with_penalties(eng: Engine, ids, n, presence=0.0, frequency=0.0) -> list[int]:
    """WebLLM's rule on CPU logits: generated tokens (not the prompt) get presence + frequency * count off."""
    eng.reset()
    logits = eng.prefill(eng.embed(ids))
    out, counts, stops = [], {}, eng.stop_ids()
    for _ in range(n):
        z = logits.copy()
        for t, c in counts.items():
            z[t] -= presence + frequency * c
        nxt = int(np.argmax(z))
        if nxt in stops:
            break
        out.append(nxt)
        counts[nxt] = counts.get(nxt, 0) + 1
        logits = eng.decode(eng.embed([nxt])[0])
    return out


# the real model via stock WebLLM takes ~160 s on SwiftShader: nightly (.github/workflows/nightly.yml)
@pytest.mark.parametrize("preset,quant,extras", [
    ("tiny-qwen3", "q0f32", True),
    pytest.param("smollm2-135m", None, False, marks=pytest.mark.nightly),
])
def test_stock_webllm_chats_with_our_build(webgpu_dist, artifacts, preset, quant, extras):
    out = make(preset, quant, webgpu_dist, targets=("webgpu", "cpu"), show_progress=False).out
    cfg = json.loads((out / "mlc-chat-config.json").read_text())
    assert isinstance(cfg["conv_template"], dict) and cfg["conv_template_note"] is None
    cpu = Engine(out)
    tok = cpu.tokenizer()
    ids = cpu.chat_ids([{"role": "user", "content": PROMPT}])
    want = greedy_with_penalties(cpu, ids, TOKENS)
    r = webllm_chat(out, artifacts, extras)
    print(f"{out.name} via WebLLM: {r['text']!r} usage {r['usage']} times {r['times']}")
    assert r["usage"]["prompt_tokens"] == len(ids)  # WebLLM's prompt is the Jinja template's, token for token
    assert r["text"] == tok.decode(want)
    assert r["usage"]["completion_tokens"] == len(want) + (len(want) < TOKENS)  # + the stop token if one came
    assert r["chunks"] >= 2 and r["finish"] == ("length" if len(want) == TOKENS else "stop")
    if not extras:
        return
    assert r["biased"] == tok.decode([42])
    pen = greedy_with_penalties(cpu, ids, TOKENS, presence=1.0, frequency=1.5)
    assert r["penalized"] == tok.decode(pen)
    assert 1 <= r["sampledUsage"]["completion_tokens"] <= 4
