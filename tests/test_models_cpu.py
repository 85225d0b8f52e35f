"""CPU libraries built by `mlcbuild make` vs Hugging Face transformers on the same weights.

Tiny random-weight models cover every architecture switch: GQA everywhere, tied (tiny-llama, tiny-qwen3)
and untied heads (tiny-llama3, tiny-qwen2), llama3 rope scaling (tiny-llama3), qkv bias (tiny-qwen2),
q/k norm (tiny-qwen3).
"""

import numpy as np
import pytest
import torch
import transformers

from builder.fetch import fetch
from builder.make import make
from builder.run.engine import Engine

TINY = ["tiny-llama", "tiny-llama3", "tiny-qwen2", "tiny-qwen3"]
PROMPT_LEN = 16


def cosine_rows(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{(preset, quant): (Engine, transformers model)}, built lazily once per module."""
    out = tmp_path_factory.mktemp("dist")
    cache = {}

    def get(preset, quant):
        if (preset, quant) not in cache:
            res = make(preset, quant, out, targets=("cpu",), show_progress=False)
            src = fetch(preset, show_progress=False).path
            hf = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
            cache[(preset, quant)] = (Engine(res.out), hf)
        return cache[(preset, quant)]

    return get


def reference(hf, ids):
    with torch.no_grad():
        r = hf(torch.tensor(np.asarray(ids)[None].astype("int64")), output_hidden_states=True)
    return r.hidden_states[-1][0].numpy(), r.logits[0].numpy()


def greedy_reference(hf, ids, n):
    with torch.no_grad():
        out = hf.generate(torch.tensor(np.asarray(ids)[None].astype("int64")), max_new_tokens=n,
                          min_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[0, len(ids):].tolist()


@pytest.mark.slow
@pytest.mark.parametrize("preset", TINY)
def test_q0f32_matches_transformers(built, preset):
    eng, hf = built(preset, "q0f32")
    ids = np.random.default_rng(1).integers(0, eng.vocab_size, PROMPT_LEN)
    eng.reset()
    hidden = eng.hidden(eng.embed(ids))
    ref_h, ref_logits = reference(hf, ids)
    assert cosine_rows(hidden, ref_h).min() >= 0.99999
    assert np.abs(eng.logits(hidden) - ref_logits).max() <= 1e-4
    eng.reset()
    assert np.abs(eng.prefill(eng.embed(ids)) - ref_logits[-1]).max() <= 1e-4
    assert eng.generate(ids, 32, stop=False) == greedy_reference(hf, ids, 32)
    # a second sequence: prefill, 2 stray steps, truncate to n - 4, prefill the last 4 again (cached prefix reused)
    seq = eng.sequence(64)
    emb = eng.embed(ids)
    seq.hidden(emb)
    for _ in range(2):
        seq.decode_hidden(emb[0])
    seq.truncate(len(ids) - 4)
    assert seq.length == len(ids) - 4
    assert cosine_rows(seq.hidden(emb[-4:]), ref_h[-4:]).min() >= 0.99999


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["q4f32_1", "q4f32_2"])
@pytest.mark.parametrize("preset", TINY)
def test_q4f32_graph_is_exact_on_dequantized_weights(built, preset, quant):
    """The integer libs equal transformers running the same dequantized weights (the fused dequant is exact):
    q4f32_1's symmetric int4, and q4f32_2's int4 with minimum (linear layers) and int8 (embedding, tied head).

    Quality against float weights is checked on the real SmolLM2 in test_smollm2.py: random tiny models have
    near-tied logits over a 49k vocabulary, so int4 noise on their Gaussian weights says little about real models.
    """
    from builder.convert.quantize import dequantize, quantize
    from builder.models.params import weight_format

    eng, hf = built(preset, quant)
    dq = transformers.AutoModelForCausalLM.from_config(hf.config).eval()
    dq.load_state_dict(hf.state_dict())
    with torch.no_grad():
        for name, p in dq.named_parameters():
            if p.dim() == 2:
                fmt = weight_format(quant, "embedding" if "embed_tokens" in name else "linear")
                p.copy_(torch.from_numpy(dequantize(*quantize(p.numpy(), fmt=fmt), fmt=fmt)))
    ids = np.random.default_rng(2).integers(0, eng.vocab_size, PROMPT_LEN)
    eng.reset()
    hidden = eng.hidden(eng.embed(ids))
    ref_h, ref_logits = reference(dq, ids)
    assert cosine_rows(hidden, ref_h).min() >= 0.99999
    assert np.abs(eng.logits(hidden) - ref_logits).max() <= 1e-4
    float_h, _ = reference(hf, ids)
    print(f"{preset} {quant} vs float weights: min hidden cosine {cosine_rows(hidden, float_h).min():.4f}")


@pytest.mark.slow
def test_kv_cache_consistency_and_latent_step(built):
    """prefill N then decode 1 == prefill N+1; decode_last_hidden + get_logits == decode."""
    eng, _ = built("tiny-qwen3", "q0f32")
    ids = np.random.default_rng(3).integers(0, eng.vocab_size, 9)
    eng.reset()
    full = eng.hidden(eng.embed(ids))
    eng.reset()
    eng.hidden(eng.embed(ids[:-1]))
    step = eng.decode_hidden(eng.embed(ids[-1:])[0])
    assert cosine_rows(step[None], full[-1:]).min() >= 0.99999
    eng.reset()
    eng.prefill(eng.embed(ids[:-1]))
    logits = eng.decode(eng.embed(ids[-1:])[0])
    assert np.abs(logits - eng.logits(step)[0]).max() <= 1e-4
    # a latent step: feed a hidden state back as the next input embedding, no LM head involved
    eng.reset()
    eng.hidden(eng.embed(ids))
    nxt = eng.decode_hidden(full[-1])
    assert nxt.shape == (eng.hidden_size,) and np.isfinite(nxt).all()
