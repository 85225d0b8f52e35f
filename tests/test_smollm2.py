"""The real SmolLM2-135M-Instruct (from its GGUF) built by `mlcbuild make`, vs transformers on the same GGUF."""

import numpy as np
import pytest
import torch

from builder.make import make
from builder.run.engine import Engine

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def cosine_rows(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def hf_greedy(hf, ids, n):
    """Plain greedy with the KV cache and no EOS handling, to compare token for token."""
    out, past = [], None
    x = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(n):
            r = hf(x, past_key_values=past, use_cache=True)
            past = r.past_key_values
            nxt = int(r.logits[0, -1].argmax())
            out.append(nxt)
            x = torch.tensor([[nxt]])
    return out


@pytest.fixture(scope="module")
def smol_dist(tmp_path_factory):
    return tmp_path_factory.mktemp("smol")


@pytest.fixture(scope="module")
def reference(smollm2_hf, smol_dist):
    eng = Engine(make("smollm2-135m", "q0f32", smol_dist, targets=("cpu",), show_progress=False).out)
    ids = eng.chat_ids(QUESTION)
    with torch.no_grad():
        r = smollm2_hf(torch.tensor([ids]), output_hidden_states=True)
    return {"ids": ids, "hidden": r.hidden_states[-1][0].numpy(), "logits": r.logits[0].numpy(), "q0f32": eng}


@pytest.mark.slow
def test_q0f32_matches_transformers(reference, smollm2_hf):
    eng, ids = reference["q0f32"], reference["ids"]
    eng.reset()
    hidden = eng.hidden(eng.embed(ids))
    assert cosine_rows(hidden, reference["hidden"]).min() >= 0.99999
    assert np.abs(eng.logits(hidden) - reference["logits"]).max() <= 1e-3
    assert eng.generate(ids, 32, stop=False) == hf_greedy(smollm2_hf, ids, 32)


@pytest.mark.slow
def test_default_q4f32_2_lib_runs_the_gguf_weights_exactly(reference, smol_dist, smollm2_hf):
    """The default build (q4f32_2) copies the GGUF's Q4_1 and Q8_0 blocks bit for bit: against transformers on the
    GGUF's own float weights, hidden cosine >= 0.9999 at every position and the same 32 greedy tokens."""
    eng = Engine(make("smollm2-135m", None, smol_dist, targets=("cpu",), show_progress=False).out)
    assert eng.manifest["quantization"] == "q4f32_2"
    ids = reference["ids"]
    hidden = eng.hidden(eng.embed(ids))
    cos = cosine_rows(hidden, reference["hidden"])
    print(f"SmolLM2 q4f32_2 vs float GGUF weights: hidden cosine min {cos.min():.6f} mean {cos.mean():.6f}")
    assert cos.min() >= 0.9999
    assert np.abs(eng.logits(hidden) - reference["logits"]).max() <= 1e-2
    eng.reset()
    assert eng.generate(ids, 32, stop=False) == hf_greedy(smollm2_hf, ids, 32)


@pytest.mark.slow
def test_q4f32_1_lib_is_exact_and_reports_quantization_error(reference, smol_dist, smollm2_hf):
    """The q4f32_1 lib equals transformers running the same int4-dequantized weights.

    Against the float (Q4_1-dequantized) GGUF weights the symmetric int4 of q4f32_1 re-quantizes an
    already-4-bit asymmetric grid: the damage is printed, and asserted to be real (that is why q4f32_2 exists).
    """
    import copy

    from builder.convert.quantize import dequantize, quantize

    eng = Engine(make("smollm2-135m", "q4f32_1", smol_dist, targets=("cpu",), show_progress=False).out)
    ids = reference["ids"]
    hidden = eng.hidden(eng.embed(ids))
    dq = copy.deepcopy(smollm2_hf)
    with torch.no_grad():
        for _, p in dq.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.from_numpy(dequantize(*quantize(p.numpy()))))
        ref = dq(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0].numpy()
    assert cosine_rows(hidden, ref).min() >= 0.9999
    cos = cosine_rows(hidden, reference["hidden"])
    agree = (eng.logits(hidden).argmax(-1) == reference["logits"].argmax(-1)).mean()
    print(f"SmolLM2 q4f32_1 vs float GGUF weights: hidden cosine min {cos.min():.4f} mean {cos.mean():.4f}, "
          f"top-1 agreement {agree:.3f}")
    assert cos.mean() < 0.95 and agree < 0.95  # measured: mean 0.86; q4f32_2 gives >= 0.9999 on the same tokens


@pytest.mark.slow
@pytest.mark.parametrize("f16,f32,min_cos", [("q0f16", "q0f32", 0.999), ("q4f16_1", "q4f32_1", 0.995)])
def test_f16_build_matches_its_f32_build(smol_dist, f16, f32, min_cos):
    """An f16 build's numbers against the same quantization in f32, both CPU libraries of the real SmolLM2: the
    same greedy answer (16 tokens) and a hidden cosine of at least `min_cos` at every position. q0f16 isolates f16
    arithmetic (measured 0.99998 with f32 sums in the linear layers; 0.998 and a wrong answer with f16 sums).
    q4f16_1 also stores its int4 scales in f16, a slightly different weight grid from q4f32_1's: measured 0.9971.
    The WebGPU f16 path needs shader-f16, which SwiftShader lacks (doctor reports it); these CPU libraries run
    the same graph."""
    a = Engine(make("smollm2-135m", f16, smol_dist, targets=("cpu",), show_progress=False).out)
    b = Engine(make("smollm2-135m", f32, smol_dist, targets=("cpu",), show_progress=False).out)
    ids = a.chat_ids(QUESTION)
    cos = cosine_rows(a.hidden(a.embed(ids)), b.hidden(b.embed(ids)))
    ans_a, ans_b = a.generate(ids, 16), b.generate(ids, 16)
    tok = a.tokenizer()
    print(f"SmolLM2 {f16} vs {f32}: hidden cosine min {cos.min():.6f}; answers {tok.decode(ans_a)!r} / "
          f"{tok.decode(ans_b)!r}")
    assert cos.min() >= min_cos
    assert ans_a == ans_b
