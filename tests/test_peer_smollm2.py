"""Nightly: the shipped SmolLM2-135M links split over two pages (WebRTC, headless Chromium on SwiftShader): the
planner and critic in one page, the solver in the other, answer three held-out questions as Python does with every
role on the CPU libraries. SwiftShader takes about a minute per 60-token prefill here, so the answers are short."""

import json
import threading
from importlib import resources

import pytest
from mas_system import RTC_ARGS

from builder.make import make
from builder.paths import web_dir
from builder.run.browser import StaticServer, run_page
from builder.run.latent import LatentMAS
from builder.run.peer_server import PeerServer
from train_links import format as fmt
from train_links.data import builtin

MAX_NEW = 6


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.nightly  # ~15 min on SwiftShader: .github/workflows/nightly.yml runs it
def test_shipped_links_split_over_two_pages_answer_as_python(webgpu_dist, tmp_path, artifacts):
    build = make("smollm2-135m", "q4f32_2", webgpu_dist, targets=("webgpu", "cpu"), show_progress=False).out
    links = tmp_path / "recursivelink.json"
    links.write_bytes(resources.files("train_links.shipped").joinpath("smollm2-135m-sequential.json").read_bytes())
    pattern = fmt.load(links).pattern
    held = builtin()[1]
    questions = [held[i * len(held) // 3]["question"] for i in range(3)]
    mas = LatentMAS([build] * 3, links)
    for i, question in enumerate(questions):
        want = mas.run(question, "latent", max_new_tokens=MAX_NEW)["answer"]
        (tmp_path / f"case{i}.json").write_text(json.dumps({"question": question, "max_new_tokens": MAX_NEW}))
        out = {}
        with PeerServer() as hub, StaticServer({"/": web_dir(), "/dist/": webgpu_dist, "/data/": tmp_path}) as srv:
            def page(side, roles, i=i, out=out):
                agents = ",".join(f"/dist/{build.name}/" if n in roles else "" for n in pattern.agents)
                url = srv.url(f"harness/peer-check.html?agents={agents}&links=/data/recursivelink.json"
                              f"&case=/data/case{i}.json&rtc={side}&signal={hub.url(f'/signal/q{i}')}"
                              "&timeout_ms=900000")
                out[side] = run_page(url, timeout_s=1800, screenshot=artifacts / f"q{i}-{side}.png",
                                     chromium_args=RTC_ARGS)

            threads = [threading.Thread(target=page, args=a) for a in (("host", ("planner", "critic")),
                                                                        ("join", ("solver",)))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert out["host"]["ok"] and out["join"]["ok"], (out["host"].get("error"), out["join"].get("error"))
        assert out["join"]["result"]["answer"] == out["host"]["result"]["answer"] == want, (question, want)
        print(f"q{i}: {question!r} -> {want!r}; {out['host']['result']['wire']['bytes_sent']} bytes over WebRTC")
