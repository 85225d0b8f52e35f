"""Parameter specs of the shared decoder: our names, shapes, and the Hugging Face tensors behind them.

Order matters: it is the order of CausalLM.named_parameters(), which the packed-params ABI expects;
builder.models.build_graph checks the two agree.
"""

from .config import ModelConfig
from .params import ParamSpec


def decoder_param_specs(cfg: ModelConfig) -> list[ParamSpec]:
    h, kv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    hid, inter = cfg.hidden_size, cfg.intermediate_size
    specs = [ParamSpec("model.embed_tokens.weight", (cfg.vocab_size, hid), ("model.embed_tokens.weight",),
                       "embedding")]
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}"
        a = f"{p}.self_attn"
        specs.append(ParamSpec(f"{p}.input_layernorm.weight", (hid,), (f"{p}.input_layernorm.weight",), "norm"))
        qkv = tuple(f"{a}.{x}_proj.weight" for x in "qkv")
        specs.append(ParamSpec(f"{a}.qkv_proj.weight", ((h + 2 * kv) * d, hid), qkv, "linear"))
        if cfg.qkv_bias:
            specs.append(ParamSpec(f"{a}.qkv_proj.bias", ((h + 2 * kv) * d,),
                                   tuple(f"{a}.{x}_proj.bias" for x in "qkv"), "bias"))
        specs.append(ParamSpec(f"{a}.o_proj.weight", (hid, h * d), (f"{a}.o_proj.weight",), "linear"))
        if cfg.qk_norm:
            specs.append(ParamSpec(f"{a}.q_norm.weight", (d,), (f"{a}.q_norm.weight",), "norm"))
            specs.append(ParamSpec(f"{a}.k_norm.weight", (d,), (f"{a}.k_norm.weight",), "norm"))
        specs.append(ParamSpec(f"{p}.post_attention_layernorm.weight", (hid,),
                               (f"{p}.post_attention_layernorm.weight",), "norm"))
        specs.append(ParamSpec(f"{p}.mlp.gate_up_proj.weight", (2 * inter, hid),
                               (f"{p}.mlp.gate_proj.weight", f"{p}.mlp.up_proj.weight"), "linear"))
        specs.append(ParamSpec(f"{p}.mlp.down_proj.weight", (hid, inter), (f"{p}.mlp.down_proj.weight",), "linear"))
    specs.append(ParamSpec("model.norm.weight", (hid,), ("model.norm.weight",), "norm"))
    if not cfg.tie_word_embeddings:
        specs.append(ParamSpec("lm_head.weight", (cfg.vocab_size, hid), ("lm_head.weight",), "linear"))
    return specs
