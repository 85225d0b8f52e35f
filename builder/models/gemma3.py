"""Gemma 3 text (Gemma3ForCausalLM, and the language model of a Gemma3ForConditionalGeneration folder).

Sliding-window layers and global layers (every 6th by default), each with its own RoPE base, q/k norms, four norms
per layer with Gemma's (1 + weight), embeddings scaled by sqrt(hidden), a gelu-tanh gated MLP, a tied head,
query_pre_attn_scalar for the attention scale. The graph is gemma_layers.py on decoder.CausalLM.
"""

from mlcbuild_common.errors import MlcbuildError

from .config import ModelConfig, base_config
from .params import ParamSpec

ARCHITECTURES = ("Gemma3ForCausalLM", "Gemma3ForConditionalGeneration")
LAYER_TYPES = ("full_attention", "sliding_attention")
MAX_CHUNK = 1024  # prefill chunk when the window is wider


def _rope(hf: dict, where: str) -> tuple[float, dict, float]:
    """(global base, global scaling, local base) from transformers 5's per-layer-type rope_parameters or the
    older rope_theta / rope_scaling / rope_local_base_freq."""
    params = hf.get("rope_parameters") or {}
    if "full_attention" in params or "sliding_attention" in params:
        full, local = dict(params.get("full_attention") or {}), dict(params.get("sliding_attention") or {})
    else:
        full = {**(hf.get("rope_scaling") or {}), "rope_theta": hf.get("rope_theta")}
        local = {"rope_theta": hf.get("rope_local_base_freq")}
    full_theta = float(full.pop("rope_theta", None) or 1_000_000.0)  # transformers' defaults
    local_theta = float(local.get("rope_theta") or 10_000.0)
    kind = full.get("rope_type", full.get("type", "default"))
    if kind not in ("default", "linear") or local.get("rope_type", "default") != "default":
        raise MlcbuildError(f"{where}: Gemma 3 rope scaling {kind!r} (local: {local.get('rope_type')!r}) "
                            "is not supported", "only default and linear RoPE scaling are")
    scaling = {"rope_type": "linear", "factor": float(full["factor"])} if kind == "linear" else None
    return full_theta, scaling, local_theta


def _layer_types(hf: dict, n: int, where: str) -> list[str]:
    kinds = hf.get("layer_types")
    if kinds is None:  # older configs: every `pattern`-th layer is global
        pattern = int(hf.get("sliding_window_pattern") or hf.get("_sliding_window_pattern") or 6)
        kinds = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n)]
    if len(kinds) != n or any(k not in LAYER_TYPES for k in kinds):
        raise MlcbuildError(f"{where}: layer_types must list {n} of {', '.join(LAYER_TYPES)}, got {kinds}",
                            "fix layer_types in config.json")
    return list(kinds)


def make_config(hf: dict, where: str = "config.json") -> ModelConfig:
    act = hf.get("hidden_activation") or hf.get("hidden_act") or "gelu_pytorch_tanh"
    unsupported = [
        (act not in ("gelu_pytorch_tanh", "gelu_tanh"), f"activation {act!r}", "Gemma 3 uses gelu_pytorch_tanh"),
        (hf.get("attn_logit_softcapping") is not None, "attention logit softcapping",
         "TVM's paged-attention kernels cannot softcap scores; Gemma 3 configs set it to null"),
        (bool(hf.get("use_bidirectional_attention")), "bidirectional attention", "this is an encoder (EmbeddingGemma)"),
        (bool(hf.get("attention_bias")), "attention_bias", "Gemma 3 has no attention bias"),
    ]
    for bad, what, fix in unsupported:
        if bad:
            raise MlcbuildError(f"{where}: Gemma 3 with {what} is not supported", fix)
    theta, scaling, local_theta = _rope(hf, where)
    cfg = base_config({**hf, "rope_theta": theta, "rope_scaling": scaling, "rope_parameters": None}, "gemma3", where,
                      qk_norm=True)
    cfg.layer_types = _layer_types(hf, cfg.num_hidden_layers, where)
    cfg.sliding_window = int(hf.get("sliding_window") or 0)
    sliding = "sliding_attention" in cfg.layer_types
    if sliding and cfg.sliding_window < 1:
        raise MlcbuildError(f"{where}: sliding layers but no sliding_window", "set sliding_window in config.json")
    cfg.rope_local_theta = local_theta
    cfg.attn_scale = float(hf.get("query_pre_attn_scalar") or 256) ** -0.5
    cfg.embed_scale = cfg.hidden_size**0.5
    cfg.final_logit_softcap = float(hf.get("final_logit_softcapping") or 0.0)
    # TVM's paged cache applies the window to cached keys only; a chunk no longer than the window keeps the chunk's
    # own causal attention inside it too (decoder.CausalLM.create_tir_paged_kv_cache)
    cfg.prefill_chunk_size = min(MAX_CHUNK, cfg.sliding_window) if sliding else MAX_CHUNK
    return cfg


def param_specs(cfg: ModelConfig) -> list[ParamSpec]:
    """In GemmaBody's parameter order. Hugging Face names as Gemma3ForCausalLM has them (HFSource maps a
    multimodal folder's language-model names onto these)."""
    h, kv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    hid, inter = cfg.hidden_size, cfg.intermediate_size

    def norm(name, size=hid):
        return ParamSpec(name, (size,), (name,), "norm")

    specs = [ParamSpec("model.embed_tokens.weight", (cfg.vocab_size, hid), ("model.embed_tokens.weight",),
                       "embedding")]
    for i in range(cfg.num_hidden_layers):
        p, a = f"model.layers.{i}", f"model.layers.{i}.self_attn"
        specs += [
            norm(f"{p}.input_layernorm.weight"),
            ParamSpec(f"{a}.qkv_proj.weight", ((h + 2 * kv) * d, hid), tuple(f"{a}.{x}_proj.weight" for x in "qkv"),
                      "linear"),
            ParamSpec(f"{a}.o_proj.weight", (hid, h * d), (f"{a}.o_proj.weight",), "linear"),
            norm(f"{a}.q_norm.weight", d),
            norm(f"{a}.k_norm.weight", d),
            norm(f"{p}.post_attention_layernorm.weight"),
            norm(f"{p}.pre_feedforward_layernorm.weight"),
            ParamSpec(f"{p}.mlp.gate_up_proj.weight", (2 * inter, hid),
                      (f"{p}.mlp.gate_proj.weight", f"{p}.mlp.up_proj.weight"), "linear"),
            ParamSpec(f"{p}.mlp.down_proj.weight", (hid, inter), (f"{p}.mlp.down_proj.weight",), "linear"),
            norm(f"{p}.post_feedforward_layernorm.weight"),
        ]
    specs.append(norm("model.norm.weight"))
    if not cfg.tie_word_embeddings:
        specs.append(ParamSpec("lm_head.weight", (cfg.vocab_size, hid), ("lm_head.weight",), "linear"))
    return specs


def body():
    """The graph's body class (imported here, late: builder.models itself does not import TVM)."""
    from .gemma_layers import GemmaBody

    return GemmaBody
