"""Gemma 3: CPU libraries built by `mlcbuild make` vs transformers, on tiny random models made here and on the real
gemma3-270m GGUF from PyPI; and the gemma3 GGUF conventions (names, norms stored as 1 + weight) against
transformers' own GGUF loader.

The tiny models have sliding windows of 8 and 12 positions and prompts of 40, so prompt, chunks (no longer than
the window) and the 32 greedy steps after them all cross the window; both have sliding and global layers.
"""

import time

import numpy as np
import pytest
import torch
import transformers

from builder.convert import open_source
from builder.fetch import fetch, tiny_tokenizer_source
from builder.make import make
from builder.models import model_config
from builder.run.engine import Engine
from mlcbuild_common.errors import MlcbuildError

PROMPT_LEN = 40
TINY = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, max_position_embeddings=1024)
CONFIGS = {
    # one KV head, 5 sliding layers then 1 global (the default pattern), an attention scale that is not head_dim's
    "kv1": dict(TINY, num_hidden_layers=6, num_key_value_heads=1, head_dim=16, sliding_window=8,
                query_pre_attn_scalar=24),
    # GQA, explicit layer types, linear rope scaling on the global layers, a final logit softcap
    "kv2": dict(TINY, num_hidden_layers=5, num_key_value_heads=2, head_dim=32, sliding_window=12,
                query_pre_attn_scalar=32, final_logit_softcapping=30.0,
                layer_types=["sliding_attention", "full_attention", "sliding_attention", "sliding_attention",
                             "full_attention"],
                rope_parameters={"full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6},
                                 "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}),
}


def cosine_rows(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def tiny_gemma3(root, overrides: dict, seed: int = 0):
    """A random Gemma3ForCausalLM saved with SmolLM2's tokenizer; norms random too, so their 1 + weight counts."""
    open_source(tiny_tokenizer_source()).write_tokenizer(root)
    tok = transformers.AutoTokenizer.from_pretrained(root)
    cfg = transformers.Gemma3TextConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **overrides)
    cfg.architectures = ["Gemma3ForCausalLM"]
    torch.manual_seed(seed)
    model = transformers.Gemma3ForCausalLM(cfg).to(torch.float32).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.08 if p.dim() > 1 else 0.3)
    model.save_pretrained(root, safe_serialization=True)
    return model


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{(config, quant): (Engine, transformers model)}, built once per module."""
    out = tmp_path_factory.mktemp("dist")
    cache = {}

    def get(name, quant):
        if (name, quant) not in cache:
            src = tmp_path_factory.mktemp(f"gemma3-{name}")
            hf = tiny_gemma3(src, CONFIGS[name])
            res = make(str(src), quant, out, targets=("cpu",), show_progress=False)
            cache[(name, quant)] = (Engine(res.out), hf)
        return cache[(name, quant)]

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


def test_config_reads_both_spellings():
    old = dict(CONFIGS["kv1"], architectures=["Gemma3ForCausalLM"], vocab_size=300, rope_theta=1e6,
               rope_local_base_freq=1e4, rope_scaling={"type": "linear", "factor": 8.0}, sliding_window_pattern=3)
    cfg = model_config(old)
    assert cfg.layer_types == ["sliding_attention", "sliding_attention", "full_attention"] * 2
    assert (cfg.rope_theta, cfg.rope_local_theta, cfg.rope_scaling) == (1e6, 1e4, {"rope_type": "linear",
                                                                                   "factor": 8.0})
    assert (cfg.sliding_window, cfg.prefill_chunk_size, cfg.attn_scale, cfg.embed_scale) == (8, 8, 24**-0.5, 8.0)
    new = transformers.Gemma3TextConfig(vocab_size=300, **CONFIGS["kv2"]).to_dict()
    new["architectures"] = ["Gemma3ForConditionalGeneration"]  # the text model of a multimodal folder
    cfg = model_config(new)
    assert cfg.layer_types == CONFIGS["kv2"]["layer_types"] and cfg.final_logit_softcap == 30.0
    assert (cfg.rope_theta, cfg.rope_local_theta, cfg.rope_scaling["factor"]) == (1e6, 1e4, 4.0)
    with pytest.raises(MlcbuildError, match="attention logit softcapping"):
        model_config({**new, "attn_logit_softcapping": 50.0})
    with pytest.raises(MlcbuildError, match="layer_types must list 5"):
        model_config({**new, "layer_types": ["full_attention"]})


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_q0f32_matches_transformers(built, name):
    eng, hf = built(name, "q0f32")
    assert eng.chunk == CONFIGS[name]["sliding_window"] < PROMPT_LEN
    ids = np.random.default_rng(1).integers(0, eng.vocab_size, PROMPT_LEN)
    eng.reset()
    hidden = eng.hidden(eng.embed(ids))
    ref_h, ref_logits = reference(hf, ids)
    cos, diff = cosine_rows(hidden, ref_h).min(), np.abs(eng.logits(hidden) - ref_logits).max()
    print(f"gemma3 {name} q0f32: min hidden cosine {cos:.7f}, max logit diff {diff:.2e}")
    assert cos >= 0.99999 and diff <= 1e-4
    eng.reset()
    assert np.abs(eng.prefill(eng.embed(ids)) - ref_logits[-1]).max() <= 1e-4
    assert eng.generate(ids, 32, stop=False) == greedy_reference(hf, ids, 32)
    # one position at a time (decode kernels over the window) gives the same states as the prefill
    eng.reset()
    emb = eng.embed(ids)
    steps = np.stack([eng.decode_hidden(e) for e in emb])
    assert cosine_rows(steps, ref_h).min() >= 0.99999
    # truncate into the middle and prefill the rest again: the cached prefix is reused
    seq = eng.sequence(128)
    seq.hidden(emb)
    seq.truncate(PROMPT_LEN - 13)
    assert cosine_rows(seq.hidden(emb[-13:]), ref_h[-13:]).min() >= 0.99999


@pytest.mark.slow
def test_q4f32_1_graph_is_exact_on_dequantized_weights(built):
    """The int4 library equals transformers running the same dequantized weights (embedding and tied head too)."""
    from builder.convert.quantize import dequantize, quantize
    from builder.models.params import INT4

    eng, hf = built("kv1", "q4f32_1")
    dq = transformers.Gemma3ForCausalLM(hf.config).eval()
    dq.load_state_dict(hf.state_dict())
    with torch.no_grad():
        for p in dq.parameters():
            if p.dim() == 2:
                p.copy_(torch.from_numpy(dequantize(*quantize(p.numpy(), fmt=INT4), fmt=INT4)))
    ids = np.random.default_rng(2).integers(0, eng.vocab_size, PROMPT_LEN)
    eng.reset()
    hidden = eng.hidden(eng.embed(ids))
    ref_h, ref_logits = reference(dq, ids)
    assert cosine_rows(hidden, ref_h).min() >= 0.99999
    assert np.abs(eng.logits(hidden) - ref_logits).max() <= 1e-4


def test_multimodal_folder_builds_its_language_model(tmp_path):
    """A Gemma3ForConditionalGeneration folder: text fields in text_config, tensors under model.language_model.*
    (or language_model.model.*), vision tensors beside them: the specs read the language model's tensors."""
    import json

    from safetensors.numpy import load_file, save_file

    from builder.convert.convert import gather
    from builder.models import param_specs

    tiny_gemma3(tmp_path / "text", CONFIGS["kv1"])
    text_cfg = json.loads((tmp_path / "text" / "config.json").read_text())
    orig = load_file(tmp_path / "text" / "model.safetensors")
    for prefix in ("model.language_model.", "language_model.model."):
        d = tmp_path / prefix.strip(".")
        d.mkdir()
        renamed = {prefix + k.removeprefix("model."): v for k, v in orig.items()}
        save_file({**renamed, "model.vision_tower.patch.weight": np.zeros((2, 2), np.float32)}, d / "model.safetensors")
        (d / "config.json").write_text(json.dumps({"architectures": ["Gemma3ForConditionalGeneration"],
                                                   "model_type": "gemma3", "text_config": text_cfg}))
        src = open_source(d)
        cfg = model_config(src.config)
        assert cfg.tie_word_embeddings and cfg.num_hidden_layers == 6 and cfg.sliding_window == 8
        for spec in param_specs(cfg):
            want = np.concatenate([orig[n] for n in spec.sources])
            assert np.array_equal(gather(src, spec), want), spec.name


# ---------------------------------------------------------------- GGUF


def write_gemma3_gguf(path, model, quantized=("attn_q", "attn_output", "ffn_down")):
    """`model` as llama.cpp's converter writes gemma3: its tensor names, every norm stored as 1 + weight, some
    matrices in Q8_0 blocks, the rest F32."""
    import gguf

    c = model.config
    names = {"input_layernorm": "attn_norm", "post_attention_layernorm": "post_attention_norm",
             "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
             "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_vocab_size(c.vocab_size)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_key_length(c.head_dim)
    w.add_value_length(c.head_dim)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(1e6)
    w.add_sliding_window(c.sliding_window)
    for name, t in model.state_dict().items():
        a = t.numpy().astype(np.float32)
        if name == "model.embed_tokens.weight":
            gg = "token_embd"
        elif name == "model.norm.weight":
            gg = "output_norm"
        elif name.startswith("model.layers."):
            i, rest = name.removeprefix("model.layers.").split(".", 1)
            gg = f"blk.{i}.{names[rest.removesuffix('.weight')]}"
        else:
            continue  # lm_head: tied, llama.cpp writes none
        if name.endswith("norm.weight"):
            a = a + np.float32(1.0)
        if gg.split(".")[-1] in quantized:
            kind = gguf.GGMLQuantizationType.Q8_0
            w.add_tensor(f"{gg}.weight", gguf.quants.quantize(a, kind), raw_dtype=kind)
        else:
            w.add_tensor(f"{gg}.weight", a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_gemma3_gguf_matches_transformers_loader(tmp_path):
    """Our GGUF reader gives exactly the tensors transformers' own GGUF loader gives (norms back to Hugging Face's
    weight, without the 1), and those are the original model's (norms to float32 rounding, Q8_0 to its step)."""
    overrides = dict(CONFIGS["kv1"], head_dim=256, query_pre_attn_scalar=256)  # transformers' GGUF defaults
    model = tiny_gemma3(tmp_path / "hf", overrides)
    write_gemma3_gguf(tmp_path / "tiny.gguf", model)
    src = open_source(tmp_path / "tiny.gguf")
    cfg = model_config(src.config)
    assert cfg.layer_types == ["sliding_attention"] * 5 + ["full_attention"]
    assert (cfg.num_key_value_heads, cfg.head_dim, cfg.sliding_window, cfg.attn_scale) == (1, 256, 8, 1 / 16)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf",
                                                               dtype=torch.float32).state_dict()
    orig = model.state_dict()
    for name in orig:
        if name == "lm_head.weight":
            continue
        ours = src.get(name)
        assert np.array_equal(ours, theirs[name].numpy()), name
        step = np.abs(orig[name].numpy()).max() / 127 if name.endswith(("q_proj.weight", "o_proj.weight",
                                                                         "down_proj.weight")) else 1e-6
        assert np.abs(ours - orig[name].numpy()).max() <= step, name


# ---------------------------------------------------------------- the real gemma3-270m (Q4_K_M GGUF from PyPI)

LONG = ("The history of the city goes back to a small settlement by the river, where traders met each spring. "
        "Over the centuries it grew into a market town, then a port, and finally a capital. ") * 16


@pytest.mark.slow
def test_gemma3_270m_q4f32_1_matches_transformers(webgpu_dist):
    """The preset builds q4f32_1 (the GGUF's Q4_K/Q5_0/Q6_K/Q8_0 weights dequantized, then requantized to int4) and
    equals transformers on those same requantized weights, over a prompt longer than the 512-position window."""
    from builder.convert.quantize import dequantize, quantize
    from builder.models.params import INT4

    t0 = time.perf_counter()
    # into the shared root: tests/test_hetero_real.py reuses this CPU build
    res = make("gemma3-270m", None, webgpu_dist, targets=("cpu",), show_progress=False)
    build_s = time.perf_counter() - t0
    eng = Engine(res.out)
    assert eng.manifest["quantization"] == "q4f32_1" and eng.vocab_size == 262144
    gguf = fetch("gemma3-270m", show_progress=False).path
    hf = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                           dtype=torch.float32).eval()
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() == 2:
                p.copy_(torch.from_numpy(dequantize(*quantize(p.numpy(), fmt=INT4), fmt=INT4)))
    tok = eng.tokenizer()
    ids = tok(LONG)["input_ids"]
    assert len(ids) > 600
    eng.reset()
    hidden = eng.hidden(eng.embed(ids))
    with torch.no_grad():
        r = hf(torch.tensor([ids]), output_hidden_states=True, logits_to_keep=1)
    cos = cosine_rows(hidden, r.hidden_states[-1][0].numpy()).min()
    diff = np.abs(eng.logits(hidden[-1:])[0] - r.logits[0, -1].numpy()).max()
    prompt = tok("The capital of France is")["input_ids"]
    t1 = time.perf_counter()
    ours = eng.generate(prompt, 16, stop=False)
    gen_s = time.perf_counter() - t1
    theirs = greedy_reference(hf, prompt, 16)
    print(f"gemma3-270m q4f32_1: build {build_s:.0f} s, {len(ids)}-token prompt min hidden cosine {cos:.6f}, "
          f"last logit max diff {diff:.2e}; 16 tokens in {gen_s:.2f} s: {tok.decode(ours)!r} "
          f"(transformers: {tok.decode(theirs)!r})")
    assert cos >= 0.9999
    assert ours == theirs
