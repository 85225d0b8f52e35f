"""The WebSocket side of `mlcbuild serve`: a page's link to roles on this machine, and signaling between pages.

- /roles: some roles on this machine's CPU libraries (`--run-roles planner,critic`), the others in the page
  (web/src/mas/peer.js). Both sides say hello (roles, links); for every `run` the page sends, this side runs its
  roles of the latent loop (builder.run.latent.LatentMAS with a builder.run.peer.Peer) while frames cross the
  socket, and ends with `done` and its wire figures.
- /signal/ROOM: the first two pages to open the same ROOM are paired and each one's messages go to the other (the
  WebRTC offer and answer of web/src/runtime/rtc.js); a third is refused. Nothing is kept after they leave.
The server side of the socket is the `websockets` library's (sync API), one thread per connection.
"""

import threading

from .peer import Peer, PeerError, WebSocketChannel
from .wire import file_sha256


class PeerServer:
    """A WebSocket server on host:port (0: any free port). `mas` + `links_file` + `local_roles` enable /roles (runs
    from several pages take turns: one set of engines). Use as a context manager."""

    def __init__(self, mas=None, links_file=None, local_roles=(), host: str = "127.0.0.1", port: int = 0,
                 dtype: str = "f32", timeout: float = 120.0, log=print):
        self.mas, self.local, self.host, self.port = mas, set(local_roles), host, port
        self.dtype, self.timeout, self.log = dtype, timeout, log
        self.links_sha256 = file_sha256(links_file) if links_file else None
        self.weights = ({n: (a.engine.manifest.get("source") or {}).get("sha256", "") for n, a in mas.agents.items()}
                        if mas else {})
        self._lock = threading.Lock()
        self._rooms: dict = {}  # room -> [ws, ...] (at most two)
        self._rooms_lock = threading.Condition()
        self.runs = 0

    def __enter__(self):
        from websockets.sync.server import serve

        self._server = serve(self._handle, self.host, self.port, max_size=None)
        self.port = self._server.socket.getsockname()[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()

    def url(self, path: str = "/roles") -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"ws://{host}:{self.port}{path}"

    def _handle(self, ws):
        path = ws.request.path.split("?", 1)[0]
        if path.startswith("/signal/") and len(path) > len("/signal/"):
            return self._relay(ws, path[len("/signal/"):])
        if path == "/roles" and self.mas is not None:
            return self._roles(ws)
        ws.close(1008, "no such endpoint: use /signal/ROOM, or /roles with mlcbuild serve --run-roles")

    # -- /signal/ROOM ------------------------------------------------------------------------------------------
    def _relay(self, ws, room: str):
        with self._rooms_lock:
            members = self._rooms.setdefault(room, [])
            if len(members) >= 2:
                ws.close(1008, f"room {room[:40]} already has two pages")
                return
            members.append(ws)
            self._rooms_lock.notify_all()
            while len(members) < 2 and ws in members:
                self._rooms_lock.wait(timeout=1.0)
                if ws.state.name != "OPEN":
                    members.remove(ws)
                    return
            other = next(m for m in members if m is not ws)
        try:
            for msg in ws:  # every message goes to the other page as it is
                other.send(msg)
        except Exception:  # noqa: BLE001 - either side closing ends the relay
            pass
        finally:
            other.close()
            with self._rooms_lock:
                if self._rooms.get(room) is members:
                    del self._rooms[room]

    # -- /roles ------------------------------------------------------------------------------------------------
    def _roles(self, ws):
        peer = Peer(WebSocketChannel(ws), self.mas.lf, self.links_sha256, self.local, self.weights, self.dtype,
                    self.timeout)
        try:
            peer.hello()
            self.log(f"peer connected: it runs {', '.join(sorted(peer.remote))}")
            while True:
                try:
                    job = peer.expect("run", ", ".join(sorted(peer.remote)), timeout=24 * 3600)
                except PeerError:
                    return  # the page left between runs: nothing was cut short
                self._run(peer, job)
        except PeerError as e:
            self.log(f"mlcbuild: {e}")
            try:
                peer.send_json(type="error", message=str(e))
            except PeerError:
                pass
        finally:
            ws.close()

    def _run(self, peer: Peer, job: dict):
        q = str(job.get("question") or "")
        with self._lock:
            res = self.mas.run(q, "latent", max_new_tokens=int(job.get("max_new_tokens") or 32),
                               rounds=job.get("rounds"), m=job.get("m"), peer=peer)
        self.runs += 1
        final_here = self.mas.pattern.final in self.local  # then the loop sent the answer to the page
        peer.send_json(type="done", id=job.get("id"), wire=res["wire"], metrics=res["metrics"])
        self.log(f"run {self.runs}: {res['wire']['bytes_sent']} bytes sent, {res['wire']['bytes_received']} received"
                 + (f"; answer: {res['answer']!r}" if final_here else ""))
