"""The static playground (web/index.html + web/src/app/) served by builder.serve, driven by URL params in headless
Chromium (WebGPU on SwiftShader), against the Python reference (builder.latent.LatentMAS on the CPU libraries).

The tiny 3-agent system of tests/test_latent_webgpu.py: planner tiny-qwen3, critic tiny-llama, solver tiny-qwen3,
q0f32, m=4, r=2, 8 new tokens, with recursivelink.json next to the builds (the page's default links file)."""

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from mas_system import QUESTION, links_for_dims, tiny_system

from builder.run.browser import run_page
from builder.run.serve import PlaygroundServer, list_builds

ROUNDS, M, MAX_NEW, TEXT_TOKENS = 2, 4, 8, 4


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    return tiny_system(tmp_path_factory.mktemp("playground"), m=M, rounds=ROUNDS)


def open_playground(system, artifacts, name, timeout_s=600, **params):
    query = {"auto": "1", "r": ROUNDS, "m": M, "max": MAX_NEW, "text_tokens": TEXT_TOKENS, "q": QUESTION,
             "builds": ",".join(f"/dist/{d.name}/" for d in system["dirs"]), **params}
    with PlaygroundServer(system["tmp"]) as srv:
        return run_page(srv.playground_url(urllib.parse.urlencode(query)), timeout_s=timeout_s,
                        screenshot=artifacts / f"{name}.png", screenshot_always=True)


