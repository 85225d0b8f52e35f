"""The contract between a model graph and weight conversion: which parameters a graph has, their
shapes, which source (Hugging Face) tensors make each one, and how quantization renames them.

A model file returns a list of ParamSpec in the exact order its TVM module takes its parameters;
conversion streams the sources, concatenates along axis 0, casts or quantizes, and writes the result.
"""

from dataclasses import dataclass

QUANTIZATIONS = ("q0f32", "q0f16", "q4f32_1", "q4f16_1")
GROUP_SIZE = 32  # int4 group quantization: 32 weights per scale, 8 nibbles per uint32
MAX_INT = 7  # symmetric int4: stored value = round(w / scale) + 7 in [0, 14]


@dataclass(frozen=True)
class ParamSpec:
    name: str  # our name for the float weight, e.g. "model.layers.0.self_attn.qkv_proj.weight"
    shape: tuple[int, ...]  # float shape
    sources: tuple[str, ...]  # Hugging Face tensor names, concatenated along axis 0 in this order
    kind: str  # "linear" | "embedding" (int4-quantized under q4*), "norm" | "bias" (always float)


def check_quant(quant: str) -> str:
    if quant not in QUANTIZATIONS:
        from ..errors import MlcbuildError

        raise MlcbuildError(f"unknown quantization '{quant}'", f"use one of {', '.join(QUANTIZATIONS)}")
    return quant


def model_dtype(quant: str) -> str:
    return "float16" if quant.endswith("f16") or "f16_" in quant else "float32"


def is_quantized(quant: str) -> bool:
    return quant.startswith("q4")


def stored_params(spec: ParamSpec, quant: str) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, dtype) of what is actually stored for `spec` under `quant`.

    int4: weight [out, in] -> q_weight uint32 [out, in // 8] (nibble j of word k holds column 8k + j)
    and q_scale [out, in // GROUP_SIZE] in the model dtype.
    """
    dt = model_dtype(quant)
    if is_quantized(quant) and spec.kind in ("linear", "embedding"):
        out, inp = spec.shape
        base = spec.name.removesuffix(".weight")
        return [(f"{base}.q_weight", (out, inp // 8), "uint32"), (f"{base}.q_scale", (out, inp // GROUP_SIZE), dt)]
    return [(spec.name, spec.shape, dt)]
