"""The other side of a split run: roles on another machine, reached over a message channel (docs/wire.md).

Both sides run the same loop over the pattern; each runs its own roles and skips the others. A hand-off whose
receiver is remote goes out as a frame (builder.run.wire) after its outer link; a hand-off whose sender is remote
is waited for, checked and only then spliced into a local prompt. Text messages (JSON) carry the rest: `hello`
(which roles each side runs, the links file, format version), `run` (the question and settings), `answer` (the
final agent's text, from the side that runs it) and `error`. A peer that leaves, stalls or sends a refused frame
ends the run with a PeerError naming the role whose hand-off was awaited.

`Channel` is what a transport gives: send(bytes | str), recv(timeout) -> bytes | str (raises PeerClosed or
TimeoutError), close(). WebSocketChannel is the `websockets` (sync API) one; web/src/mas/peer.js is the browser's.
"""

import json
import time
from dataclasses import dataclass, field

import numpy as np

from mlcbuild_common.errors import MlcbuildError

from . import wire

PROTOCOL = "mlcbuild-handoff/1"


def _is_bye(msg) -> bool:
    if not isinstance(msg, str) or '"bye"' not in msg[:40]:
        return False
    try:
        return json.loads(msg).get("type") == "bye"
    except (ValueError, AttributeError):
        return False


class PeerError(MlcbuildError):
    """The run cannot go on with the other side: it left, stalled, refused us or sent what we refuse."""


class PeerClosed(Exception):
    """The channel closed."""


class WebSocketChannel:
    """A `websockets` sync connection (client or server side) as a Channel."""

    def __init__(self, ws):
        self.ws = ws

    def send(self, msg):
        from websockets.exceptions import ConnectionClosed

        try:
            self.ws.send(msg)
        except ConnectionClosed as e:
            raise PeerClosed(str(e)) from None

    def recv(self, timeout: float):
        from websockets.exceptions import ConnectionClosed

        try:
            return self.ws.recv(timeout=timeout)
        except ConnectionClosed as e:
            raise PeerClosed(str(e)) from None

    def close(self):
        self.ws.close()


@dataclass
class Wire:
    """What went over the channel in one run: per hand-off {edge, round, bytes, ms, dir}."""
    frames: list = field(default_factory=list)

    def add(self, direction: str, edge: str, rnd: int, nbytes: int, ms: float):
        self.frames.append({"dir": direction, "edge": edge, "round": rnd, "bytes": nbytes, "ms": ms})

    def summary(self) -> dict:
        sent = [f for f in self.frames if f["dir"] == "sent"]
        got = [f for f in self.frames if f["dir"] == "received"]
        return {"frames": self.frames, "bytes_sent": sum(f["bytes"] for f in sent),
                "bytes_received": sum(f["bytes"] for f in got)}