def test_serve_lists_builds_and_serves_wasm(tmp_path):
    """/dist/index.json is generated (nothing written to DIR); .wasm goes out as application/wasm."""
    b = tmp_path / "m-q4f32_1"
    b.mkdir()
    (b / "manifest.json").write_text(json.dumps({"name": "m", "quantization": "q4f32_1", "hidden_size": 8,
                                                 "libs": {"webgpu": "m-q4f32_1-webgpu.wasm"}}))
    (b / "m-q4f32_1-webgpu.wasm").write_bytes(b"\0asm\1\0\0\0")
    (b / "recursivelink.json").write_text("{}")
    (tmp_path / "not-a-build").mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    idx = list_builds(tmp_path)
    assert [x["url"] for x in idx["builds"]] == ["/dist/m-q4f32_1/"]
    assert idx["builds"][0]["hidden_size"] == 8 and idx["links"] == ["/dist/m-q4f32_1/recursivelink.json"]
    with PlaygroundServer(tmp_path) as srv:
        with urllib.request.urlopen(srv.url("/dist/index.json")) as r:
            assert json.loads(r.read()) == json.loads(json.dumps(idx))
        with urllib.request.urlopen(srv.url("/dist/m-q4f32_1/m-q4f32_1-webgpu.wasm")) as r:
            assert r.headers["Content-Type"] == "application/wasm"
        with urllib.request.urlopen(srv.url("/")) as r:
            assert b'id="error"' in r.read()
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(srv.url("/dist/../../etc/passwd"))
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.browser
@pytest.mark.slow
def test_playground_both_modes_match_python(system, artifacts):
    from builder.run.latent import LatentMAS

    res = open_playground(system, artifacts, "playground-both", mode="both")
    assert res["ok"], f"{res['error']}\n" + "\n".join(res["console"][-20:])
    got = res["result"]
    mas = LatentMAS(system["dirs"], system["links_file"])
    ref = {"latent": mas.run(QUESTION, "latent", max_new_tokens=MAX_NEW, rounds=ROUNDS, m=M),
           "text": mas.run(QUESTION, "text", max_new_tokens=MAX_NEW, text_tokens=TEXT_TOKENS, rounds=ROUNDS, m=M)}
    table = {row["mode"]: row for row in got["table"]}
    assert set(table) == {"latent", "text"}
    for mode in ("latent", "text"):
        assert got[mode]["answer"] == ref[mode]["answer"] == got["answers"][mode], mode
        for k in ("prompt_tokens", "reused_tokens", "generated_tokens", "latent_steps"):
            assert int(table[mode][k]) == ref[mode]["metrics"][k], (mode, k)
        assert float(table[mode]["e2e_ms"]) > 0
    assert int(table["latent"]["latent_steps"]) == M * (3 * ROUNDS - 1)
    assert table["latent"]["speedup"].endswith("x") and table["text"]["speedup"] == "1.00x"
    hand = got["latent"]["handoffs"]
    assert [(h["edge"], h["round"]) for h in hand] == [(h["edge"], h["round"]) for h in ref["latent"]["handoffs"]]
    for h, r in zip(hand, ref["latent"]["handoffs"], strict=True):
        want = float(np.linalg.norm(r["block"], axis=-1).mean())
        assert h["rows"] == M and abs(h["mean_row_norm"] - want) <= 1e-3 * want, h["edge"]
        # the peek: the 3 tokens (of 4096 evenly spaced ids) whose input embeddings are nearest to the block's
        # first row, recomputed here with numpy on the receiver's CPU library
        eng = mas.agents[h["edge"].split("->")[1].split(":")[0]].engine
        vocab = eng.meta["vocab_size"]
        ids = [i * vocab // min(vocab, 4096) for i in range(min(vocab, 4096))]
        emb = eng.embed(ids)
        row = np.asarray(r["block"])[0]
        cos = emb @ row / (np.linalg.norm(emb, axis=1) * np.linalg.norm(row))
        top = np.argsort(-cos)[:3]
        assert [t["id"] for t in h["nearest"]] == [ids[i] for i in top], h["edge"]
        assert np.allclose([t["cos"] for t in h["nearest"]], cos[top], atol=1e-3), h["edge"]
    check_diagram(system, got, ref["latent"]["handoffs"])
    lat, txt = table["latent"], table["text"]
    print(f"playground: load {got['load_ms'] / 1000:.1f} s, latent {lat['e2e_ms']} ms, text {txt['e2e_ms']} ms, "
          f"speedup {lat['speedup']}, answers {got['latent']['answer']!r} / {got['text']['answer']!r}")


def check_diagram(system, got, handoffs):
    """The live pattern diagram as each mode left it (read from the page's SVG): one node per agent, one arrow per
    edge (next-round ones dashed), round r / r, and every hand-off marked in flight from its source's block until its
    destination prefilled it, landing in the order of Python's hand-offs (text messages travel the same edges in the
    same order)."""
    doc = json.loads(system["links_file"].read_text())
    edges = [f"{e['src']}->{e['dst']}:{e['slot']}" for e in doc["pattern"]["edges"]]
    for mode in ("latent", "text"):
        dia = got[mode]["diagram"]
        assert [(n["agent"], n["build"], n["d"], n["status"]) for n in dia["nodes"]] == [
            (a["name"], d.name, a["hidden_size"], "done") for a, d in zip(doc["agents"], system["dirs"], strict=True)]
        assert [(x["edge"], x["dashed"]) for x in dia["edges"]] == [
            (k, e["next_round"]) for k, e in zip(edges, doc["pattern"]["edges"], strict=True)]
        assert dia["round"] == f"round {ROUNDS} / {ROUNDS}" and dia["mode"] == f"{mode}: done", dia
        assert dia["inflight"] == [], dia
        flights = dia["flights"]
        assert all(f["sent"] is not None and f["landed"] is not None and f["sent"] < f["landed"] for f in flights)
        landed = sorted(flights, key=lambda f: f["landed"])
        assert [(f["edge"], f["round"]) for f in landed] == [(h["edge"], h["round"]) for h in handoffs], mode
        assert [x["carried"] for x in dia["edges"]] == [sum(f["edge"] == k for f in flights) for k in edges]
        assert all(x["carried"] >= 1 for x in dia["edges"]), dia["edges"]


def distillation_links(path):
    """A 2-agent distillation links file for the tiny models (expert tiny-qwen3, learner tiny-llama), m=2, r=3."""
    from builder.fetch import model_source
    from train_links import format as fmt
    from train_links.agents import make_agents
    from train_links.patterns import distillation
    from train_links.system import LinkSet

    pattern = distillation()
    agents = {a.name: a for a in make_agents(["tiny-qwen3", "tiny-llama"], pattern, resolve=model_source)}
    return fmt.save(path, agents, pattern, LinkSet(agents, pattern, seed=0), m=2, rounds=3)


@pytest.mark.browser
@pytest.mark.slow
def test_pattern_picker_redraws_roles_and_diagram(system, artifacts):
    """builds.json lists each links file as "pattern (agents)"; picking another one (a 2-agent file in a subfolder,
    freely named) re-renders the roles with their builds, the agents table and the diagram; r set in the URL stays,
    m follows the new file. Nothing is run."""
    from builder.builds_index import update

    (system["tmp"] / "more").mkdir(exist_ok=True)
    distillation_links(system["tmp"] / "more" / "distill.json")
    update(system["tmp"])
    res = open_playground(system, artifacts, "playground-pick", timeout_s=180, auto="0", m="",
                          pick="/dist/more/distill.json")
    assert res["ok"], f"{res['error']}\n" + "\n".join(res["console"][-20:])
    got = res["result"]
    assert "sequential (planner d=64, critic d=64, solver d=64)" in got["choices"]
    assert "distillation (expert d=64, learner d=64)" in got["choices"]
    assert got["pattern"] == "distillation" and got["picked"] == got["links"] and got["links"].endswith(
        "/dist/more/distill.json")
    assert got["agents"] == ["expert", "learner"]
    assert {k: v.rsplit("/dist/", 1)[1] for k, v in got["roles"].items()} == {
        "expert": f"{system['dirs'][0].name}/", "learner": f"{system['dirs'][1].name}/"}
    dia = got["diagram"]
    assert [(n["agent"], n["build"], n["final"]) for n in dia["nodes"]] == [
        ("expert", system["dirs"][0].name, False), ("learner", system["dirs"][1].name, True)]
    assert [(x["edge"], x["label"], x["dashed"]) for x in dia["edges"]] == [
        ("expert->learner:guidance", "guidance", False), ("learner->expert:attempt", "attempt (next round)", True)]
    assert (got["rounds"], got["m"]) == (str(ROUNDS), "2")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("case", ["other-dims", "other-weights", "missing-artifact", "tampered-shard", "f16-lib"])
def test_playground_shows_bad_input_errors(system, artifacts, case):
    """A clear message in #error (published, no uncaught page error), before any weights load."""
    if case == "other-dims":
        bad = links_for_dims(system["links_file"], system["tmp"] / "recursivelink-d32.json", 32)
        res = open_playground(system, artifacts, case, timeout_s=180, links=f"/dist/{bad.name}", mode="latent")
        name, shown = "LinkMismatchError", "does not fit these models"
        detail = "hidden size 32 in the links but 64 in the model"
    elif case == "other-weights":  # links trained on other weights (same dims): refused, force_links=1 overrides
        doc = json.loads(system["links_file"].read_text())
        for a in doc["agents"]:
            a["model_id"], a["weights_sha256"] = "Qwen/Qwen3-0.6B", "0" * 64
        bad = system["tmp"] / "recursivelink-other.json"
        bad.write_text(json.dumps(doc))
        res = open_playground(system, artifacts, case, timeout_s=180, links=f"/dist/{bad.name}", mode="latent")
        name, shown, detail = "LinkMismatchError", "does not fit these models", "was trained on Qwen/Qwen3-0.6B"
    elif case == "tampered-shard":  # a served shard that differs from manifest.json: refused before it reaches the GPU
        src = system["dirs"][1]
        bad = system["tmp"] / "tampered-q0f32"
        if not bad.exists():
            shutil.copytree(src, bad)
            raw = bytearray((bad / "params_shard_0.bin").read_bytes())
            raw[len(raw) // 2] ^= 0xFF
            (bad / "params_shard_0.bin").write_bytes(bytes(raw))
        builds = f"/dist/{system['dirs'][0].name}/,/dist/{bad.name}/,/dist/{system['dirs'][2].name}/"
        res = open_playground(system, artifacts, case, timeout_s=180, builds=builds, mode="latent")
        name, shown, detail = "ChecksumMismatchError", "does not match its sha256", "served params_shard_0.bin"
    elif case == "f16-lib":  # a real q0f16 WebGPU lib; SwiftShader has no shader-f16
        from builder.make import make

        f16 = make("tiny-qwen3", "q0f16", system["tmp"], targets=("webgpu", "cpu"), show_progress=False).out
        builds = f"/dist/{f16.name}/,/dist/{system['dirs'][1].name}/,/dist/{f16.name}/"
        res = open_playground(system, artifacts, case, timeout_s=180, builds=builds, mode="latent")
        name, shown, detail = "ShaderF16UnsupportedError", "shader-f16", "use the f32 build: q0f32"
    else:
        builds = f"/dist/{system['dirs'][0].name}/,/dist/no-such-build/,/dist/{system['dirs'][2].name}/"
        # through the "Run latent" button instead of auto=1
        res = open_playground(system, artifacts, case, timeout_s=180, builds=builds, auto="0", click="run-latent")
        name, shown, detail = "ArtifactMissingError", "artifact is missing", "no-such-build/mlc-chat-config.json"
    assert not res["ok"]
    assert res["error"].startswith(f"{name}: "), res["error"]
    err = res["result"]["error"]
    assert err["name"] == name and shown in err["shown"] and detail in err["shown"], err
    assert "How to fix" in err["shown"]
    assert not any(c.startswith("pageerror") for c in res["console"]), res["console"]


@pytest.mark.browser
@pytest.mark.slow
def test_artifact_cache_verifies_cached_shards(system):
    """web/src/runtime/cache.js: shards are stored verified, re-hashed from the cache on every load, and a tampered
    cached shard gives ChecksumMismatchError and is dropped (the next load fetches it again); Model.load runs the
    same check itself."""
    with PlaygroundServer(system["tmp"]) as srv:
        res = run_page(srv.url(f"/src/app/cache-check.html?build=/dist/{system['dirs'][0].name}/"), timeout_s=120)
    assert res["ok"], res["error"]
    r = res["result"]
    assert r["first"]["fetched"] == r["first"]["files"] >= 2 and r["first"]["cached"] == 0
    assert r["second"]["cached"] == r["second"]["files"] and r["second"]["fetched"] == 0
    assert r["tampered"].startswith("ChecksumMismatchError: cached params_shard_0.bin does not match manifest.json")
    assert r["dropped"] and r["third"]["fetched"] == 1
    # Model.load verifies by itself (no UI involved): a tampered cached shard is refused before tvmjs reads it
    assert r["modelLoad"].startswith("ChecksumMismatchError: cached params_shard_0.bin does not match"), r["modelLoad"]


def test_serve_decodes_paths_and_shows_no_folders_or_server_paths(tmp_path):
    """A build folder named with a space and a non-ASCII letter is listed with encoded URLs that load; folders are
    never listed; index.json holds no filesystem path; encoded parent steps stay 404."""
    import urllib.error
    import urllib.request

    from builder.run.serve import PlaygroundServer

    name = "my büild-q4f32_1"
    b = tmp_path / name
    b.mkdir()
    (b / "manifest.json").write_text(json.dumps({"name": "m", "quantization": "q4f32_1", "hidden_size": 8,
                                                 "libs": {"webgpu": "m.wasm"}}))
    (b / "m.wasm").write_bytes(b"\0asm\1\0\0\0")
    (tmp_path / "secret.txt").write_text("not for the web")

    def status(srv, path):
        try:
            with urllib.request.urlopen(srv.url(path)) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, b""

    with PlaygroundServer(tmp_path / name) as srv:
        pass  # a build folder as the root works too
    with PlaygroundServer(tmp_path) as srv:
        code, body = status(srv, "/dist/index.json")
        idx = json.loads(body)
        assert str(tmp_path) not in body.decode() and "root" not in idx
        (build,) = idx["builds"]
        assert build["url"] == "/dist/my%20b%C3%BCild-q4f32_1/"
        assert status(srv, build["url"] + "m.wasm") == (200, b"\0asm\1\0\0\0")
        for listing in ("/dist/", build["url"], "/src/", "/node_modules/"):
            assert status(srv, listing)[0] == 404, listing
        for bad in ("/dist/%2e%2e/secret.txt", "/dist/..%2fsecret.txt", "/dist/%2E%2E%2Fsecret.txt",
                    "/dist/my%20b%C3%BCild-q4f32_1/%2e%2e/%2e%2e/secret.txt", "/%2e%2e/secret.txt"):
            assert status(srv, bad)[0] == 404, bad
        assert status(srv, "/index.html")[0] == 200


@pytest.mark.browser
@pytest.mark.slow
def test_no_gpu_adapter_gets_its_own_message(system):
    """navigator.gpu present but no adapter: Model.load raises NoGPUAdapterError naming the fix (hardware
    acceleration, driver, Chromium flags), and the playground's message table shows that fix, not tvmjs' text."""
    with PlaygroundServer(system["tmp"]) as srv:
        res = run_page(srv.url(f"/harness/no-adapter-check.html?build=/dist/{system['dirs'][0].name}/"),
                       timeout_s=120)
    assert res["ok"], res["error"]
    r = res["result"]
    assert r["error"]["name"] == "NoGPUAdapterError", r
    assert r["error"]["message"].startswith("this browser has WebGPU but offers no GPU adapter (")
    assert "hardware acceleration" in r["error"]["fix"] and "--enable-unsafe-webgpu" in r["error"]["fix"]
    assert r["shown"]["title"].startswith("WebGPU is present, but the browser found no GPU adapter")
    assert r["shown"]["fix"] == r["error"]["fix"]


@pytest.mark.browser
@pytest.mark.slow
def test_a_rebuilt_build_replaces_its_cached_copy(tmp_path):
    """Visit a build, rebuild it with other weights, visit again with the same browser profile: the old cached files
    are dropped and the new ones fetched (a note says so), instead of a "tampered" error."""
    from safetensors.numpy import load_file, save_file

    from builder.fetch import fetch
    from builder.make import make

    src = tmp_path / "m"
    shutil.copytree(fetch("tiny-qwen3", show_progress=False).path, src)
    dist = tmp_path / "dist"
    build = make(str(src), "q0f32", dist, targets=("webgpu",), show_progress=False).out
    page = f"/harness/rebuild-check.html?build=/dist/{build.name}/"
    profile = tmp_path / "profile"
    with PlaygroundServer(dist) as srv:
        port = srv.port  # the same origin on every visit: the Cache API is per origin
    with PlaygroundServer(dist, port=port) as srv:
        first = run_page(srv.url(page), timeout_s=120, profile=profile)
    assert first["ok"], first["error"]
    assert first["result"]["fetched"] == first["result"]["files"] and not first["result"]["rebuilt"]
    w = load_file(src / "model.safetensors")
    name = next(k for k in w if k.endswith("embed_tokens.weight"))
    w[name] = w[name] * 1.5
    save_file(w, src / "model.safetensors", metadata={"format": "pt"})
    make(str(src), "q0f32", dist, targets=("webgpu",), show_progress=False)
    with PlaygroundServer(dist, port=port) as srv:
        second = run_page(srv.url(page), timeout_s=120, profile=profile)
    assert second["ok"], second["error"]
    r = second["result"]
    assert r["rebuilt"] and r["fetched"] == r["files"] and r["cached"] == 0, r
    assert "the build changed: old cached files dropped" in r["notes"]
    with PlaygroundServer(dist, port=port) as srv:
        third = run_page(srv.url(page), timeout_s=120, profile=profile)
    assert third["ok"] and not third["result"]["rebuilt"] and third["result"]["cached"] == r["files"], third
