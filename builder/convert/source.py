"""Where weights come from: a Hugging Face model directory (config.json + safetensors) or a .gguf file.

Every source hands out one float32 tensor at a time under its Hugging Face name, so conversion never
holds more than the tensor it is working on.
"""

import json
import shutil
from pathlib import Path

import numpy as np

from mlcbuild_common.errors import MlcbuildError

# what a model directory may carry for its tokenizer; copied as-is when present
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "chat_template.json")
_FIX_DIR = "point at a Hugging Face model directory with config.json and *.safetensors, or at a .gguf file"
# where multimodal checkpoints (Gemma 3) keep the language model: transformers >= 4.52 and older saves
_TEXT_MODEL_PREFIXES = ("model.language_model.", "language_model.model.")
_SAFETENSORS_DTYPES = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"}  # safetensors' names


class Source:
    """Base interface: config (HF-style dict), names(), get(name) -> float32, write_tokenizer(dir)."""

    path: Path
    config: dict

    def names(self) -> list[str]:
        raise NotImplementedError

    def get(self, name: str) -> np.ndarray:
        raise NotImplementedError

    def write_tokenizer(self, dst_dir: Path) -> list[str]:
        raise NotImplementedError

    def _missing(self, name: str):
        return MlcbuildError(f"tensor {name} not found in {self.path}",
                             "the checkpoint does not match this model architecture; check --model")


def normalize_config(cfg: dict) -> dict:
    """Fill the keys the model graphs read from older/newer spellings (transformers 5 nests rope settings)."""
    cfg = dict(cfg)
    # multimodal wrappers (Gemma3ForConditionalGeneration) keep the language model's fields in text_config
    for k, v in (cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else {}).items():
        cfg.setdefault(k, v)
    rope = cfg.get("rope_parameters") or {}
    if "rope_theta" not in cfg and "rope_theta" in rope:
        cfg["rope_theta"] = rope["rope_theta"]
    if "rope_scaling" not in cfg:
        kind = rope.get("rope_type", rope.get("type", "default"))
        cfg["rope_scaling"] = None if kind == "default" else {k: v for k, v in rope.items() if k != "rope_theta"}
    cfg.setdefault("tie_word_embeddings", str(cfg.get("model_type", "")).startswith("gemma"))  # Gemma ties by default
    if "head_dim" not in cfg and cfg.get("hidden_size") and cfg.get("num_attention_heads"):
        cfg["head_dim"] = cfg["hidden_size"] // cfg["num_attention_heads"]
    cfg.setdefault("num_key_value_heads", cfg.get("num_attention_heads"))
    return cfg


