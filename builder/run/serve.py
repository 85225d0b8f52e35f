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
    """The static mounts plus a generated /dist/index.json."""

    dist_root: Path = Path("dist")

    def do_GET(self):
        if self.path.split("?", 1)[0] == INDEX:
            body = json.dumps(list_builds(self.dist_root), indent=1).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


class PlaygroundServer(StaticServer):
    """StaticServer with web/ at / and `dist` at /dist/ (index.json generated). Use as a context manager."""

    def __init__(self, dist: Path, port: int = 0, host: str = "127.0.0.1"):
        super().__init__({"/": web_dir(), "/dist/": Path(dist)}, port)
        self.dist = Path(dist)
        self.host = host

    def __enter__(self):
        import threading
        from functools import partial
        from http.server import ThreadingHTTPServer

        handler = type("Handler", (PlaygroundHandler,), {
            "mounts": {k: Path(v) for k, v in self.mounts.items()}, "dist_root": self.dist.resolve()})
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
def serve_cmd(dist, port, host):
    """Serve the playground (web/) at / and the build output root DIST (default ./dist) at /dist/."""
    root = Path(dist)
    if not root.is_dir():
        raise MlcbuildError(f"{root} is not a folder", "build something first: mlcbuild make MODEL --out DIR")
    ensure_web_packages(web_dir(), "@mlc-ai/web-runtime")
    try:
        srv = PlaygroundServer(root, port=port, host=host).__enter__()
    except OSError as e:
        raise MlcbuildError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                            "pick another --port (0 = any free port)") from None
    try:
        index = list_builds(root)
        read = "builds.json" if (root / "builds.json").is_file() else "a generated index.json (no builds.json)"
        click.echo(f"serving web/ at / and {root.resolve()} at /dist/ "
                   f"({len(index['builds'])} build(s), {len(index['links'])} links file(s); the page reads {read})")
        for b in index["builds"]:
            click.echo(f"  {b['url']}  {b['model']} {b['quantization']}  libs: {', '.join(sorted(b['libs']))}")
        click.echo(f"playground: {srv.playground_url()}  (Ctrl-C to stop)")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        click.echo("mlcbuild: server stopped", err=True)
    finally:
        srv.__exit__(None, None, None)
