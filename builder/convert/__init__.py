"""Weight conversion for `mlcbuild make`: read HF safetensors or GGUF, cast/quantize, write the MLC tensor cache."""

from builder.convert.convert import convert
from builder.convert.reader import open_source
from builder.convert.source import Source
from builder.convert.tensor_cache import TensorCacheWriter, load_tensor_cache, load_tensor_cache_tvm

__all__ = ["Source", "TensorCacheWriter", "convert", "load_tensor_cache", "load_tensor_cache_tvm", "open_source"]
