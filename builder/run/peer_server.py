"""Some roles on this machine's CPU libraries, the others in a page: the WebSocket end of a split run.

`mlcbuild serve --agents ... --links ... --run-roles planner,critic` starts one of these beside the playground's
HTTP server. A page connects (web/src/mas/peer.js), both sides say hello (roles, links), and for every `run` the
page sends, this side runs its roles of the latent loop (builder.run.latent.LatentMAS with a builder.run.peer.Peer)
while frames cross the socket. The side with the final agent sends the `answer`; this side always ends a run
with `done` and its wire figures. The server side of the socket is the `websockets` library's (sync API).
"""

import threading

from .peer import Peer, PeerError, WebSocketChannel
from .wire import file_sha256


class RoleServer:
    """A WebSocket server on host:port (0: any free port) running `local_roles` of `mas`. Use as a context
    manager; `url` is what a page connects to. Runs from several pages take turns (one set of engines)."""

    def __init__(self, mas, links_file, local_roles, host: str = "127.0.0.1", port: int = 0, dtype: str = "f32",
                 timeout: float = 120.0, log=print):
        self.mas, self.local, self.host, self.port = mas, set(local_roles), host, port
        self.dtype, self.timeout, self.log = dtype, timeout, log
        self.links_sha256 = file_sha256(links_file)
        self.weights = {n: (a.engine.manifest.get("source") or {}).get("sha256", "") for n, a in mas.agents.items()}
        self._lock = threading.Lock()
        self.runs = 0

    def __enter__(self):
        from websockets.sync.server import serve

        self._server = serve(self._handle, self.host, self.port, max_size=None)
        self.port = self._server.socket.getsockname()[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"ws://{host}:{self.port}/"

    def _handle(self, ws):
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
