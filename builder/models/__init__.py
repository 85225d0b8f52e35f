"""Model graphs, one file per architecture, registered by their Hugging Face `architectures` name."""

__all__ = ["ARCHITECTURES", "QUANTIZATIONS", "ModelConfig", "ParamSpec", "arch_module", "build_graph", "check_quant",
           "model_config", "param_specs", "stored_params"]

from types import ModuleType

from mlcbuild_common.errors import MlcbuildError

from . import gemma3, llama, qwen2, qwen3
from .config import ModelConfig
from .params import QUANTIZATIONS, ParamSpec, check_quant, stored_params

ARCHITECTURES: dict[str, ModuleType] = {a: m for m in (llama, qwen2, qwen3, gemma3) for a in m.ARCHITECTURES}


def arch_module(hf_config: dict, where: str = "config.json") -> ModuleType:
    archs = hf_config.get("architectures") or []
    for a in archs:
        if a in ARCHITECTURES:
            return ARCHITECTURES[a]
    raise MlcbuildError(f"{where}: unsupported architecture {archs or '(none given)'}",
                        f"supported: {', '.join(sorted(ARCHITECTURES))}")


def model_config(hf_config: dict, where: str = "config.json") -> ModelConfig:
    return arch_module(hf_config, where).make_config(hf_config, where)


def param_specs(cfg: ModelConfig) -> list[ParamSpec]:
    return ARCHITECTURES[cfg.arch].param_specs(cfg)


def build_graph(cfg: ModelConfig, quant: str, target):
    """(IRModule, param names in ABI order, metadata) for `cfg` under `quant`, for `target`."""
    from .abi import export
    from .decoder import CausalLM
    from .sampling import add_sampling

    check_quant(quant)
    if quant.startswith("q4") and (cfg.hidden_size % 32 or cfg.intermediate_size % 32
                                   or (cfg.num_attention_heads * cfg.head_dim) % 32):
        raise MlcbuildError(f"{quant} needs hidden, intermediate and head sizes divisible by 32",
                            "use q0f32 or q0f16 for this model")
    arch = ARCHITECTURES[cfg.arch]
    model = CausalLM(cfg, quant, target, body=arch.body()) if hasattr(arch, "body") else CausalLM(cfg, quant, target)
    mod, params, meta = export(model)
    expected = [n for s in param_specs(cfg) for n, _, _ in stored_params(s, quant)]
    names = [n for n, _ in params]
    if names != expected:  # the converter writes `expected`; the graph must take exactly that
        raise AssertionError(f"graph params differ from specs: {set(names) ^ set(expected)}")
    return add_sampling(mod, cfg.vocab_size, gpu=target.kind.name != "llvm"), names, meta
