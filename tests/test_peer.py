"""Agents on different machines (builder/run/peer.py, peer_server.py, web/src/mas/peer.js): a latent run split
between two processes over a real WebSocket equals the run with every role in one process.

Tiny 3-agent set of tests/mas_system.py (planner tiny-qwen3, critic tiny-llama, solver tiny-qwen3, q0f32, m=4,
r=2, so the solver -> planner feedback edge crosses the wire too). Python <-> Python runs on the CPU libraries;
Python <-> browser runs the solver in headless Chromium on WebGPU."""

import json
import re
import threading
import time

import numpy as np
import pytest
from mas_system import AGENTS, QUESTION, RTC_ARGS, tiny_links

from builder.make import make
from builder.run.browser import serve_and_run
from builder.run.latent import LatentMAS
from builder.run.peer import Peer, PeerError, WebSocketChannel
from builder.run.peer_server import PeerServer
from builder.run.wire import file_sha256
from train_links import format as fmt

ROUNDS, M, MAX_NEW = 2, 4, 8
SERVER_ROLES = ("planner", "critic")


@pytest.fixture(scope="module")
def system(tmp_path_factory, webgpu_dist):
    tmp = tmp_path_factory.mktemp("peer")
    agents, links, pattern = tiny_links(m=M, rounds=ROUNDS)
    rl = fmt.save(tmp / "recursivelink.json", agents, pattern, links, m=M, rounds=ROUNDS)
    dirs = {a: make(a, "q0f32", webgpu_dist, targets=("webgpu", "cpu"), show_progress=False).out for a in set(AGENTS)}
    return {"tmp": tmp, "root": webgpu_dist, "links_file": rl, "dirs": [dirs[a] for a in AGENTS],
            "pattern": pattern}


@pytest.fixture(scope="module")
def reference(system):
    mas = LatentMAS(system["dirs"], system["links_file"])
    return mas.run(QUESTION, "latent", max_new_tokens=MAX_NEW)


def split_dirs(system, roles):
    return [d if n in roles else None for n, d in zip(system["pattern"].agents, system["dirs"], strict=True)]


def role_server(system, log, dtype="f32", timeout=120.0):
    mas = LatentMAS(split_dirs(system, SERVER_ROLES), system["links_file"])
    return PeerServer(mas, system["links_file"], SERVER_ROLES, dtype=dtype, timeout=timeout, log=log.append)


