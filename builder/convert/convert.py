"""Weight conversion: ParamSpecs + a Source -> tensor cache (params_shard_*.bin + tensor-cache.json).

One spec at a time: fetch its source tensors, stack them, cast or quantize (or copy a GGUF's blocks bit for bit
when they are stored in the target format), write, free. Peak memory is about one (fused) tensor plus its
converted copy, whatever the model size.
"""

import math
import time
from pathlib import Path

import numpy as np

from builder.convert.quantize import quantize
from builder.convert.source import Source
from builder.convert.tensor_cache import SHARD_BYTES, TensorCacheWriter
from builder.models.params import (
    FLOAT,
    GROUP_SIZE,
    INT4_MIN,
    INT8,
    ParamSpec,
    check_quant,
    model_dtype,
    stored_params,
    weight_format,
)
from mlcbuild_common.errors import MlcbuildError
from mlcbuild_common.progress import bar


def gather(source: Source, spec: ParamSpec) -> np.ndarray:
    """The float32 weight for `spec`: its sources stacked along axis 0, shape-checked."""
    fix = "the checkpoint does not match the model config (wrong --model, or config.json edited?)"
    if len(spec.sources) == 1:
        w = source.get(spec.sources[0])
        if tuple(w.shape) != tuple(spec.shape):
            raise MlcbuildError(f"{spec.name}: source {spec.sources[0]} has shape {tuple(w.shape)}, "
                                f"the model expects {tuple(spec.shape)}", fix)
        return w
    # Fill a preallocated array part by part, so only one source part is alive next to it.
    out = np.empty(spec.shape, dtype=np.float32)
    row = 0
    for name in spec.sources:
        part = source.get(name)
        end = row + (part.shape[0] if part.ndim else 0)
        if part.ndim == 0 or tuple(part.shape[1:]) != tuple(spec.shape[1:]) or end > spec.shape[0]:
            raise MlcbuildError(f"{spec.name}: source {name} has shape {tuple(part.shape)}, which does not "
                                f"stack into {tuple(spec.shape)} from {', '.join(spec.sources)}", fix)
        out[row:end] = part
        row = end
        del part
    if row != spec.shape[0]:
        raise MlcbuildError(f"{spec.name}: sources {', '.join(spec.sources)} stack to {row} rows, "
                            f"the model expects {spec.shape[0]}", fix)
    return out


def native(source: Source, spec: ParamSpec, quant: str) -> tuple[np.ndarray, ...] | None:
    """The stored arrays copied from the source's own blocks (lossless: GGUF Q4_1 -> INT4_MIN, Q8_0 -> INT8), when
    every source tensor of `spec` is stored that way; else None and the weight is quantized from float."""
    fmt = weight_format(quant, spec.kind)
    get = getattr(source, "get_native", None)
    if fmt not in (INT4_MIN, INT8) or get is None:
        return None
    parts = [get(name, fmt) for name in spec.sources]
    if any(p is None for p in parts):
        return None
    return tuple(np.concatenate([p[i] for p in parts]) if len(parts) > 1 else parts[0][i]
                 for i in range(len(parts[0])))


def encode(spec: ParamSpec, w: np.ndarray | None, quant: str,
           arrays: tuple[np.ndarray, ...] | None = None) -> list[tuple[str, np.ndarray]]:
    """The arrays stored for one spec under `quant`, named and typed as params.stored_params says: quantized from
    the float weight `w`, or `arrays` already in the stored format (native blocks; scales cast to the model dtype)."""
    plan = stored_params(spec, quant)
    dtype = model_dtype(quant)
    fmt = weight_format(quant, spec.kind)
    if arrays is not None:
        arrays = (arrays[0], *(a.astype(dtype) for a in arrays[1:]))
    elif fmt != FLOAT:
        if w.ndim != 2 or w.shape[1] % GROUP_SIZE:
            raise MlcbuildError(f"{spec.name}: shape {w.shape} cannot be group-quantized (input dim must be a "
                                f"multiple of {GROUP_SIZE})", "use q0f16 or q0f32 for this model")
        arrays = quantize(w, scale_dtype=dtype, fmt=fmt)
    else:
        arrays = (w.astype(dtype, copy=False),)
    out = []
    for (name, shape, dt), arr in zip(plan, arrays, strict=True):
        # the contract and what we computed must agree, or the model would read garbage
        assert tuple(arr.shape) == tuple(shape) and arr.dtype == np.dtype(dt), (name, arr.shape, arr.dtype)
        out.append((name, arr))
    return out


def convert(source: Source, specs: list[ParamSpec], quant: str, out_dir: Path, show_progress: bool = True,
            shard_bytes: int = SHARD_BYTES) -> dict:
    """Write every spec's stored tensors, in spec order; returns size and timing stats."""
    check_quant(quant)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise MlcbuildError("duplicate parameter names in the model's ParamSpec list", "fix the model definition")
    start = time.perf_counter()
    n_params = sum(math.prod(s.shape) for s in specs)
    n_stored = n_native = 0
    with TensorCacheWriter(Path(out_dir), shard_bytes=shard_bytes) as writer, \
            bar(total=len(specs), desc=f"convert {quant}", unit="tensor", enabled=show_progress) as pbar:
        for spec in specs:
            arrays = native(source, spec, quant)
            w = gather(source, spec) if arrays is None else None
            n_native += arrays is not None
            for name, arr in encode(spec, w, quant, arrays):
                writer.add(name, arr)
                n_stored += 1
            del w, arr, arrays  # drop this tensor before fetching the next one
            pbar.update(1)
        metadata = {"ParamSize": n_params, "ParamBytes": writer.param_bytes,
                    "BitsPerParam": round(writer.param_bytes * 8 / n_params, 4) if n_params else 0.0}
        index = writer.close(metadata)
    return {"quantization": quant, "params": n_params, "bytes": writer.param_bytes, "tensors": n_stored,
            "native": n_native,            "shards": len(index["records"]), "bits_per_param": metadata["BitsPerParam"],
            "seconds": round(time.perf_counter() - start, 3)}