class HFSource(Source):
    def __init__(self, path: Path):
        self.path = path
        try:
            self.config = normalize_config(json.loads((path / "config.json").read_text()))
        except (ValueError, OSError) as e:
            raise MlcbuildError(f"unreadable {path / 'config.json'}: {e}", "re-download the model") from None
        self._where: dict[str, Path] = {}  # tensor name -> its file
        self._dtype: dict[str, str] = {}  # tensor name -> safetensors dtype ("F32", "BF16", ...)
        for f in self._weight_files():
            for name, dtype in _tensor_dtypes(f).items():
                self._where[name] = f
                self._dtype[name] = dtype
        self._alias = {}
        for prefix in _TEXT_MODEL_PREFIXES:  # a multimodal folder: its language model's tensors under our names
            if "model.embed_tokens.weight" not in self._where and f"{prefix}embed_tokens.weight" in self._where:
                self._alias.update({f"model.{n[len(prefix):]}": n for n in self._where if n.startswith(prefix)})
        if self.config.get("tie_word_embeddings") and "lm_head.weight" not in self._where:
            # tied checkpoints often omit lm_head
            self._alias["lm_head.weight"] = self._alias.get("model.embed_tokens.weight", "model.embed_tokens.weight")

    def _weight_files(self) -> list[Path]:
        index = self.path / "model.safetensors.index.json"
        if index.is_file():
            try:
                files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (ValueError, KeyError, OSError) as e:
                raise MlcbuildError(f"bad {index}: {e}", "re-download the model") from None
            for name in files:
                if not (self.path / name).is_file():
                    raise MlcbuildError(f"{index.name} lists {name}, which is missing from {self.path}",
                                        "re-download the model")
            return [self.path / n for n in files]
        files = sorted(self.path.glob("*.safetensors"))
        if not files:
            raise MlcbuildError(f"no *.safetensors in {self.path}",
                                "only safetensors weights are supported; re-save with safe_serialization=True")
        return files

    def names(self) -> list[str]:
        return list(self._where)

    def get(self, name: str) -> np.ndarray:
        name = self._alias.get(name, name)
        if name not in self._where:
            raise self._missing(name)
        file = self._where[name]
        from safetensors import safe_open

        # numpy has no bfloat16: torch reads those and widens them
        bf16 = self._dtype[name] == "BF16"
        with safe_open(str(file), framework="pt" if bf16 else "numpy") as f:
            t = f.get_tensor(name)
        return t.float().numpy() if bf16 else t.astype(np.float32, copy=False)

    def write_tokenizer(self, dst_dir: Path) -> list[str]:
        dst_dir = Path(dst_dir)
        dst_dir.mkdir(parents=True, exist_ok=True)
        present = [n for n in TOKENIZER_FILES if (self.path / n).is_file()]
        if "tokenizer.json" not in present:
            return _tokenizer_via_transformers(dst_dir, str(self.path))
        for n in present:
            shutil.copyfile(self.path / n, dst_dir / n)
        fold_chat_template(dst_dir)
        return sorted(set(present) | {n for n in ("tokenizer_config.json",) if (dst_dir / n).is_file()})


def _tensor_dtypes(file: Path) -> dict[str, str]:
    """{tensor name: dtype} of one safetensors file, whose header safetensors itself validates (offsets, sizes,
    JSON); nothing but the header is read."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            out = {name: f.get_slice(name).get_dtype() for name in f.keys()}
    except SafetensorError as e:
        raise MlcbuildError(f"{file} is not a valid safetensors file ({e})",
                            "the file is truncated or corrupt; re-download it") from None
    for name, dtype in out.items():
        if dtype not in _SAFETENSORS_DTYPES:
            raise MlcbuildError(f"{file}: tensor {name} has unsupported dtype {dtype}",
                                "convert the checkpoint to float16/bfloat16/float32 safetensors")
    return out


def fold_chat_template(dst_dir: Path) -> None:
    """Put the chat template inside tokenizer_config.json (transformers 5 keeps it in chat_template.jinja;
    older readers and mlc-chat-config generation look for it in the config)."""
    cfg_path, jinja = dst_dir / "tokenizer_config.json", dst_dir / "chat_template.jinja"
    if not jinja.is_file():
        return
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    if "chat_template" not in cfg:
        cfg["chat_template"] = jinja.read_text()
        cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def _tokenizer_via_transformers(dst_dir: Path, src: str, **kw) -> list[str]:
    """Let transformers build the tokenizer (from sentencepiece/vocab files or GGUF metadata) and save it."""
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(src, **kw)
    except Exception as e:  # transformers raises many types here; all mean "no usable tokenizer"
        raise MlcbuildError(f"cannot load a tokenizer from {src}: {str(e).splitlines()[0] if str(e) else e!r}",
                            "add tokenizer.json (and tokenizer_config.json) to the model") from None
    written = [Path(p).name for p in tok.save_pretrained(str(dst_dir))]
    cfg_path = dst_dir / "tokenizer_config.json"
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        # drop save-time details that depend on where it was loaded from, keep the output reproducible
        for k in ("is_local", "local_files_only", "name_or_path"):
            cfg.pop(k, None)
        if cfg.get("tokenizer_class") == "TokenizersBackend":
            cfg["tokenizer_class"] = "PreTrainedTokenizerFast"  # transformers 5's name; 4.x only knows this one
        cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    fold_chat_template(dst_dir)
    if "tokenizer.json" not in written:
        raise MlcbuildError(f"transformers could not make a tokenizer.json for {src}",
                            "add tokenizer.json to the model (WebLLM needs it)")
    return sorted(set(written))
