"""Group quantization into the integer formats of builder/models/params.py (groups of GROUP_SIZE along a row).

INT4:     scale = max|w| / MAX_INT, q = clip(round(w / scale) + MAX_INT, 0, 2 * MAX_INT)  -> (q_weight, q_scale)
INT4_MIN: scale = (max - min) / 15, q = clip(round((w - min) / scale), 0, 15)             -> (q_weight, q_scale, q_min)
INT8:     scale = max|w| / 127, q = round(w / scale) + INT8_ZERO                          -> (q_weight, q_scale)
Nibble j of word k holds column 8k + j (bits 4j..4j+3); for INT8, byte j of word k holds column 4k + j.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from builder.models.params import GROUP_SIZE, INT4, INT4_MIN, INT8, INT8_ZERO, MAX_INT

# Rows per block: big enough for numpy to run at memory speed, small enough that the float
# temporaries (a few MB) stay in cache instead of doubling the size of a whole embedding.
_BLOCK_ROWS = 256
_THREADED_MIN = 1 << 22  # elements; below this thread start-up costs more than it saves
_WORKERS = min(4, os.cpu_count() or 1)


def quantize(w: np.ndarray, scale_dtype="float32", fmt: str = INT4) -> tuple[np.ndarray, ...]:
    """Quantize a 2-D float matrix; returns the stored arrays of `fmt` (q_weight uint32, q_scale[, q_min])."""
    if w.ndim != 2:
        raise ValueError(f"group quantization needs a 2-D matrix, got shape {w.shape}")
    out, inp = w.shape
    if inp % GROUP_SIZE:
        raise ValueError(f"group quantization needs the input dim to be a multiple of {GROUP_SIZE}, got {inp}")
    block = {INT4: _quantize_block, INT4_MIN: _quantize_block_min, INT8: _quantize_block_int8}[fmt]
    arrays = [np.empty((out, inp // (4 if fmt == INT8 else 8)), dtype="<u4")]
    arrays += [np.empty((out, inp // GROUP_SIZE), dtype=scale_dtype) for _ in range(2 if fmt == INT4_MIN else 1)]

    def run(r0):
        r1 = min(r0 + _BLOCK_ROWS, out)
        for dst, src in zip(arrays, block(w[r0:r1], arrays[1].dtype), strict=True):
            dst[r0:r1] = src

    starts = range(0, out, _BLOCK_ROWS)
    if w.size < _THREADED_MIN:
        for r0 in starts:
            run(r0)
    else:
        # numpy drops the GIL inside ufuncs, so blocks quantize in parallel; they write disjoint rows
        with ThreadPoolExecutor(_WORKERS) as pool:
            list(pool.map(run, starts))
    return tuple(arrays)


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
    return pack_nibbles(q.astype(np.uint8).reshape(rows, inp)), scale


def _quantize_block_min(w: np.ndarray, scale_dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, inp = w.shape
    g = np.ascontiguousarray(w, dtype=np.float32).reshape(rows, inp // GROUP_SIZE, GROUP_SIZE)
    lo, hi = g.min(axis=-1), g.max(axis=-1)
    # the stored (rounded) scale and minimum are the ones quantization uses, as the runtime will
    scale = ((hi - lo) / 15).astype(scale_dtype)
    low = lo.astype(scale_dtype)
    s32, l32 = scale.astype(np.float32), low.astype(np.float32)
    inv = np.divide(1.0, s32, out=np.zeros_like(s32), where=s32 > 0)
    q = np.clip(np.rint((g - l32[..., None]) * inv[..., None]), 0, 15)
    return pack_nibbles(q.astype(np.uint8).reshape(rows, inp)), scale, low


def _quantize_block_int8(w: np.ndarray, scale_dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    rows, inp = w.shape
    g = np.ascontiguousarray(w, dtype=np.float32).reshape(rows, inp // GROUP_SIZE, GROUP_SIZE)
    scale = (np.abs(g).max(axis=-1) / 127).astype(scale_dtype)
    s32 = scale.astype(np.float32)
    inv = np.divide(1.0, s32, out=np.zeros_like(s32), where=s32 > 0)
    q = np.clip(np.rint(g * inv[..., None]), -127, 127) + INT8_ZERO
    return pack_bytes(q.astype(np.uint8).reshape(rows, inp)), scale


def pack_nibbles(nib: np.ndarray) -> np.ndarray:
    """uint8 values 0..15 [rows, n] -> uint32 [rows, n // 8], column 8k + j at bits 4j..4j+3 of word k."""
    # Two nibbles per byte (even column low), then four bytes per little-endian word. Reading byte pairs as
    # little-endian uint16 does the pairing in one pass instead of two strided slices.
    pairs = np.ascontiguousarray(nib).view("<u2")
    return ((pairs & 0xF) | (pairs >> 4)).astype(np.uint8).view("<u4")


def pack_bytes(b: np.ndarray) -> np.ndarray:
    """uint8 [rows, n] -> uint32 [rows, n // 4], column 4k + j in byte j of word k (little-endian)."""
    return np.ascontiguousarray(b, dtype=np.uint8).view("<u4")


def dequantize(*arrays: np.ndarray, fmt: str = INT4) -> np.ndarray:
    """Reference inverse of quantize: float32 [out, in] from the stored arrays of `fmt`."""
    q_weight, q_scale = arrays[0], arrays[1]
    out, words = q_weight.shape
    per_word, bits, mask = (4, 8, 0xFF) if fmt == INT8 else (8, 4, 0xF)
    shifts = np.arange(0, 32, bits, dtype=np.uint32)
    vals = ((q_weight.astype(np.uint32)[..., None] >> shifts) & mask).reshape(out, words * per_word)
    vals = vals.astype(np.float32)
    scale = np.repeat(q_scale.astype(np.float32), GROUP_SIZE, axis=1)
    if fmt == INT4_MIN:
        return vals * scale + np.repeat(arrays[2].astype(np.float32), GROUP_SIZE, axis=1)
    return (vals - (MAX_INT if fmt == INT4 else INT8_ZERO)) * scale
