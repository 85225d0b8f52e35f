"""`mlcbuild serve`: the playground (web/) at / and a build output root at /dist/, on 127.0.0.1.

The page reads /dist/builds.json when DIR has one (`mlcbuild make` writes it, builder/builds_index.py). For folders
without it, /dist/index.json is generated on each request (nothing is written to DIR): the builds found in DIR (folders
holding a manifest.json, DIR itself included) and the recursivelink*.json files next to them.
Register in builder/cli.py with `cli.add_command(serve_cmd)`.
"""

import json
import time
from pathlib import Path
from urllib.parse import quote

import click

from mlcbuild_common.errors import MlcbuildError

from ..paths import ensure_web_packages, web_dir
from .browser import StaticServer, _Handler

INDEX = "/dist/index.json"


def _links_in(folder: Path) -> list[str]:
    """recursivelink*.json file names in `folder`, recursivelink.json itself first (the page's default)."""
    names = [p.name for p in folder.glob("recursivelink*.json") if p.is_file()]
    return sorted(names, key=lambda n: (n != "recursivelink.json", n))


def _manifest_summary(folder: Path, url: str) -> dict | None:
    try:
        m = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(m, dict):
        return None
    hidden = m.get("hidden_size")
    try:
        cfg = json.loads((folder / "mlc-chat-config.json").read_text())
        hidden = hidden or cfg.get("hidden_size") or (cfg.get("model_config") or {}).get("hidden_size")
    except (OSError, ValueError, AttributeError):
        pass
    links = _links_in(folder)
    named = m.get("links")
    if isinstance(named, str) and (folder / named).is_file() and named not in links:
        links.insert(0, named)
    return {"name": folder.name, "url": url, "model": m.get("name"), "quantization": m.get("quantization"),
            "libs": m.get("libs") or {}, "hidden_size": hidden, "links": [url + quote(n) for n in links]}


def list_builds(root: Path) -> dict:
    """{builds: [{name, url, model, quantization, libs, hidden_size, links}], links: [url]} for /dist/ (URLs only:
    nothing of the server's filesystem)."""
    root = Path(root)
    builds = []
    if (root / "manifest.json").is_file():
        s = _manifest_summary(root, "/dist/")
        if s:
            builds.append(s)
    if root.is_dir():
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            if (d / "manifest.json").is_file():
                s = _manifest_summary(d, f"/dist/{quote(d.name)}/")
                if s:
                    builds.append(s)
        top = _links_in(root)
    else:
        top = []
    links = [f"/dist/{quote(n)}" for n in top]
    for b in builds:
        links += [u for u in b["links"] if u not in links]
    return {"builds": builds, "links": links}


class PlaygroundHandler(_Handler):
    """The static mounts plus a generated /dist/index.json, and /peer.json: where the page finds the WebSocket
    side (signaling between pages; roles on this machine with --run-roles). Static hosting has no /peer.json: the
    page then offers copy-paste sessions only."""

    dist_root: Path = Path("dist")
    peer_info: dict | None = None

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path in (INDEX, "/peer.json") and (path == INDEX or self.peer_info):
            doc = list_builds(self.dist_root) if path == INDEX else self.peer_info
            body = json.dumps(doc, indent=1).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


class PlaygroundServer(StaticServer):
    """StaticServer with web/ at / and `dist` at /dist/ (index.json generated). Use as a context manager."""

    def __init__(self, dist: Path, port: int = 0, host: str = "127.0.0.1", peer_info: dict | None = None):
        super().__init__({"/": web_dir(), "/dist/": Path(dist)}, port)
        self.dist = Path(dist)
        self.host = host
        self.peer_info = peer_info

    def __enter__(self):
        import threading
        from functools import partial
        from http.server import ThreadingHTTPServer

        handler = type("Handler", (PlaygroundHandler,), {
            "mounts": {k: Path(v) for k, v in self.mounts.items()}, "dist_root": self.dist.resolve(),
            "peer_info": self.peer_info})
        self._httpd = ThreadingHTTPServer((self.host, self.port), partial(handler))
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def url(self, path: str) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/{path.lstrip('/')}"

    def playground_url(self, query: str = "") -> str:
        return self.url(f"/?dist=/dist/{'&' + query if query else ''}")


