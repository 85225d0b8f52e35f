"""Symmetric int4 group quantization in the layout of builder/models/params.py.

w [out, in] -> q_weight uint32 [out, in // 8] and q_scale [out, in // GROUP_SIZE]:
scale = max|w| of a group / MAX_INT, q = clip(round(w / scale) + MAX_INT, 0, 2 * MAX_INT),
nibble j of word k holds column 8k + j (bits 4j..4j+3).
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from builder.models.params import GROUP_SIZE, MAX_INT

# Rows per block: big enough for numpy to run at memory speed, small enough that the float
# temporaries (a few MB) stay in cache instead of doubling the size of a whole embedding.
_BLOCK_ROWS = 256
_THREADED_MIN = 1 << 22  # elements; below this thread start-up costs more than it saves
_WORKERS = min(4, os.cpu_count() or 1)


def quantize(w: np.ndarray, scale_dtype="float32") -> tuple[np.ndarray, np.ndarray]:
    """Quantize a 2-D float matrix; returns (q_weight uint32, q_scale in scale_dtype)."""
    if w.ndim != 2:
        raise ValueError(f"int4 quantization needs a 2-D matrix, got shape {w.shape}")
    out, inp = w.shape
    if inp % GROUP_SIZE:
        raise ValueError(f"int4 quantization needs the input dim to be a multiple of {GROUP_SIZE}, got {inp}")
    q_weight = np.empty((out, inp // 8), dtype="<u4")
    q_scale = np.empty((out, inp // GROUP_SIZE), dtype=scale_dtype)

    def run(r0):
        r1 = min(r0 + _BLOCK_ROWS, out)
        q_weight[r0:r1], q_scale[r0:r1] = _quantize_block(w[r0:r1], q_scale.dtype)

    starts = range(0, out, _BLOCK_ROWS)
    if w.size < _THREADED_MIN:
        for r0 in starts:
            run(r0)
    else:
        # numpy drops the GIL inside ufuncs, so blocks quantize in parallel; they write disjoint rows
        with ThreadPoolExecutor(_WORKERS) as pool:
            list(pool.map(run, starts))
    return q_weight, q_scale


def _quantize_block(w: np.ndarray, scale_dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    rows, inp = w.shape
    w = np.ascontiguousarray(w, dtype=np.float32)
    g = w.reshape(rows, inp // GROUP_SIZE, GROUP_SIZE)
    # |w| as float bits with the sign cleared: a uint32 max orders them like floats and numpy
    # reduces integers over a short axis ~3x faster than floats
    bits = (w.view(np.uint32) & np.uint32(0x7FFFFFFF)).reshape(g.shape)
    amax = bits.max(axis=-1).view(np.float32)
    # Round the scale to its stored dtype first, so quantization uses exactly the scale the
    # runtime will multiply by (matters for float16 scales).
    scale = (amax / MAX_INT).astype(scale_dtype)
    s32 = scale.astype(np.float32)
    # all-zero groups (and f16 scales that underflow) get scale 0 and q = MAX_INT, i.e. zeros
    inv = np.divide(1.0, s32, out=np.zeros_like(s32), where=s32 > 0)
    q = g * inv[..., None]
    np.rint(q, out=q)
    q += MAX_INT
    np.clip(q, 0, 2 * MAX_INT, out=q)
    nib = q.astype(np.uint8).reshape(rows, inp)
    # Two nibbles per byte (even column low), then four bytes per little-endian word: that puts
    # column 8k + j at bits 4j..4j+3 of word k. Reading byte pairs as little-endian uint16 does
    # the pairing in one pass instead of two strided slices.
    pairs = nib.view("<u2")
    packed = ((pairs & 0xF) | (pairs >> 4)).astype(np.uint8)
    return packed.view("<u4"), scale


def dequantize(q_weight: np.ndarray, q_scale: np.ndarray) -> np.ndarray:
    """Reference inverse of quantize: float32 [out, in]."""
    out, words = q_weight.shape
    shifts = np.arange(0, 32, 4, dtype=np.uint32)
    nib = (q_weight.astype(np.uint32)[..., None] >> shifts) & 0xF
    vals = nib.reshape(out, words * 8).astype(np.float32) - MAX_INT
    scale = np.repeat(q_scale.astype(np.float32), GROUP_SIZE, axis=1)
    return vals * scale
