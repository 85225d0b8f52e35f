"""Hand-off frames: one latent hand-off on the wire between agents on different machines (docs/wire.md).

A frame carries one edge's block after its outer link ([rows, dim] in the receiver's hidden size), with what the
receiver needs to refuse it before it reaches a model: the sha256 of the links file both sides run, the sender's
weights sha256 (its build's manifest source.sha256, checked against the links file's record for that agent), the
edge, round, shape, dtype, a sequence number and a CRC-32 of everything before it. web/src/mas/wire.js is the
same format in the browser; tests/test_wire.py checks that each side reads the other's frames.
"""

import hashlib
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from mlcbuild_common.errors import MlcbuildError

MAGIC = b"MLCH"
VERSION = 1
DTYPES = {"f32": (1, "<f4"), "f16": (2, "<f2")}  # name -> (code on the wire, numpy dtype)
CODES = {code: name for name, (code, _) in DTYPES.items()}
# magic, version, dtype, round, seq, rows, reserved, dim, links sha256, weights sha256, len(src), len(dst), len(slot)
HEADER = struct.Struct("<4sBBHIHHI32s32sBBBx")
MAX_FRAME = 16 << 20  # bytes: far above any real hand-off (16 rows of 4096 f32 are 256 KiB)
MAX_ROWS = 4096
MAX_DIM = 1 << 16


class FrameError(MlcbuildError):
    """A frame the receiver refuses: it never reaches a model."""


@dataclass(frozen=True)
class Frame:
    src: str
    dst: str
    slot: str
    round: int
    seq: int
    block: np.ndarray  # [rows, dim] float32 (f16 frames are widened on read)
    links_sha256: str
    weights_sha256: str
    dtype: str = "f32"

    @property
    def edge(self) -> str:
        return f"{self.src}->{self.dst}:{self.slot}"


def file_sha256(path) -> str:
    """The links file's identity on the wire: sha256 of its bytes (what `sha256sum` prints)."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _hex32(value: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value or "0" * 64)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise FrameError(f"hand-off frame: {what} {value[:16]!r} is not a sha256 hex digest", "pass 64 hex digits")
    return raw


def encode(f: Frame) -> bytes:
    """The frame's bytes; the block is written in f.dtype (f16 halves the payload)."""
    if f.dtype not in DTYPES:
        raise FrameError(f"hand-off frame: dtype {f.dtype!r} is not supported", "use f32 or f16")
    block = np.asarray(f.block, dtype=np.float32)
    if block.ndim != 2 or not (1 <= block.shape[0] <= MAX_ROWS and 1 <= block.shape[1] <= MAX_DIM):
        raise FrameError(f"hand-off frame: block of shape {list(block.shape)} cannot be sent",
                         f"send [rows <= {MAX_ROWS}, dim <= {MAX_DIM}]")
    names = [s.encode() for s in (f.src, f.dst, f.slot)]
    if any(not 1 <= len(n) <= 255 for n in names):
        raise FrameError(f"hand-off frame: edge {f.edge!r} has a name of 0 or more than 255 bytes", "rename the role")
    code, np_dtype = DTYPES[f.dtype]
    if not np.isfinite(block).all() or (f.dtype == "f16" and np.abs(block).max() > 65504):
        raise FrameError(f"hand-off frame: edge {f.edge} holds values that {f.dtype} cannot carry",
                         "send f32 frames")
    head = HEADER.pack(MAGIC, VERSION, code, f.round, f.seq & 0xFFFFFFFF, block.shape[0], 0, block.shape[1],
                       _hex32(f.links_sha256, "links sha256"), _hex32(f.weights_sha256, "weights sha256"),
                       *(len(n) for n in names))
    body = head + b"".join(names) + block.astype(np_dtype).tobytes()
    return body + struct.pack("<I", zlib.crc32(body))


def frame_size(edge: str, rows: int, dim: int, dtype: str = "f32") -> int:
    """The bytes of one frame for `edge` ("src->dst:slot") carrying rows x dim values."""
    src, rest = edge.split("->", 1)
    return HEADER.size + len((src + rest.replace(":", "", 1)).encode()) + rows * dim * (2 if dtype == "f16" else 4) + 4


