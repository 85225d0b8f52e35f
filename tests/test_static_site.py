"""The playground as a static site: `mlcbuild bundle` (the step pages.yml and release.yml run) served by a plain
static file server under /some/sub/path/, with the artifacts (builds, links, builds.json written by make) on a second
origin that sends CORS headers. Latent and text run in headless Chromium and the results table is read from the DOM,
against the Python reference on the CPU libraries. The tiny 3-agent system of tests/test_playground.py."""

import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import urllib.parse
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mas_system import QUESTION, tiny_system

from builder.builds_index import INDEX, scan, update
from builder.run.browser import run_page

ROUNDS, M, MAX_NEW, TEXT_TOKENS = 1, 2, 4, 2  # small: SwiftShader decodes a few tokens a second
SUB = "some/sub/path"
BUNDLE_CMD = "mlcbuild bundle"  # what the workflows must run (test_workflows_bundle_like_the_test)
WORKFLOWS = Path(__file__).resolve().parent.parent / ".github" / "workflows"


class _Plain(SimpleHTTPRequestHandler):
    """http.server as it comes, recording each request path; `cors` adds Access-Control-Allow-Origin: *."""

    cors = False
    seen: list

    def end_headers(self):
        if self.cors:
            self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()

    def log_message(self, fmt, *args):
        self.seen.append(self.path)


