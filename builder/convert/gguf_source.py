"""A .gguf file as a weight source: HF-style config from its metadata, HF tensor names, float32 tensors.

GGUF stores tensors under llama.cpp names and often quantized (Q4_1, Q8_0, Q4_K, ...). We memory-map the
file and dequantize one tensor per get(). For the llama architecture llama.cpp's converter reorders
the rows of Q and K (per head, it interleaves the two rotary halves); for gemma3 it stores every norm
weight with Gemma's +1 added. get() undoes both, so tensors equal the original Hugging Face ones (as
transformers' own GGUF loader makes them).
"""

import re
from pathlib import Path

import numpy as np

from builder.convert.source import Source, _tokenizer_via_transformers
from mlcbuild_common.errors import MlcbuildError

ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                 "gemma3": "Gemma3ForCausalLM"}
_ROW_PERMUTED = {"llama"}  # architectures whose Q/K rows llama.cpp reorders
_NORM_PLUS_ONE = {"gemma3"}  # architectures whose norm weights llama.cpp stores as 1 + weight
_FIX = "re-download the file, or pass a complete single-file .gguf"

_GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}
# Gemma 3 has four norms per layer; llama.cpp's ffn_norm is the one before its MLP
_GEMMA3_NAMES = {**_LAYER_NAMES, "post_attention_norm": "post_attention_layernorm",
                 "ffn_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm"}
_LAYER_RE = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")


def hf_name(gguf_name: str, arch: str = "llama") -> str | None:
    """llama.cpp tensor name -> Hugging Face name (None if we do not know it)."""
    m = _LAYER_RE.fullmatch(gguf_name)
    if m:
        part = (_GEMMA3_NAMES if arch == "gemma3" else _LAYER_NAMES).get(m.group(2))
        return f"model.layers.{m.group(1)}.{part}.{m.group(3)}" if part else None
    base, _, kind = gguf_name.rpartition(".")
    return f"{_GLOBAL_NAMES[base]}.{kind}" if base in _GLOBAL_NAMES else None


