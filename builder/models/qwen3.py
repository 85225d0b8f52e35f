"""Qwen3 (Qwen3ForCausalLM): per-head RMSNorm on q and k before RoPE, explicit head_dim, no qkv bias."""

from .config import ModelConfig, base_config
from .params import ParamSpec
from .specs import decoder_param_specs

ARCHITECTURES = ("Qwen3ForCausalLM",)


def make_config(hf: dict, where: str = "config.json") -> ModelConfig:
    return base_config(hf, "qwen3", where, qk_norm=True, qkv_bias=bool(hf.get("attention_bias", False)))


def param_specs(cfg: ModelConfig) -> list[ParamSpec]:
    return decoder_param_specs(cfg)
