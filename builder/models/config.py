"""ModelConfig: the fields our decoder graphs need, read from a Hugging Face config.json dict."""

from dataclasses import asdict, dataclass, field

from mlcbuild_common.errors import MlcbuildError


@dataclass
class ModelConfig:
    arch: str  # Hugging Face architectures[0], e.g. "Qwen3ForCausalLM"
    model_type: str  # registry key of builder/models, e.g. "qwen3"
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    context_window_size: int
    qk_norm: bool = False  # Qwen3: RMSNorm on q and k per head, before RoPE
    qkv_bias: bool = False  # Qwen2: bias on the q/k/v projections
    rope_scaling: dict = field(default_factory=dict)  # Llama-3: {"rope_type": "llama3", ...}
    prefill_chunk_size: int = 1024
    # Gemma 3 (defaults leave the other families as they are):
    layer_types: list = field(default_factory=list)  # per layer "full_attention" | "sliding_attention"; [] = all full
    sliding_window: int = 0  # keys a sliding layer sees, its own position included
    rope_local_theta: float = 0.0  # RoPE base of the sliding layers (global layers: rope_theta + rope_scaling)
    attn_scale: float = 0.0  # softmax scale of q.k; 0 = head_dim ** -0.5
    embed_scale: float = 1.0  # embeddings are multiplied by this (Gemma: sqrt(hidden_size))
    final_logit_softcap: float = 0.0  # logits = cap * tanh(logits / cap) when > 0

    def as_dict(self) -> dict:
        return asdict(self)


def _need(hf: dict, key: str, where: str):
    if key not in hf or hf[key] is None:
        raise MlcbuildError(f"{where}: config.json has no '{key}'", "is this a decoder-only causal LM config?")
    return hf[key]


def base_config(hf: dict, model_type: str, where: str = "config.json", **flags) -> ModelConfig:
    """Fields shared by the Llama-style families; `flags` are the architecture's own switches."""
    heads = int(_need(hf, "num_attention_heads", where))
    hidden = int(_need(hf, "hidden_size", where))
    head_dim = int(hf.get("head_dim") or hidden // heads)
    rope = dict(hf.get("rope_scaling") or {})
    rope_params = hf.get("rope_parameters") or {}  # transformers 5 moves rope_theta/rope_type here
    theta = hf.get("rope_theta") or rope_params.get("rope_theta") or 10000.0
    if not rope and rope_params.get("rope_type", "default") not in ("default", None):
        rope = {k: v for k, v in rope_params.items() if k != "rope_theta"}
    if rope.get("rope_type", rope.get("type")) in (None, "default"):
        rope = {}
    elif "rope_type" not in rope:
        rope["rope_type"] = rope.pop("type")
    cfg = ModelConfig(
        arch=(hf.get("architectures") or ["?"])[0],
        model_type=model_type,
        hidden_size=hidden,
        intermediate_size=int(_need(hf, "intermediate_size", where)),
        num_hidden_layers=int(_need(hf, "num_hidden_layers", where)),
        num_attention_heads=heads,
        num_key_value_heads=int(hf.get("num_key_value_heads") or heads),
        head_dim=head_dim,
        vocab_size=int(_need(hf, "vocab_size", where)),
        rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        rope_theta=float(theta),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        context_window_size=int(hf.get("max_position_embeddings", 4096)),
        rope_scaling=rope,
        **flags,
    )
    if cfg.num_attention_heads % cfg.num_key_value_heads:
        raise MlcbuildError(f"{where}: {heads} attention heads do not divide into "
                            f"{cfg.num_key_value_heads} key/value heads", "check the config")
    return cfg