def unpermute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's Q/K reordering.

    Within each head HF keeps the rotary pairs as (first half, second half); llama.cpp stores them
    interleaved, row 2i = HF row i and row 2i+1 = HF row half + i. Viewing the head's rows as
    [half, 2] and reading them back as [2, half] restores HF order. Works for weights and biases.
    """
    rows = w.shape[0]
    half = rows // n_head // 2
    return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


class GGUFSource(Source):
    def __init__(self, path: Path):
        self.path = Path(path)
        arch = header_architecture(self.path)  # from the header alone: a wrong file fails in milliseconds
        if arch not in ARCHITECTURES:
            raise MlcbuildError(f"{self.path.name}: GGUF architecture {arch!r} is not supported",
                                f"GGUF files of {', '.join(ARCHITECTURES)} are; Hugging Face folders of "
                                f"{', '.join(_hf_archs())}")
        self._reader = _open_reader(self.path)
        # Keep the scalar metadata and drop the reader's parsed fields: the vocabulary and merges
        # alone are ~100 MB of small Python objects (transformers re-reads them for the tokenizer).
        self._metadata = {k: f.contents() for k, f in self._reader.fields.items() if len(f.data) <= 64}
        self._reader.fields.clear()
        self.arch = arch
        if (self._meta("split.count") or 1) > 1:
            raise MlcbuildError(f"{self.path.name} is one part of a split GGUF",
                                "merge the parts with llama.cpp's gguf-split --merge first")
        self._tensors = {}
        for t in self._reader.tensors:
            if t.name == "rope_freqs.weight":
                raise MlcbuildError(f"{self.path.name} uses per-frequency rope scaling (rope_freqs)",
                                    "convert from the Hugging Face safetensors model instead")
            self._tensors[hf_name(t.name, arch) or t.name] = t
        self.config = self._build_config()

    def _meta(self, key, default=None):
        value = self._metadata.get(key, default)
        if isinstance(value, float):
            value = float(str(np.float32(value)))  # stored as float32: 1e-5 reads back as 9.99999974e-06
        return value

    def _build_config(self) -> dict:
        a = self.arch
        heads = self._meta(f"{a}.attention.head_count")
        kv_heads = self._meta(f"{a}.attention.head_count_kv", heads)
        hidden = self._meta(f"{a}.embedding_length")
        if not (heads and hidden and isinstance(heads, int) and isinstance(kv_heads, int)):
            raise MlcbuildError(f"{self.path.name}: GGUF metadata lacks head counts / embedding length", _FIX)
        embed = self._tensors.get("model.embed_tokens.weight")
        vocab = int(embed.shape[1]) if embed is not None else self._meta(f"{a}.vocab_size")
        theta = self._meta(f"{a}.rope.freq_base", 10000.0)
        scaling = None
        if self._meta(f"{a}.rope.scaling.type") not in (None, "none"):
            scaling = {"rope_type": self._meta(f"{a}.rope.scaling.type"),
                       "factor": self._meta(f"{a}.rope.scaling.factor"),
                       "original_max_position_embeddings": self._meta(f"{a}.rope.scaling.original_context_length")}
        cfg = {
            "architectures": [ARCHITECTURES[a]],
            "model_type": a,
            "hidden_size": hidden,
            "num_hidden_layers": self._meta(f"{a}.block_count"),
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "head_dim": self._meta(f"{a}.attention.key_length") or hidden // heads,
            "intermediate_size": self._meta(f"{a}.feed_forward_length"),
            "vocab_size": vocab,
            "rms_norm_eps": self._meta(f"{a}.attention.layer_norm_rms_epsilon", 1e-6),
            "rope_theta": theta,
            "rope_scaling": scaling,
            "rope_parameters": {"rope_theta": theta, "rope_type": "default", **(scaling or {})},
            "max_position_embeddings": self._meta(f"{a}.context_length"),
            "tie_word_embeddings": "lm_head.weight" not in self._tensors,
            "attention_bias": "model.layers.0.self_attn.q_proj.bias" in self._tensors,
            "hidden_act": "silu",
            "bos_token_id": self._meta("tokenizer.ggml.bos_token_id"),
            "eos_token_id": self._meta("tokenizer.ggml.eos_token_id"),
            "pad_token_id": self._meta("tokenizer.ggml.padding_token_id"),
        }
        if a == "gemma3":  # what llama.cpp assumes for gemma3 files and does not store
            cfg.update({
                "hidden_activation": "gelu_pytorch_tanh", "hidden_act": "gelu_pytorch_tanh",
                "sliding_window": self._meta(f"{a}.attention.sliding_window"),
                "sliding_window_pattern": 6,  # every 6th layer global
                "rope_local_base_freq": self._meta(f"{a}.rope.freq_base_swa", 10000.0),
                # llama.cpp's attention scale: 1/sqrt(head_dim), except the 62-layer (27B) model's 1/sqrt(hidden/heads)
                "query_pre_attn_scalar": hidden // heads if cfg["num_hidden_layers"] == 62 else cfg["head_dim"],
            })
        return cfg

    def names(self) -> list[str]:
        return list(self._tensors)

    def get(self, name: str) -> np.ndarray:
        if name == "lm_head.weight" and name not in self._tensors and self.config["tie_word_embeddings"]:
            name = "model.embed_tokens.weight"  # tied: llama.cpp writes no output tensor
        t = self._tensors.get(name)
        if t is None:
            raise self._missing(name)
        try:
            w = _dequantize(t)
        except (NotImplementedError, ValueError) as e:
            raise MlcbuildError(f"{self.path.name}: cannot dequantize {t.name} ({t.tensor_type.name}): {e}",
                                "use a GGUF with standard quant types, or the safetensors model") from None
        if self.arch in _ROW_PERMUTED:
            if ".self_attn.q_proj." in name:
                w = unpermute_rows(w, self.config["num_attention_heads"])
            elif ".self_attn.k_proj." in name:
                w = unpermute_rows(w, self.config["num_key_value_heads"])
        if self.arch in _NORM_PLUS_ONE and name.endswith("norm.weight"):
            w = w - np.float32(1.0)
        return w

    def get_native(self, name: str, fmt: str) -> tuple[np.ndarray, ...] | None:
        """The stored arrays of `fmt` copied bit for bit from the file's blocks, when the tensor is stored in the
        block type that `fmt` is (Q4_1 for INT4_MIN, Q8_0 for INT8); None otherwise (convert from float)."""
        from gguf import GGMLQuantizationType as T

        from builder.convert.quantize import pack_bytes, pack_nibbles
        from builder.models.params import INT4_MIN, INT8

        if name == "lm_head.weight" and name not in self._tensors and self.config["tie_word_embeddings"]:
            name = "model.embed_tokens.weight"
        t = self._tensors.get(name)
        want = {INT4_MIN: (T.Q4_1, 20), INT8: (T.Q8_0, 34)}.get(fmt)
        if t is None or want is None or t.tensor_type != want[0] or len(t.shape) != 2:
            return None
        rows, cols = int(t.shape[1]), int(t.shape[0])
        blocks = np.asarray(t.data).reshape(rows, cols // 32, want[1])
        scale = np.ascontiguousarray(blocks[..., 0:2]).view("<f2")[..., 0]
        if fmt == INT8:  # d, then 32 signed bytes
            q = (blocks[..., 2:34].view(np.int8).astype(np.int16) + 128).astype(np.uint8)
            arrays = [pack_bytes(q.reshape(rows, cols)), scale]
        else:  # d, m, then 16 bytes: element i in the low nibble of byte i, element i + 16 in its high nibble
            low = np.ascontiguousarray(blocks[..., 2:4]).view("<f2")[..., 0]
            qs = blocks[..., 4:20]
            q = np.concatenate([qs & 0xF, qs >> 4], axis=-1)
            arrays = [pack_nibbles(q.reshape(rows, cols)), scale, low]
        if self.arch in _ROW_PERMUTED:
            heads = {".self_attn.q_proj.": "num_attention_heads", ".self_attn.k_proj.": "num_key_value_heads"}
            for part, key in heads.items():
                if part in name:
                    arrays = [unpermute_rows(a, self.config[key]) for a in arrays]
        return tuple(np.ascontiguousarray(a) for a in arrays)

    def write_tokenizer(self, dst_dir: Path) -> list[str]:
        Path(dst_dir).mkdir(parents=True, exist_ok=True)
        return _tokenizer_via_transformers(Path(dst_dir), str(self.path.parent), gguf_file=self.path.name)


def _dequantize(t) -> np.ndarray:
    """float32 array of one GGUF tensor, numpy dim order (GGUF lists dims fastest-first).

    Done in row blocks into a preallocated result: dequantizing a whole matrix at once makes
    float temporaries about twice the size of the result.
    """
    from gguf.quants import dequantize

    shape = [int(d) for d in reversed(t.shape)]
    data = t.data  # memmap view; quantized types are [rows, bytes per row], whole blocks per row
    if data.ndim < 2 or len(shape) < 2:
        return np.asarray(dequantize(data, t.tensor_type), dtype=np.float32).reshape(shape)
    out = np.empty(shape, dtype=np.float32)
    flat = out.reshape(-1, shape[-1])
    rows = data.reshape(-1, data.shape[-1])
    step = max(1, (4 << 20) // (shape[-1] * 4))  # ~4 MB of output per block
    for r in range(0, rows.shape[0], step):
        flat[r:r + step] = dequantize(rows[r:r + step], t.tensor_type)
    return out


_GGUF_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # value type -> bytes
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def header_architecture(path: Path) -> str | None:
    """`general.architecture` read from the GGUF header's key-value section only (no tensor is touched), or None
    when the header does not have it. Raises MlcbuildError for a file that is not GGUF or ends inside the header."""
    import struct

    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; the reads are sequential and few
    except OSError as e:
        raise MlcbuildError(f"cannot read {path}: {e.strerror}", _FIX) from None
    with f:
        def take(n: int) -> bytes:
            b = f.read(n)
            if len(b) != n:
                raise MlcbuildError(f"unreadable GGUF {path} (the header is cut short)", _FIX)
            return b

        magic = take(4)
        if magic != b"GGUF":
            raise MlcbuildError(f"{path} is not a GGUF file (starts with {magic!r}, expected b'GGUF')", _FIX)
        version, _, n_kv = struct.unpack("<IQQ", take(20))
        if version < 2:
            raise MlcbuildError(f"{path}: GGUF version {version} is too old", "re-convert it with a current llama.cpp")

        def string() -> str:
            (n,) = struct.unpack("<Q", take(8))
            if n > 1 << 20:
                raise MlcbuildError(f"unreadable GGUF {path} (a {n}-byte string in the header)", _FIX)
            return take(n).decode("utf-8", "replace")

        def skip(vtype: int) -> None:
            if vtype == _GGUF_STRING:
                string()
            elif vtype == _GGUF_ARRAY:
                etype, count = struct.unpack("<IQ", take(12))
                if etype in _GGUF_SCALAR:
                    f.seek(_GGUF_SCALAR[etype] * count, 1)
                else:
                    for _ in range(count):
                        skip(etype)
            elif vtype in _GGUF_SCALAR:
                take(_GGUF_SCALAR[vtype])
            else:
                raise MlcbuildError(f"unreadable GGUF {path} (unknown value type {vtype})", _FIX)

        for _ in range(n_kv):
            key = string()
            (vtype,) = struct.unpack("<I", take(4))
            if key == "general.architecture" and vtype == _GGUF_STRING:
                return string()
            skip(vtype)
    return None


def _hf_archs() -> list[str]:
    from builder.models import ARCHITECTURES as HF

    return sorted(HF)


def _open_reader(path: Path):
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise MlcbuildError(f"cannot read {path}: {e.strerror}", _FIX) from None
    if magic != b"GGUF":
        raise MlcbuildError(f"{path} is not a GGUF file (starts with {magic!r}, expected b'GGUF')", _FIX)
    from gguf import GGUFReader

    try:
        return GGUFReader(path, "r")
    except Exception as e:  # the reader raises ValueError/IndexError/struct errors on damaged files
        raise MlcbuildError(f"unreadable GGUF {path} (truncated or damaged: {type(e).__name__}: {e})",
                            _FIX) from None
