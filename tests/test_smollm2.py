"""The real SmolLM2-135M-Instruct (from its GGUF) built by `mlcbuild make`, vs transformers on the same GGUF."""

import numpy as np
import pytest
import torch

from builder.engine import Engine
from builder.make import make

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
