"""Hand-off frames (builder/run/wire.py, web/src/mas/wire.js): round trips in f32 and f16, each side reading the
other's frames, and a refusal with a clear message for every kind of bad frame, on both sides."""

import json
import subprocess

import numpy as np
import pytest

from builder.paths import web_dir
from builder.run import wire

LINKS, WEIGHTS = "ab" * 32, "cd" * 32
EDGE = ("planner", "critic", "plan")
KEY = "planner->critic:plan"


def frame(dtype="f32", rows=4, dim=16, rnd=0, seed=0, **kw):
    block = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32) * 3
    args = dict(src=EDGE[0], dst=EDGE[1], slot=EDGE[2], round=rnd, seq=7, block=block, links_sha256=LINKS,
                weights_sha256=WEIGHTS, dtype=dtype)
    return wire.Frame(**{**args, **kw})


def read(buf, expect=None, rnd=0, links=LINKS, weights=None):
    return wire.decode(buf, links_sha256=links, weights={"planner": WEIGHTS} if weights is None else weights,
                       expect=expect or {KEY: (4, 16)}, round=rnd)


def test_round_trip_f32_is_exact():
    f = frame()
    buf = wire.encode(f)
    assert len(buf) == wire.HEADER.size + sum(map(len, EDGE)) + 4 * 16 * 4 + 4 == wire.peek_size(buf)
    g = read(buf)
    assert (g.edge, g.round, g.seq, g.dtype) == (KEY, 0, 7, "f32")
    np.testing.assert_array_equal(g.block, f.block)


def test_round_trip_f16_halves_the_payload():
    f = frame("f16")
    buf = wire.encode(f)
    assert len(buf) == wire.HEADER.size + sum(map(len, EDGE)) + 4 * 16 * 2 + 4
    g = read(buf)
    np.testing.assert_array_equal(g.block, f.block.astype(np.float16).astype(np.float32))


def _flip(buf: bytes, at: int) -> bytes:
    b = bytearray(buf)
    b[at] ^= 0x40
    return bytes(b)


def bad_frames() -> dict:
    """kind -> (frame bytes, decode keyword overrides, words the refusal must contain)."""
    good = wire.encode(frame())
    other_edge = wire.encode(frame(src="solver", dst="critic", slot="plan"))
    return {
        "links": (good, {"links": "ef" * 32}, ["other links"]),
        "weights": (good, {"weights": {"planner": "01" * 32}}, ["planner", "other weights"]),
        "shape": (wire.encode(frame(rows=3)), {}, ["3 x 16", "expected 4 x 16"]),
        "checksum": (_flip(good, wire.HEADER.size + 10), {}, ["checksum"]),
        "edge": (other_edge, {}, ["unexpected edge solver->critic:plan"]),
        "round": (wire.encode(frame(rnd=1)), {}, ["round 1", "round 0"]),
        "truncated": (good[:-9], {}, ["truncated"]),
        "oversized": (good[:12] + (4096).to_bytes(2, "little") + good[14:16] + (1 << 16).to_bytes(4, "little")
                      + good[20:], {}, ["oversized"]),
    }


@pytest.mark.parametrize("kind", list(bad_frames()))
def test_python_refuses_bad_frames(kind):
    buf, kw, words = bad_frames()[kind]
    with pytest.raises(wire.FrameError) as e:
        read(buf, **kw)
    msg = str(e.value)
    assert msg.startswith("hand-off frame refused: ") and "\n" not in msg
    for w in words:
        assert w in msg, (kind, msg)


def test_encode_refuses_what_it_cannot_carry():
    with pytest.raises(wire.FrameError, match="f16 cannot carry"):
        wire.encode(frame("f16", block=np.full((4, 16), 1e6, np.float32)))
    with pytest.raises(wire.FrameError, match="cannot be sent"):
        wire.encode(frame(block=np.zeros((0, 16), np.float32)))


NODE = r"""
import { decodeFrame, encodeFrame } from "%s/src/mas/wire.js";
import { readFileSync } from "node:fs";
const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
const out = [];
for (const c of cases) {
  const bytes = Uint8Array.from(Buffer.from(c.hex, "hex"));
  try {
    const f = decodeFrame(bytes, c.opts);
    const again = encodeFrame({ ...f, linksSha256: f.linksSha256, weightsSha256: f.weightsSha256 });
    out.push({ ok: true, edge: f.edge, dtype: f.dtype, round: f.round, seq: f.seq, data: Array.from(f.data),
               hex: Buffer.from(again).toString("hex") });
  } catch (e) {
    out.push({ ok: false, name: e.name, message: e.message });
  }
}
console.log(JSON.stringify(out));
"""


def run_node(tmp_path, cases):
    script = tmp_path / "wire-check.mjs"
    script.write_text(NODE % web_dir().as_posix())
    data = tmp_path / "cases.json"
    data.write_text(json.dumps(cases))
    proc = subprocess.run(["node", str(script), str(data)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def opts(links=LINKS, weights=None, expect=None, rnd=0):
    return {"linksSha256": links, "weights": {"planner": WEIGHTS} if weights is None else weights,
            "expect": {k: list(v) for k, v in (expect or {KEY: (4, 16)}).items()}, "round": rnd}


def test_javascript_reads_python_frames_and_python_reads_javascript_frames(tmp_path):
    frames = [frame("f32"), frame("f16", seed=1)]
    res = run_node(tmp_path, [{"hex": wire.encode(f).hex(), "opts": opts()} for f in frames])
    for f, r in zip(frames, res, strict=True):
        assert r["ok"], r
        assert (r["edge"], r["dtype"], r["round"], r["seq"]) == (KEY, f.dtype, 0, 7)
        want = f.block if f.dtype == "f32" else f.block.astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(np.array(r["data"], np.float32).reshape(4, 16), want)
        # the JS encoder writes the same bytes as Python's (f16 rounding included)
        assert r["hex"] == wire.encode(wire.Frame(*EDGE, 0, 7, want, LINKS, WEIGHTS, f.dtype)).hex()
        np.testing.assert_array_equal(read(bytes.fromhex(r["hex"])).block, want)


def test_javascript_refuses_bad_frames(tmp_path):
    kinds = bad_frames()
    cases = []
    for buf, kw, _ in kinds.values():
        cases.append({"hex": buf.hex(), "opts": opts(links=kw.get("links", LINKS), weights=kw.get("weights"))})
    for kind, r in zip(kinds, run_node(tmp_path, cases), strict=True):
        assert not r["ok"] and r["name"] == "HandoffFrameError", (kind, r)
        assert r["message"].startswith("hand-off frame refused: ")
        for w in kinds[kind][2]:
            assert w in r["message"], (kind, r["message"])
