"""The contract between a model graph and weight conversion: which parameters a graph has, their
shapes, which source (Hugging Face) tensors make each one, and how quantization renames them.

A model file returns a list of ParamSpec in the exact order its TVM module takes its parameters;
conversion streams the sources, concatenates along axis 0, casts or quantizes, and writes the result.
"""

from dataclasses import dataclass

QUANTIZATIONS = ("q0f32", "q0f16", "q4f32_1", "q4f16_1", "q4f32_2", "q4f16_2")
GROUP_SIZE = 32  # 32 weights per scale (and minimum), for every integer format
MAX_INT = 7  # symmetric int4: stored value = round(w / scale) + 7 in [0, 14]
INT8_ZERO = 128  # int8: stored byte = q + 128, so the packed words are plain unsigned bytes

# How one weight is stored (weight_format):
FLOAT = "float"  # q0*: the model dtype
INT4 = "int4"  # q4*_1, MLC's layout: symmetric int4 with one scale per group
INT4_MIN = "int4_min"  # q4*_2 linear layers: int4 with a scale and a minimum per group, w = q * scale + min
#                        (GGUF's Q4_1 block, copied bit for bit from such files)
INT8 = "int8"  # q4*_2 embeddings (and a tied LM head): int8 with one scale per group (GGUF's Q8_0 block)


@dataclass(frozen=True)
class ParamSpec:
    name: str  # our name for the float weight, e.g. "model.layers.0.self_attn.qkv_proj.weight"
    shape: tuple[int, ...]  # float shape
    sources: tuple[str, ...]  # Hugging Face tensor names, concatenated along axis 0 in this order
    kind: str  # "linear" | "embedding" (int4-quantized under q4*), "norm" | "bias" (always float)


def check_quant(quant: str) -> str:
    if quant not in QUANTIZATIONS:
        from mlcbuild_common.errors import MlcbuildError

        raise MlcbuildError(f"unknown quantization '{quant}'", f"use one of {', '.join(QUANTIZATIONS)}")
    return quant


def model_dtype(quant: str) -> str:
    return "float16" if quant.endswith("f16") or "f16_" in quant else "float32"


def is_quantized(quant: str) -> bool:
    return quant.startswith("q4")


def weight_format(quant: str, kind: str) -> str:
    """FLOAT, INT4, INT4_MIN or INT8 for a parameter of `kind` ("linear", "embedding", "norm", "bias")."""
    if not is_quantized(quant) or kind not in ("linear", "embedding"):
        return FLOAT
    if quant.endswith("_1"):
        return INT4
    return INT8 if kind == "embedding" else INT4_MIN


def stored_params(spec: ParamSpec, quant: str) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, dtype) of what is actually stored for `spec` under `quant`.

    INT4 and INT4_MIN: weight [out, in] -> q_weight uint32 [out, in // 8] (nibble j of word k holds column 8k + j),
    q_scale [out, in // GROUP_SIZE] in the model dtype, and for INT4_MIN q_min of the same shape.
    INT8: q_weight uint32 [out, in // 4] (byte j of word k holds column 4k + j) and q_scale.
    """
    dt = model_dtype(quant)
    fmt = weight_format(quant, spec.kind)
    if fmt == FLOAT:
        return [(spec.name, spec.shape, dt)]
    out, inp = spec.shape
    base = spec.name.removesuffix(".weight")
    per_word = 4 if fmt == INT8 else 8
    stored = [(f"{base}.q_weight", (out, inp // per_word), "uint32"), (f"{base}.q_scale", (out, inp // GROUP_SIZE), dt)]
    if fmt == INT4_MIN:
        stored.append((f"{base}.q_min", (out, inp // GROUP_SIZE), dt))
    return stored