def peek_size(buf: bytes) -> int | None:
    """The total size the header declares (None while fewer bytes than a header have arrived)."""
    if len(buf) < HEADER.size:
        return None
    _, _, code, _, _, rows, _, dim, _, _, a, b, c = HEADER.unpack_from(buf)
    item = 2 if code == DTYPES["f16"][0] else 4
    return HEADER.size + a + b + c + rows * dim * item + 4


def _refuse(what: str, fix: str):
    raise FrameError(f"hand-off frame refused: {what}", fix)


def decode(buf: bytes, *, links_sha256: str, weights: dict[str, str], expect: dict[str, tuple[int, int]],
           round: int | None = None) -> Frame:
    """Read and check one frame. `weights`: agent name -> the weights sha256 the links file records for it ("" or
    missing: not checked); `expect`: edge key -> (rows, dim) of the hand-offs this side waits for; `round`: the
    round it waits for. Raises FrameError, naming what is wrong, for any frame that must not reach a model."""
    n = len(buf)
    if n < HEADER.size + 4:
        _refuse(f"truncated: {n} bytes, a frame has at least {HEADER.size + 4}", "the connection dropped mid-frame; "
                "run again")
    magic, version, code, rnd, seq, rows, _, dim, lsha, wsha, a, b, c = HEADER.unpack_from(buf)
    if magic != MAGIC:
        _refuse(f"not a hand-off frame (starts with {magic!r})", "connect to an mlcbuild peer")
    if version != VERSION:
        _refuse(f"format version {version}, this side reads {VERSION}", "run the same mlcbuild version on both sides")
    if code not in CODES:
        _refuse(f"dtype code {code} is unknown", "send f32 or f16 frames")
    size = peek_size(buf)
    if size > MAX_FRAME or rows > MAX_ROWS or dim > MAX_DIM:
        _refuse(f"oversized: declares {rows} x {dim} ({size} bytes), at most {MAX_FRAME} bytes",
                "send one hand-off per frame")
    if n < size:
        _refuse(f"truncated: {n} of {size} bytes", "the connection dropped mid-frame; run again")
    if n > size:
        _refuse(f"{n - size} bytes after the frame's end", "send one frame per message")
    if struct.unpack_from("<I", buf, size - 4)[0] != zlib.crc32(memoryview(buf)[:size - 4]):
        _refuse("bad checksum: the frame was corrupted on the way", "run again; check the link between the peers")
    at, names = HEADER.size, []
    for k in (a, b, c):
        try:
            names.append(bytes(buf[at:at + k]).decode())
        except UnicodeDecodeError:
            _refuse("edge names are not UTF-8", "connect to an mlcbuild peer")
        at += k
    src, dst, slot = names
    edge = f"{src}->{dst}:{slot}"
    if lsha.hex() != links_sha256:
        _refuse(f"edge {edge} was sent with other links (links sha256 {lsha.hex()[:12]}, here "
                f"{links_sha256[:12]})", "load the same recursivelink.json on every peer")
    want = weights.get(src) or ""
    if want and wsha.hex() != want:
        _refuse(f"agent {src} runs other weights ({wsha.hex()[:12]}) than the links were trained on "
                f"({want[:12]})", f"give {src} the build its links were trained for")
    if edge not in expect:
        _refuse(f"unexpected edge {edge}", f"this side waits for {', '.join(sorted(expect)) or 'no hand-off'}")
    if round is not None and rnd != round:
        _refuse(f"edge {edge} is for round {rnd}, this side is in round {round}", "restart both peers' run")
    if (rows, dim) != tuple(expect[edge]):
        _refuse(f"edge {edge} carries a {rows} x {dim} block, expected {expect[edge][0]} x {expect[edge][1]}",
                "use the same latent steps and builds on every peer")
    payload = memoryview(buf)[at:size - 4]
    block = np.frombuffer(payload, dtype=DTYPES[CODES[code]][1]).astype(np.float32).reshape(rows, dim)
    if not np.isfinite(block).all():
        _refuse(f"edge {edge} carries NaN or infinite values", "check the sender's links and build")
    return Frame(src, dst, slot, rnd, seq, block, lsha.hex(), wsha.hex(), CODES[code])