def cos(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_python_to_python_split_run_equals_one_process(system, reference, dtype):
    from websockets.sync.client import connect

    log = []
    with role_server(system, log, dtype) as srv:
        mas = LatentMAS(split_dirs(system, {"solver"}), system["links_file"])
        weights = {"solver": mas.agents["solver"].engine.manifest["source"]["sha256"]}
        with connect(srv.url(), max_size=None) as ws:
            peer = Peer(WebSocketChannel(ws), mas.lf, file_sha256(system["links_file"]), {"solver"}, weights, dtype)
            peer.hello()
            peer.send_json(type="run", question=QUESTION, max_new_tokens=MAX_NEW)
            res = mas.run(QUESTION, "latent", max_new_tokens=MAX_NEW, peer=peer)
            done = peer.expect("done", "planner, critic")
    assert res["answer"] == reference["answer"], (res["answer"], reference["answer"])
    got = {(h["edge"], h["round"]): h["block"] for h in res["handoffs"]}
    want = {(h["edge"], h["round"]): h["block"] for h in reference["handoffs"]}
    crossing = [k for k in want if k[0].split("->")[1].startswith("solver:")]  # what crossed into the solver
    assert len(crossing) == ROUNDS and set(got) == set(crossing)
    for k in crossing:
        assert cos(got[k], want[k]) >= (0.99999 if dtype == "f32" else 0.999), k
    # the feedback edge solver -> planner crossed the other way in round 2
    assert any(f["edge"].startswith("solver->planner") for f in done["wire"]["frames"] if f["dir"] == "received")
    assert res["wire"]["bytes_sent"] > 0 and res["wire"]["bytes_received"] > 0
    assert done["wire"]["bytes_sent"] == res["wire"]["bytes_received"]


@pytest.mark.slow
def test_a_peer_that_leaves_mid_run_ends_the_other_side_naming_the_role(system):
    from websockets.sync.client import connect

    log = []
    with role_server(system, log) as srv:
        mas = LatentMAS(split_dirs(system, {"solver"}), system["links_file"])
        with connect(srv.url(), max_size=None) as ws:
            peer = Peer(WebSocketChannel(ws), mas.lf, file_sha256(system["links_file"]), {"solver"}, {})
            peer.hello()
            peer.send_json(type="run", question=QUESTION, max_new_tokens=MAX_NEW)
            t0 = time.monotonic()
        # the solver's side left before sending its answer: the server's run ends, naming the solver
        while not any("solver" in m for m in log) and time.monotonic() - t0 < 10:
            time.sleep(0.05)
    assert any("the peer running solver left mid-run" in m for m in log), log
    assert time.monotonic() - t0 < 10


@pytest.mark.slow
def test_frames_for_other_links_are_refused_before_any_model_runs(system, tmp_path):
    """hello checks the links file; a side that lies in hello still has its frames refused."""
    from websockets.sync.client import connect

    log = []
    with role_server(system, log) as srv:
        mas = LatentMAS(split_dirs(system, {"solver"}), system["links_file"])
        with connect(srv.url(), max_size=None) as ws:
            peer = Peer(WebSocketChannel(ws), mas.lf, "0" * 64, {"solver"}, {})
            with pytest.raises(PeerError, match="other links"):
                peer.hello()


@pytest.mark.slow
@pytest.mark.browser
def test_python_planner_and_critic_with_a_browser_solver(system, reference, artifacts):
    """The server sends f16 frames, the page f32 ones (the f32 path into a page: the WebRTC test below)."""
    dtype = "f16"
    log = []
    with role_server(system, log, dtype) as srv:
        res = run_peer_page(system, srv.url(), artifacts, "f32")
    assert res["ok"], res.get("error")
    out = res["result"]
    assert out["answer"] == reference["answer"], (out["answer"], reference["answer"])
    want = {(h["edge"], h["round"]): h["block"] for h in reference["handoffs"]}
    remote = [h for h in out["handoffs"] if h["remote"]]
    assert len(remote) == ROUNDS and all(h["edge"].split("->")[1].startswith("solver:") for h in remote)
    for h in remote:
        assert cos(h["block"], want[(h["edge"], h["round"])]) >= (0.99999 if dtype == "f32" else 0.999), h["edge"]
    assert out["wire"]["bytes_received"] == out["done"]["wire"]["bytes_sent"] > 0
    assert any(f["edge"].startswith("solver->planner") for f in out["wire"]["frames"] if f["dir"] == "sent")


def run_peer_page(system, ws_url, artifacts, dtype="f32", timeout_ms=120000):
    root, tmp = system["root"], system["tmp"]
    case = {"question": QUESTION, "rounds": ROUNDS, "m": M, "max_new_tokens": MAX_NEW}
    (tmp / "peer-case.json").write_text(json.dumps(case))
    agents = ",".join(f"/dist/{d.name}/" if n == "solver" else ""
                      for n, d in zip(system["pattern"].agents, system["dirs"], strict=True))
    page = (f"harness/peer-check.html?agents={agents}&links=/data/recursivelink.json&case=/data/peer-case.json"
            f"&peer={ws_url}&dtype={dtype}&timeout_ms={timeout_ms}")
    return serve_and_run(page, {"/dist/": root, "/data/": tmp}, timeout_s=600,
                         screenshot=artifacts / "peer-check.png")


@pytest.mark.slow
@pytest.mark.browser
def test_a_server_that_leaves_mid_run_ends_the_page_naming_the_role(system, artifacts):
    """A peer that says hello and leaves when the run starts: the page (the solver, waiting for the critic's
    hand-off) stops within 10 s, naming the role."""
    from websockets.sync.server import serve

    lf = fmt.load(system["links_file"])

    def handler(ws):
        peer = Peer(WebSocketChannel(ws), lf, file_sha256(system["links_file"]), SERVER_ROLES, {})
        peer.hello()
        peer.expect("run", "solver")
        ws.close()

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"
        res = run_peer_page(system, url, artifacts, timeout_ms=60000)
        server.shutdown()
    assert not res["ok"]
    err = res["error"]
    assert "PeerError: the peer running critic left mid-run" in err, err  # the solver awaits critic -> solver
    assert float(err.rsplit("run_ms=", 1)[1].rstrip("]")) < 10_000, err


# -- browser <-> browser over WebRTC -------------------------------------------------------------------------------

def rtc_pages(system, artifacts, room, dtypes=("f32", "f32"), leave=False, timeout_ms=120000):
    """Page A (planner + critic, hosts and starts the run) and page B (solver, joins), each in its own Chromium,
    paired through mlcbuild serve's signaling relay: {"host": result, "join": result}. dtypes: (host's frames,
    joiner's frames)."""
    from builder.paths import web_dir
    from builder.run.browser import StaticServer, run_page

    root, tmp, names = system["root"], system["tmp"], system["pattern"].agents
    case = {"question": QUESTION, "rounds": ROUNDS, "m": M, "max_new_tokens": MAX_NEW}
    (tmp / "rtc-case.json").write_text(json.dumps(case))
    out = {}
    with PeerServer() as hub, StaticServer({"/": web_dir(), "/dist/": root, "/data/": tmp}) as srv:
        def page(side, roles, dtype):
            agents = ",".join(f"/dist/{d.name}/" if n in roles else "" for n, d in zip(names, system["dirs"],
                                                                                      strict=True))
            url = srv.url(f"harness/peer-check.html?agents={agents}&links=/data/recursivelink.json"
                          f"&case=/data/rtc-case.json&rtc={side}&signal={hub.url('/signal/' + room)}&dtype={dtype}"
                          f"&timeout_ms={timeout_ms}" + ("&leave=1" if leave and side == "host" else ""))
            out[side] = run_page(url, timeout_s=600, screenshot=artifacts / f"rtc-{side}.png", chromium_args=RTC_ARGS)

        threads = [threading.Thread(target=page, args=a) for a in (("host", SERVER_ROLES, dtypes[0]),
                                                                    ("join", ("solver",), dtypes[1]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return out


@pytest.fixture(scope="module")
def one_page(system, tmp_path_factory):
    """The same question with every role in one page (web/harness/latent-check.html)."""
    from builder.run.latent_browser import page_url

    case = {"question": QUESTION, "rounds": ROUNDS, "m": M, "max_new_tokens": MAX_NEW, "modes": ["latent"]}
    (system["tmp"] / "one-page-case.json").write_text(json.dumps(case))
    page = page_url([f"/dist/{d.name}/" for d in system["dirs"]], "/data/recursivelink.json",
                    "/data/one-page-case.json")
    res = serve_and_run(page, {"/dist/": system["root"], "/data/": system["tmp"]}, timeout_s=600)
    assert res["ok"], res.get("error")
    return res["result"]["latent"]


@pytest.mark.slow
@pytest.mark.browser
def test_two_pages_over_webrtc_equal_one_page(system, one_page, artifacts):
    """The host (planner, critic) sends f16 frames, the joiner (solver) f32 ones: both kinds cross in one run."""
    out = rtc_pages(system, artifacts, "room-mixed", ("f16", "f32"))
    assert out["host"]["ok"] and out["join"]["ok"], (out["host"].get("error"), out["join"].get("error"))
    host, join = out["host"]["result"], out["join"]["result"]
    assert join["answer"] == host["answer"] == one_page["answer"], (join["answer"], one_page["answer"])
    want = {(h["edge"], h["round"]): h["block"] for h in one_page["handoffs"]}
    got = {(h["edge"], h["round"]): (h["block"], h["remote"]) for h in host["handoffs"] + join["handoffs"]}
    assert set(got) == set(want)
    crossed = {"f16": 0, "f32": 0}
    for k, (block, remote) in got.items():
        # f16 frames: critic -> solver (host to joiner); f32 frames: solver -> planner (joiner to host); the rest
        # never left its page
        dtype = "f16" if remote and k[0].startswith("critic->") else "f32"
        crossed[dtype] += remote
        assert cos(block, want[k]) >= (0.99999 if dtype == "f32" else 0.999), (k, cos(block, want[k]))
    assert crossed == {"f16": ROUNDS, "f32": ROUNDS - 1}
    assert join["wire"]["bytes_received"] == host["wire"]["bytes_sent"] > 0
    assert host["wire"]["bytes_received"] == join["wire"]["bytes_sent"] > 0  # the feedback edge, round 2


@pytest.mark.slow
@pytest.mark.browser
def test_a_page_that_leaves_mid_run_ends_the_other_page_naming_the_role(system, artifacts):
    out = rtc_pages(system, artifacts, "room-leave", leave=True, timeout_ms=60000)
    assert out["host"]["ok"] and out["host"]["result"]["left"], out["host"]
    err = out["join"].get("error") or ""
    # the solver's page names the host's role it was waiting for or sending to at that moment
    assert re.search(r"PeerError: the peer running (critic|planner) left mid-run", err), out["join"]
    assert float(err.rsplit("run_ms=", 1)[1].rstrip("]")) < 10_000, err


# -- the playground ------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.browser
def test_playground_runs_the_solver_with_planner_and_critic_on_the_server(system, reference, tmp_path, artifacts):
    """mlcbuild serve's playground with --run-roles planner,critic: the page connects as a person would
    (?session=server), loads only the solver's build, and shows the remote roles, the bytes and time of each
    hand-off on the wire, and the hand-off bytes in the results table."""
    import shutil
    from urllib.parse import quote

    from builder.run.browser import run_page
    from builder.run.serve import PlaygroundServer

    site = tmp_path / "site"
    for d in system["dirs"]:
        if not (site / d.name).exists():
            shutil.copytree(d, site / d.name)
    shutil.copy(system["links_file"], site / "recursivelink.json")
    log = []
    with role_server(system, log) as hub:
        info = {"signal": hub.url("/signal/"), "roles": {"url": hub.url("/roles"), "runs": list(SERVER_ROLES)}}
        with PlaygroundServer(site, peer_info=info) as srv:
            builds = ",".join(f"/dist/{d.name}/" for d in system["dirs"])
            res = run_page(srv.playground_url(f"links=/dist/recursivelink.json&builds={builds}&q={quote(QUESTION)}"
                                              f"&r={ROUNDS}&m={M}&max={MAX_NEW}&session=server&auto=1&mode=latent"),
                           timeout_s=600, screenshot=artifacts / "playground-server-roles.png", screenshot_always=True)
    assert res["ok"], res.get("error")
    out = res["result"]
    assert out["latent"]["answer"] == reference["answer"]
    nodes = {n["agent"]: n for n in out["latent"]["diagram"]["nodes"]}
    assert [n for n in nodes if nodes[n]["remote"]] == list(SERVER_ROLES)
    labels = {w["edge"]: w["label"] for w in out["latent"]["diagram"]["wire"]}
    assert "on the wire" in labels["critic->solver:refined_plan"] and "KB" in labels["critic->solver:refined_plan"]
    assert out["latent"]["wire"]["bytes_received"] > 0
    row = next(r for r in out["table"] if r["mode"] == "latent")
    assert "crossed" in row["handoff_bytes"], row
    assert any("run 1:" in m for m in log), log


@pytest.mark.slow
@pytest.mark.browser
def test_playground_pages_host_and_join_a_webrtc_session(system, reference, tmp_path, artifacts):
    """Two playground pages as two people would use them: one hosts a session running planner and critic and asks
    the question, the other joins running the solver; both show the same answer as the one-process run."""
    import shutil
    from urllib.parse import quote

    from builder.run.browser import run_page
    from builder.run.serve import PlaygroundServer

    site = tmp_path / "site"
    for d in system["dirs"]:
        if not (site / d.name).exists():
            shutil.copytree(d, site / d.name)
    shutil.copy(system["links_file"], site / "recursivelink.json")
    out = {}
    with PeerServer() as hub, PlaygroundServer(site, peer_info={"signal": hub.url("/signal/"), "roles": None}) as srv:
        builds = ",".join(f"/dist/{d.name}/" for d in system["dirs"])
        common = f"links=/dist/recursivelink.json&builds={builds}&r={ROUNDS}&m={M}&max={MAX_NEW}&room=pg"

        def page(side, extra):
            out[side] = run_page(srv.playground_url(f"{common}&session={side}&{extra}"), timeout_s=600,
                                 screenshot=artifacts / f"playground-{side}.png", screenshot_always=True,
                                 chromium_args=RTC_ARGS)

        threads = [threading.Thread(target=page, args=("host", f"here=planner,critic&q={quote(QUESTION)}&auto=1"
                                                               "&mode=latent")),
                   threading.Thread(target=page, args=("join", "here=solver"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert out["host"]["ok"] and out["join"]["ok"], (out["host"].get("error"), out["join"].get("error"))
    host, join = out["host"]["result"]["latent"], out["join"]["result"]["latent"]
    assert host["answer"] == join["answer"] == reference["answer"]
    remote = {side: [n["agent"] for n in r["diagram"]["nodes"] if n["remote"]] for side, r in (("host", host),
                                                                                                 ("join", join))}
    assert remote == {"host": ["solver"], "join": list(SERVER_ROLES)}
    assert join["wire"]["bytes_received"] == host["wire"]["bytes_sent"] > 0