@contextmanager
def plain_server(root: Path, cors: bool = False):
    seen = []
    handler = type("H", (_Plain,), {"cors": cors, "seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


# http.server in another process, as another OS user (what nginx or Apache are): it can read only what our files'
# modes let any user read. Logs "path status" per request on stderr, sends CORS headers.
OTHER_USER_SERVER = r"""
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
class H(SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()
    def log_request(self, code="-", size="-"):
        sys.stderr.write(f"{self.path} {int(code)}\n")
        sys.stderr.flush()
httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(H, directory=sys.argv[1]))
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"""


@contextmanager
def server_as_other_user(root: Path, user: str = "nobody"):
    """Serve `root` as `user` with the system python (ours may sit under /root, which `user` cannot enter).
    Yields (url, log); log fills with (path, status) once the server has stopped."""
    py = shutil.which("python3", path="/usr/bin:/bin")
    assert py, "this test needs /usr/bin/python3 to run a server as another user"
    cmd = [py, "-c", OTHER_USER_SERVER, str(root)]
    if os.geteuid() == 0:
        proc = subprocess.Popen(cmd, user=user, group=user if user != "nobody" else "nogroup", extra_groups=[],
                                cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    else:  # a CI runner with passwordless sudo
        proc = subprocess.Popen(["sudo", "-n", "-u", user, *cmd], cwd="/", stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    log = []
    try:
        port = proc.stdout.readline().strip()
        assert port.isdigit(), f"the server as {user} did not start: {proc.stderr.read() if proc.poll() else ''}"
        yield f"http://127.0.0.1:{port}/", log
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        log.extend((ln.rsplit(" ", 1)[0], int(ln.rsplit(" ", 1)[1])) for ln in err.splitlines()
                   if ln.rsplit(" ", 1)[-1].isdigit())


@pytest.fixture(scope="module")
def published():
    """A folder as a web root is (0755, like /var/www), outside pytest's private temp tree."""
    root = Path(tempfile.mkdtemp(prefix="mlcbuild-www-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory, cli):
    """The bundle, written by the CLI into <root>/some/sub/path/."""
    root = tmp_path_factory.mktemp("site")
    p = cli("bundle", str(root / SUB))
    assert p.returncode == 0, p.stderr
    return root


@pytest.fixture(scope="module")
def system(published):
    """Links saved first, then the builds: make's own builds.json must list both and tie each role to its build.
    Written into a published folder: the page loads them from a server running as another user."""
    return tiny_system(published, m=M, rounds=ROUNDS)


def test_bundle_is_self_contained(site):
    page = site / SUB
    assert sorted(p.name for p in page.iterdir()) == ["app.js", "index.html"]
    html = (page / "index.html").read_text()
    assert '<script type="module" src="app.js"></script>' in html
    assert "node_modules" not in html and 'src="/' not in html and 'href="/' not in html
    js = (page / "app.js").read_text()
    # the tokenizers' wasm travels inside app.js; nothing is loaded from node_modules or /src/ at run time
    assert "data:application/octet-stream;base64,AGFzbQ" in js
    assert "/node_modules/" not in js and '"/src/' not in js


def test_builds_json_written_by_make(system):
    doc = json.loads((system["tmp"] / INDEX).read_text())
    assert doc == scan(system["tmp"])  # make's hook wrote what a fresh scan gives
    builds = {b["name"]: b for b in doc["builds"]}
    assert set(builds) == {d.name for d in system["dirs"]}
    for d in system["dirs"]:
        b = builds[d.name]
        manifest = json.loads((d / "manifest.json").read_text())
        assert b["folder"] == f"{d.name}/" and b["targets"] == ["cpu", "webgpu"]
        assert b["sizes"]["total"] == sum(r["size"] for r in manifest["files"].values()) + \
            (d / "manifest.json").stat().st_size
        assert b["sizes"]["total"] - b["sizes"]["webgpu"] == manifest["files"][manifest["libs"]["cpu"]]["size"]
    (links,) = doc["links"]
    assert links["file"] == "recursivelink.json" and links["pattern"] == "sequential"
    assert [(a["name"], a["builds"]) for a in links["agents"]] == [
        (role, [d.name]) for role, d in zip(["planner", "critic", "solver"], system["dirs"], strict=True)]


def test_published_files_are_readable_by_any_user(system, cli):
    """make, its builds.json and the links writer (temp file + rename) leave ordinary modes (umask 022: files
    0644, folders 0755), not mkstemp's 0600 / mkdtemp's 0700; so does `mlcbuild index`."""
    p = cli("index", str(system["tmp"]))
    assert p.returncode == 0, p.stderr
    private = [f"{oct(stat.S_IMODE(q.stat().st_mode))} {q.relative_to(system['tmp'])}"
               for q in [system["tmp"], *system["tmp"].rglob("*")]
               if q.stat().st_mode & (0o005 if q.is_dir() else 0o004) != (0o005 if q.is_dir() else 0o004)]
    assert not private, private


def test_index_cli_and_odd_folders(tmp_path, cli):
    """`mlcbuild index DIR`: damaged manifests and dotted temp folders are skipped, names are URL-encoded."""
    good = tmp_path / "my büild-q4f32_1"
    good.mkdir()
    (good / "manifest.json").write_text(json.dumps({"name": "m", "quantization": "q4f32_1", "hidden_size": 8,
                                                    "libs": {"webgpu": "m.wasm"}}))
    (good / "m.wasm").write_bytes(b"\0asm\1\0\0\0")
    (good / "recursivelink-x.json").write_text("{}")  # not a links file: listed nowhere
    for bad in ("broken-q0f32", ".partial.tmp"):
        (tmp_path / bad).mkdir()
        (tmp_path / bad / "manifest.json").write_text("{not json")
    p = cli("index", str(tmp_path))
    assert p.returncode == 0 and "1 build(s), 0 links file(s)" in p.stdout, p.stdout + p.stderr
    doc = json.loads((tmp_path / INDEX).read_text())
    (b,) = doc["builds"]
    assert b["folder"] == "my%20b%C3%BCild-q4f32_1/" and b["links"] == []
    whole = sum(f.stat().st_size for f in good.iterdir())  # no files table in this manifest: the folder's files
    assert b["sizes"] == {"total": whole, "webgpu": whole}
    assert doc["links"] == [] and not list(tmp_path.glob(".builds.json.*"))
    assert update(tmp_path).read_bytes() == (tmp_path / INDEX).read_bytes()  # no timestamps: same folders, same bytes


def test_index_lists_links_files_by_content_not_name(tmp_path):
    """Every links file under the root, whatever its name and folder depth, with its pattern and agents' hidden
    sizes; other JSON files (a build's config, a file that only mentions the word) and dot folders are left out."""
    build = tmp_path / "b-q0f32"
    build.mkdir()
    (build / "manifest.json").write_text(json.dumps({"name": "b", "quantization": "q0f32", "hidden_size": 64,
                                                     "libs": {"webgpu": "b.wasm"}}))
    (build / "mlc-chat-config.json").write_text(json.dumps({"hidden_size": 64}))

    def links(path, pattern, dims):
        path.parent.mkdir(parents=True, exist_ok=True)
        agents = [{"name": n, "model_id": "m", "hidden_size": d, "weights_sha256": ""} for n, d in dims.items()]
        path.write_text(json.dumps({"format": "recursivelink", "pattern": {"name": pattern}, "rounds": 2,
                                    "latent_steps": 4, "agents": agents, "links": []}))

    links(tmp_path / "recursivelink.json", "sequential", {"planner": 64, "critic": 64, "solver": 64})
    links(tmp_path / "distill.json", "distillation", {"expert": 128, "learner": 64})
    links(build / "mine.json", "deliberation", {"toolcaller": 64, "reflector": 64})
    links(tmp_path / "more" / "deep" / "mixture links.json", "mixture", {"expert1": 64, "summarizer": 64})
    links(tmp_path / ".partial" / "recursivelink.json", "sequential", {"a": 1})
    (tmp_path / "notes.json").write_text(json.dumps({"about": "recursivelink files"}))
    doc = scan(tmp_path)
    got = [(x["file"], x["pattern"], [(a["name"], a["hidden_size"]) for a in x["agents"]]) for x in doc["links"]]
    assert got == [
        ("recursivelink.json", "sequential", [("planner", 64), ("critic", 64), ("solver", 64)]),
        ("distill.json", "distillation", [("expert", 128), ("learner", 64)]),
        ("b-q0f32/mine.json", "deliberation", [("toolcaller", 64), ("reflector", 64)]),
        ("more/deep/mixture%20links.json", "mixture", [("expert1", 64), ("summarizer", 64)]),
    ]
    assert doc["builds"][0]["links"] == ["b-q0f32/mine.json"]


def test_workflows_bundle_like_the_test():
    """pages.yml and release.yml make the site with the command this file's fixture runs."""
    for name in ("pages.yml", "release.yml"):
        assert f"{BUNDLE_CMD} " in (WORKFLOWS / name).read_text(), name


def open_site(site_url, art_url, artifacts, name, timeout_s=600, chromium_args=(), **params):
    query = {"artifacts": art_url, "auto": "1", "r": ROUNDS, "m": M, "max": MAX_NEW, "text_tokens": TEXT_TOKENS,
             "q": QUESTION, **params}
    return run_page(f"{site_url}{SUB}/?{urllib.parse.urlencode(query)}", timeout_s=timeout_s,
                    screenshot=artifacts / f"{name}.png", screenshot_always=True, chromium_args=chromium_args)


@pytest.mark.browser
@pytest.mark.slow
def test_static_site_runs_latent_and_text_from_another_origin(site, system, artifacts):
    from builder.run.latent import LatentMAS

    # the artifacts come from a server running as another OS user (as nginx would serve them)
    with plain_server(site) as (site_url, site_seen), server_as_other_user(system["tmp"]) as (art_url, art_log):
        res = open_site(site_url, art_url, artifacts, "static-site-both", mode="both")
    assert res["ok"], f"{res['error']}\n" + "\n".join(res["console"][-20:])
    art_seen = [path for path, _ in art_log]
    # every file that exists was served to the other user (the page also probes for optional files: 404 is right)
    unreadable = [(path, code) for path, code in art_log
                  if code >= 400 and (system["tmp"] / urllib.parse.unquote(path.split("?")[0]).lstrip("/")).exists()]
    assert art_log and not unreadable, unreadable
    got = res["result"]
    # the page asked its own origin for nothing outside its sub-path, and found the builds through builds.json
    assert {p.split("?")[0] for p in site_seen} - {"/favicon.ico"} == {f"/{SUB}/", f"/{SUB}/app.js"}
    assert "/builds.json" in art_seen and "/index.json" not in art_seen
    assert any(p.endswith("-webgpu.wasm") for p in art_seen)
    mas = LatentMAS(system["dirs"], system["links_file"])
    ref = {"latent": mas.run(QUESTION, "latent", max_new_tokens=MAX_NEW, rounds=ROUNDS, m=M),
           "text": mas.run(QUESTION, "text", max_new_tokens=MAX_NEW, text_tokens=TEXT_TOKENS, rounds=ROUNDS, m=M)}
    table = {row["mode"]: row for row in got["table"]}
    assert set(table) == {"latent", "text"}
    for mode in ("latent", "text"):
        assert got["answers"][mode] == ref[mode]["answer"], mode
        for k in ("prompt_tokens", "reused_tokens", "generated_tokens", "latent_steps"):
            assert int(table[mode][k]) == ref[mode]["metrics"][k], (mode, k)
        assert float(table[mode]["e2e_ms"]) > 0
    assert int(table["latent"]["latent_steps"]) == M * (3 * ROUNDS - 1)
    # each role got the build made from the weights its links were trained on (builds.json), none was typed
    assert sorted(got["verified"]) == sorted({f"{art_url}{d.name}/" for d in system["dirs"]})
    print(f"static site: load {got['load_ms'] / 1000:.1f} s, latent {table['latent']['e2e_ms']} ms, "
          f"text {table['text']['e2e_ms']} ms, answers {got['answers']}")


@pytest.mark.browser
@pytest.mark.slow
def test_static_site_without_webgpu_says_what_to_do(site, system, artifacts):
    """The site on plain http from a host name (not localhost): no secure context, so no WebGPU. The page says what
    to do, still lists the builds, and downloads no weights."""
    with plain_server(site) as (site_url, _), plain_server(system["tmp"], cors=True) as (art_url, art_seen):
        host_url = site_url.replace("127.0.0.1", "playground.test")
        res = open_site(host_url, art_url, artifacts, "static-site-no-webgpu", timeout_s=120, mode="latent",
                        chromium_args=("--host-resolver-rules=MAP playground.test 127.0.0.1",))
    assert not res["ok"] and res["error"].startswith("WebGPUUnavailableError: "), res["error"]
    err = res["result"]["error"]
    assert "WebGPU is not available" in err["shown"] and "not a secure context" in err["shown"]
    assert "How to fix: open it over https" in err["shown"]
    assert sorted(res["result"]["builds"]) == sorted({d.name for d in system["dirs"]})
    assert not any(p.endswith((".bin", ".wasm")) for p in art_seen), art_seen
    assert not any(c.startswith("pageerror") for c in res["console"]), res["console"]
