"""Gemma 3 on WebGPU in headless Chromium (SwiftShader) vs the CPU library of the same build.

The tiny random models of tests/test_gemma3.py have sliding windows of 8 and 12 positions; prompts of 40 are
prefilled in chunks no longer than the window, so chunks, the decode steps and the truncated re-prefill all see
pages leave the sliding layers' windows (where TVM's plain KV-cache aux manager used to hand the global layers the
window's page list: patches/README.md, tvm-web/source).
"""

import time

import numpy as np
import pytest
from test_gemma3 import CONFIGS, PROMPT_LEN, tiny_gemma3
from test_models_webgpu import cosine_rows, run_in_browser

from builder.make import make
from builder.run.engine import Engine

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny_dist(tmp_path_factory):
    return tmp_path_factory.mktemp("gemma3-webgpu")


@pytest.mark.parametrize("name", ["kv2", "kv1"])
def test_tiny_gemma3_q0f32_webgpu_matches_cpu_lib(tiny_dist, tmp_path_factory, artifacts, name):
    src = tmp_path_factory.mktemp(f"tiny-gemma3-{name}")
    tiny_gemma3(src, CONFIGS[name])
    out = make(str(src), "q0f32", tiny_dist, targets=("webgpu", "cpu"), show_progress=False).out
    cpu = Engine(out)
    window = CONFIGS[name]["sliding_window"]
    assert cpu.chunk == window < PROMPT_LEN  # chunked prefill, and the window left behind more than once
    ids = np.random.default_rng(1).integers(0, cpu.vocab_size, PROMPT_LEN)
    cpu_h = cpu.hidden(cpu.embed(ids))
    t0 = time.perf_counter()
    r = run_in_browser(out, ids, greedy=8, artifacts=artifacts)
    browser_s = time.perf_counter() - t0
    # the sliding layers' kernels are compiled with the others, not on their first call
    assert any("sliding_window" in k for k in r["prebuilt"])
    cos = cosine_rows(r["hidden"], cpu_h)
    print(f"gemma3 {name} q0f32 webgpu: min hidden cosine {cos.min():.7f} over {PROMPT_LEN} positions "
          f"(window {window}), browser {browser_s:.0f} s, timings {r['times']}")
    assert cos.min() >= 0.9999
    assert r["argmax"] == cpu.logits(cpu_h).argmax(-1).tolist()
    # decode over the window: prefill n - 1 then one step == the full prefill's last position
    assert cosine_rows(r["stepHidden"], cpu_h[-1:]).min() >= 0.9999
    # truncated to n - 4 positions and prefilled again == the full prefill's last 4 rows
    assert r["truncLength"] == PROMPT_LEN and cosine_rows(r["truncHidden"], cpu_h[-4:]).min() >= 0.9999
    assert np.isfinite(r["latent"]).all()
    assert r["greedy"] == cpu.generate(ids, 8, stop=False)


@pytest.mark.nightly  # ~6.5 min on SwiftShader: .github/workflows/nightly.yml runs it
def test_gemma3_270m_q4f32_1_webgpu_matches_cpu_lib(webgpu_dist, artifacts):
    """The real gemma3-270m (one KV head, 262k-row LM head) in its default build: the prompt's hidden states and the
    first 4 greedy tokens agree between browser and CPU library. SwiftShader runs the LM head slowly, so the prompt
    is short and the harness skips its logits and cache checks."""
    t0 = time.perf_counter()
    out = make("gemma3-270m", None, webgpu_dist, targets=("webgpu", "cpu"), show_progress=False).out
    build_s = time.perf_counter() - t0
    cpu = Engine(out)
    tok = cpu.tokenizer()
    ids = tok("The capital of France is")["input_ids"]
    want = cpu.generate(ids, 4, stop=False)
    cpu.reset()
    cpu_h = cpu.hidden(cpu.embed(ids))
    t1 = time.perf_counter()
    r = run_in_browser(out, ids, greedy=4, artifacts=artifacts, timeout_s=1800, checks="hidden")
    browser_s = time.perf_counter() - t1
    cos = cosine_rows(r["hidden"], cpu_h).min()
    print(f"gemma3-270m q4f32_1 webgpu: build {build_s:.0f} s, browser {browser_s:.0f} s, min hidden cosine "
          f"{cos:.6f} over {len(ids)} positions, greedy {tok.decode(r['greedy'])!r} (cpu {tok.decode(want)!r}), "
          f"timings {r['times']}")
    assert cos >= 0.999
    assert r["greedy"] == want
