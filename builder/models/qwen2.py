"""Qwen2 / Qwen2.5 (Qwen2ForCausalLM): bias on the q/k/v projections, no q/k norm."""

from .config import ModelConfig, base_config
from .params import ParamSpec
from .specs import decoder_param_specs

ARCHITECTURES = ("Qwen2ForCausalLM",)


def make_config(hf: dict, where: str = "config.json") -> ModelConfig:
    return base_config(hf, "qwen2", where, qkv_bias=True)


def param_specs(cfg: ModelConfig) -> list[ParamSpec]:
    return decoder_param_specs(cfg)