class Peer:
    """One side's view of the other. `local_roles`: the roles this side runs; `links_sha256`: wire.file_sha256 of
    the links file; `lf`: the loaded links file (its agents' hidden sizes and weights sha256); `weights`: this
    side's agents' build weights sha256 by role; `dtype`: f32 or f16 frames; `timeout`: seconds to wait for one
    hand-off before calling the other side stalled."""

    def __init__(self, channel, lf, links_sha256: str, local_roles, weights: dict[str, str], dtype: str = "f32",
                 timeout: float = 120.0):
        self.channel, self.lf, self.links_sha256, self.dtype, self.timeout = channel, lf, links_sha256, dtype, timeout
        self.local = set(local_roles)
        self.remote = set(lf.pattern.agents) - self.local
        self.weights = weights
        self.recorded = {a["name"]: a.get("weights_sha256", "") for a in lf.meta["agents"]}
        self.dims = {a["name"]: a["hidden_size"] for a in lf.meta["agents"]}
        self.inbox: dict = {}  # (edge, round) -> Frame that came before it was asked for
        self.texts: list = []  # JSON messages that came while a frame was awaited
        self.seq = 0
        self.new_run({})  # frames are checked against the links' r and m until a run says otherwise

    # -- messages ------------------------------------------------------------------------------------------------
    def send_json(self, **msg):
        if msg.get("type") == "run":
            self.new_run(msg)
        try:
            self.channel.send(json.dumps(msg))
        except PeerClosed:
            raise PeerError(f"the peer running {self._names(self.remote)} left", "start it again") from None

    def _names(self, roles) -> str:
        return ", ".join(sorted(roles)) or "no role"

    def _next(self, waiting_for: str, deadline: float):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        try:
            msg = self.channel.recv(timeout=left)
        except PeerClosed:
            msg = None
        if msg is None or _is_bye(msg):  # bye: it is leaving, as good as closed
            raise PeerError(f"the peer running {waiting_for} left mid-run", "start it again and rerun")
        return msg

    def _text(self, msg: str) -> dict:
        try:
            doc = json.loads(msg)
        except ValueError:
            raise PeerError("the peer sent a message that is not JSON", "connect to an mlcbuild peer") from None
        if doc.get("type") == "error":
            raise PeerError(f"the peer stopped: {str(doc.get('message'))[:300]}", "see the other side's output")
        if doc.get("type") == "run":
            self.new_run(doc)  # its frames follow it on the ordered channel
        return doc

    def hello(self) -> dict:
        """Exchange roles and links; both sides call it once after connecting."""
        self.send_json(type="hello", protocol=PROTOCOL, roles=sorted(self.local), links_sha256=self.links_sha256)
        doc = self.expect("hello", self._names(self.remote), 30.0)
        if doc.get("protocol") != PROTOCOL:
            raise PeerError(f"the peer speaks {doc.get('protocol')!r}, this side {PROTOCOL}", "run the same mlcbuild "
                            "version on both sides")
        if doc.get("links_sha256") != self.links_sha256:
            raise PeerError(f"the peer loaded other links (sha256 {str(doc.get('links_sha256'))[:12]}, here "
                            f"{self.links_sha256[:12]})", "load the same recursivelink.json on both sides")
        theirs = set(doc.get("roles") or [])
        if theirs != self.remote:
            raise PeerError(f"the peer runs {self._names(theirs)}; this side runs {self._names(self.local)} and needs "
                            f"{self._names(self.remote)} from it", "split the pattern's roles between the two sides")
        return doc

    def expect(self, kind: str, waiting_for: str, timeout: float | None = None) -> dict:
        """The next JSON message of this `kind` (frames that come first are kept for later)."""
        for i, doc in enumerate(self.texts):
            if doc.get("type") == kind:
                return self.texts.pop(i)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                msg = self._next(waiting_for, deadline)
            except TimeoutError:
                raise PeerError(f"the peer running {waiting_for} sent nothing for {timeout or self.timeout:.0f} s",
                                "check the other side; rerun") from None
            if isinstance(msg, str):
                doc = self._text(msg)
                if doc.get("type") == kind:
                    return doc
                self.texts.append(doc)
            else:
                self._keep(msg)

    # -- hand-offs -----------------------------------------------------------------------------------------------
    def new_run(self, job: dict):
        """A run starts (this side sent `run`, or read it): no frame of an earlier run counts any more."""
        self.rounds = job.get("rounds") or self.lf.meta["rounds"]
        self.m = job.get("m") or self.lf.meta["latent_steps"]
        self.inbox, self.wire = {}, Wire()

    def begin(self, rounds: int, m: int):
        """The loop's r and m for this run."""
        self.rounds, self.m = rounds, m

    def _expected(self) -> dict:
        return {e.key: (self.m, self.dims[e.dst]) for e in self.lf.pattern.edges
                if e.src in self.remote and e.dst in self.local}

    def _keep(self, buf: bytes):
        try:
            f = wire.decode(buf, links_sha256=self.links_sha256, weights=self.recorded, expect=self._expected())
        except wire.FrameError as e:
            self.send_json(type="error", message=str(e))
            raise PeerError(str(e)) from None
        if not 0 <= f.round < self.rounds or (f.edge, f.round) in self.inbox:
            msg = f"hand-off frame refused: edge {f.edge} round {f.round} is not awaited"
            self.send_json(type="error", message=msg)
            raise PeerError(msg, "restart both sides' run")
        self.inbox[(f.edge, f.round)] = (f, len(buf))

    def receive(self, edge, rnd: int) -> np.ndarray:
        """The block of `edge` in round `rnd` (after its outer link), once it has come and passed every check."""
        t0 = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        while (edge.key, rnd) not in self.inbox:
            try:
                msg = self._next(edge.src, deadline)
            except TimeoutError:
                raise PeerError(f"the peer running {edge.src} sent no hand-off for {edge.key} in {self.timeout:.0f} s",
                                "check the other side; rerun") from None
            if isinstance(msg, str):
                self.texts.append(self._text(msg))
            else:
                self._keep(msg)
        f, nbytes = self.inbox.pop((edge.key, rnd))
        self.wire.add("received", edge.key, rnd, nbytes, (time.perf_counter() - t0) * 1000)
        return f.block

    def send(self, edge, rnd: int, block: np.ndarray):
        t0 = time.perf_counter()
        buf = wire.encode(wire.Frame(edge.src, edge.dst, edge.slot, rnd, self.seq, block, self.links_sha256,
                                     self.weights.get(edge.src, ""), self.dtype))
        self.seq += 1
        try:
            self.channel.send(buf)
        except PeerClosed:
            raise PeerError(f"the peer running {edge.dst} left mid-run", "start it again and rerun") from None
        self.wire.add("sent", edge.key, rnd, len(buf), (time.perf_counter() - t0) * 1000)
