"""Llama (LlamaForCausalLM): Llama-2/3 and SmolLM2. GQA, optional Llama-3 RoPE scaling, tied or untied head."""

from .config import ModelConfig, base_config
from .params import ParamSpec
from .specs import decoder_param_specs

ARCHITECTURES = ("LlamaForCausalLM",)


def make_config(hf: dict, where: str = "config.json") -> ModelConfig:
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        from mlcbuild_common.errors import MlcbuildError

        raise MlcbuildError(f"{where}: Llama with attention_bias/mlp_bias is not supported", "use a standard Llama")
    return base_config(hf, "llama", where)


def param_specs(cfg: ModelConfig) -> list[ParamSpec]:
    return decoder_param_specs(cfg)