@click.command(name="serve")
@click.argument("dist", default="dist", type=click.Path(file_okay=False))
@click.option("--port", "-p", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. WebGPU needs a secure context: use 127.0.0.1/localhost or https.")
@click.option("--ws-port", default=None, type=click.IntRange(0, 65535),
              help="WebSocket port for sessions between machines (default: --port + 1; 0: any free port).")
@click.option("--run-roles", default=None, help="Run these roles of the links' pattern here, on the CPU libraries "
              "(e.g. planner,critic); a page that connects runs the others, hand-offs cross the WebSocket.")
@click.option("--agents", default=None, help="With --run-roles: one build folder per pattern agent, comma-separated "
              "(only the folders of --run-roles are loaded).")
@click.option("--links", "links_file", default=None, type=click.Path(dir_okay=False),
              help="With --run-roles: the recursivelink.json the page loads too.")
@click.option("--frame-dtype", type=click.Choice(["f32", "f16"]), default="f32", show_default=True,
              help="Precision of the hand-off frames this side sends (f16: half the bytes).")
def serve_cmd(dist, port, host, ws_port, run_roles, agents, links_file, frame_dtype):
    """Serve the playground (web/) at / and the build output root DIST (default ./dist) at /dist/, with a WebSocket
    endpoint for sessions between machines: WebRTC signaling between two pages, and with --run-roles some roles on
    this machine (docs/wire.md)."""
    from .peer_server import PeerServer

    root = Path(dist)
    if not root.is_dir():
        raise MlcbuildError(f"{root} is not a folder", "build something first: mlcbuild make MODEL --out DIR")
    ensure_web_packages(web_dir(), "@mlc-ai/web-runtime")
    mas, local = _roles_here(run_roles, agents, links_file)
    ws_port = (port + 1 if port else 0) if ws_port is None else ws_port
    try:
        hub = PeerServer(mas, links_file, local, host=host, port=ws_port, dtype=frame_dtype,
                         log=lambda s: click.echo(s, err=True)).__enter__()
    except OSError as e:
        raise MlcbuildError(f"cannot listen on {host}:{ws_port}: {e.strerror or e}",
                            "pick another --ws-port (0 = any free port)") from None
    info = {"signal": hub.url("/signal/"), "roles": None}
    if mas:
        info["roles"] = {"url": hub.url("/roles"), "runs": sorted(local), "links": Path(links_file).name,
                         "links_sha256": hub.links_sha256}
    try:
        srv = PlaygroundServer(root, port=port, host=host, peer_info=info).__enter__()
    except OSError as e:
        hub.__exit__(None, None, None)
        raise MlcbuildError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                            "pick another --port (0 = any free port)") from None
    try:
        index = list_builds(root)
        read = "builds.json" if (root / "builds.json").is_file() else "a generated index.json (no builds.json)"
        click.echo(f"serving web/ at / and {root.resolve()} at /dist/ "
                   f"({len(index['builds'])} build(s), {len(index['links'])} links file(s); the page reads {read})")
        for b in index["builds"]:
            click.echo(f"  {b['url']}  {b['model']} {b['quantization']}  libs: {', '.join(sorted(b['libs']))}")
        click.echo(f"sessions between machines: {hub.url('/signal/')}ROOM" + (
            f"; {', '.join(sorted(local))} run here ({hub.url('/roles')})" if mas else ""))
        click.echo(f"playground: {srv.playground_url()}  (Ctrl-C to stop)")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        click.echo("mlcbuild: server stopped", err=True)
    finally:
        srv.__exit__(None, None, None)
        hub.__exit__(None, None, None)


def _roles_here(run_roles, agents, links_file):
    """(LatentMAS with only --run-roles loaded, those roles) or (None, ()) without --run-roles."""
    if not run_roles:
        if agents or links_file:
            raise MlcbuildError("--agents and --links go with --run-roles", "add --run-roles ROLE,... or drop them")
        return None, ()
    if not (agents and links_file):
        raise MlcbuildError("--run-roles needs --agents and --links", "pass the build folders and recursivelink.json")
    from train_links import format as fmt

    from .latent import LatentMAS

    pattern = fmt.load(links_file).pattern
    local = [r.strip() for r in run_roles.split(",") if r.strip()]
    unknown = [r for r in local if r not in pattern.agents]
    if unknown:
        raise MlcbuildError(f"--run-roles: {unknown[0]} is not a role of {links_file} ({', '.join(pattern.agents)})",
                            "name roles of the links' pattern")
    if set(local) == set(pattern.agents):
        raise MlcbuildError("--run-roles names every role: the page would run none", "leave at least one to the page")
    dirs = [d.strip() for d in agents.split(",")]
    if len(dirs) != len(pattern.agents):
        raise MlcbuildError(f"--agents: {len(dirs)} folder(s) for the {len(pattern.agents)} agents "
                            f"{', '.join(pattern.agents)}", "pass one build folder per agent, in order")
    dirs = [Path(d) if n in local else None for n, d in zip(pattern.agents, dirs, strict=True)]
    return LatentMAS(dirs, Path(links_file)), local
