"""Run a page in headless Chromium (WebGPU on SwiftShader) and get its JSON result back.

A page served from 127.0.0.1 (a secure context, so navigator.gpu exists) publishes
`window.__mlcbuildResult` or `window.__mlcbuildError`; web/tools/browse.mjs drives Chromium with
playwright-core and prints one JSON line, which `run_page` returns as a dict.
"""

import json
import mimetypes
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mlcbuild_common.errors import MlcbuildError, ToolMissing

from ..paths import ensure_web_packages, web_dir

CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")

MIME = {".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript",
        ".json": "application/json", ".bin": "application/octet-stream", ".html": "text/html"}


def find_chromium() -> str | None:
    env = os.environ.get("MLCBUILD_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for c in CHROMIUM_CANDIDATES:
        if Path(c).exists() and shutil.which("chromium"):
            return c
    return None


class _Handler(SimpleHTTPRequestHandler):
    """Serves a set of mounts ({url prefix: directory}); the longest matching prefix wins."""

    mounts: dict[str, Path] = {}
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **MIME}

    def translate_path(self, path):
        from urllib.parse import unquote

        path = unquote(path.split("?", 1)[0].split("#", 1)[0], errors="strict")
        if ".." in path.split("/") or "\0" in path:  # encoded or not, no parent steps
            return str(Path("/nonexistent"))
        for prefix in sorted(self.mounts, key=len, reverse=True):
            if path == prefix.rstrip("/") or path.startswith(prefix):
                rel = path[len(prefix):].lstrip("/")
                root = self.mounts[prefix].resolve()
                target = (root / rel).resolve()
                if target != root and root not in target.parents:  # no escaping the mount
                    return str(root / "__forbidden__")
                return str(target)
        return str(Path("/nonexistent"))

    def do_GET(self):
        if self.path == "/favicon.ico":  # browsers ask for it; an empty answer keeps consoles clean
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()

    def list_directory(self, path):  # no directory listings: folders are not pages
        self.send_error(404, "Not Found")
        return None

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, *args):  # quiet: tests and CLI print their own summaries
        pass


@dataclass
class StaticServer:
    """A threaded HTTP server on 127.0.0.1 with an OS-chosen port. Use as a context manager."""

    mounts: dict[str, Path]
    port: int = 0
    _httpd: ThreadingHTTPServer | None = field(default=None, repr=False)

    def __enter__(self):
        handler = type("Handler", (_Handler,), {"mounts": {k: Path(v) for k, v in self.mounts.items()}})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), partial(handler))
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"


def check_browser_tools() -> None:
    """Raise ToolMissing with the fix when node, playwright-core or chromium is missing."""
    if not shutil.which("node"):
        raise ToolMissing("node is not installed", "apt-get install nodejs npm")
    ensure_web_packages(web_dir(), "playwright-core")
    if not find_chromium():
        raise ToolMissing("chromium is not installed", "apt-get install chromium")


def run_page(url: str, timeout_s: float = 120, screenshot: Path | None = None,
             screenshot_always: bool = False, profile: Path | None = None,
             throttle: tuple[int, int] | None = None, chromium_args: tuple[str, ...] = ()) -> dict:
    """Open `url` in headless Chromium; return {ok, result, error, console}. `profile`: a browser profile folder
    to keep (and reuse on the next call, e.g. for a cached visit); default: a fresh one, removed afterwards.
    `throttle`: (kbit/s, latency ms) network emulation for the page's requests. `chromium_args`: extra flags."""
    check_browser_tools()
    driver = web_dir() / "tools" / "browse.mjs"
    cmd = ["node", str(driver), "--url", url, "--timeout", str(int(timeout_s * 1000))]
    if screenshot:
        cmd += ["--screenshot", str(screenshot)] + (["--screenshot-always"] if screenshot_always else [])
    if profile:
        cmd += ["--profile", str(profile)]
    if throttle:
        cmd += ["--throttle", f"{int(throttle[0])},{int(throttle[1])}"]
    for a in chromium_args:
        cmd += ["--arg", a]
    env = {**os.environ, "MLCBUILD_CHROMIUM": find_chromium()}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s + 60, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise MlcbuildError(f"browser driver failed: {tail}", f"run: node {driver} --url {url}")
    return json.loads(lines[-1])


def serve_and_run(page: str, mounts: dict[str, Path], **kw) -> dict:
    """Serve `mounts` (web/ is always mounted at /) and open `page` (a path under the server)."""
    with StaticServer({"/": web_dir(), **mounts}) as srv:
        return run_page(srv.url(page), **kw)


mimetypes.add_type("application/wasm", ".wasm")
