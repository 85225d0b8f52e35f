"""Open a model's weights: a Hugging Face folder (safetensors) or a .gguf file, as a Source."""

from pathlib import Path

from builder.convert.gguf_source import GGUFSource
from builder.convert.source import _FIX_DIR, HFSource, Source
from mlcbuild_common.errors import MlcbuildError


def open_source(path) -> Source:
    path = Path(path)
    if path.is_file() and path.suffix == ".gguf":
        return GGUFSource(path)
    if path.is_dir():
        if (path / "config.json").is_file():
            return HFSource(path)
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return GGUFSource(ggufs[0])
        raise MlcbuildError(f"no config.json in {path}", _FIX_DIR)
    if not path.exists():
        raise MlcbuildError(f"model path {path} does not exist", _FIX_DIR)
    raise MlcbuildError(f"{path} is neither a model directory nor a .gguf file", _FIX_DIR)
