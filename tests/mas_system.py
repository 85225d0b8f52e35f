"""The tiny 3-agent RecursiveMAS set shared by the latent-loop tests (Python, browser, playground)."""

import base64
import hashlib
import json

import numpy as np
import torch

AGENTS = ["tiny-qwen3", "tiny-llama", "tiny-qwen3"]  # planner, critic, solver (two families, one tokenizer)
QUESTION = "Tom has 3 boxes of 4 apples. How many apples does he have?"
# two headless Chromiums on one machine reach each other over WebRTC with plain loopback candidates
RTC_ARGS = ("--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns")


def tiny_links(m: int, rounds: int, pattern=None, specs=AGENTS):
    """PyTorch agents (one model spec per role; default the sequential pattern over AGENTS) and links perturbed away
    from their near-identity init."""
    from builder.fetch import model_source
    from train_links.agents import make_agents
    from train_links.patterns import sequential
    from train_links.system import LinkSet

    pattern = pattern or sequential()
    agents = {a.name: a for a in make_agents(specs, pattern, resolve=model_source)}
    links = LinkSet(agents, pattern, seed=0)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in links.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return agents, links, pattern


def tiny_system(tmp, m: int, rounds: int) -> dict:
    """The links saved into `tmp` first, then a q0f32 WebGPU + CPU build of each agent model beside them:
    {tmp, links_file, dirs (one build folder per role)}."""
    from builder.make import make
    from train_links import format as fmt

    agents, links, pattern = tiny_links(m=m, rounds=rounds)
    rl = fmt.save(tmp / "recursivelink.json", agents, pattern, links, m=m, rounds=rounds)
    dirs = {a: make(a, "q0f32", tmp, targets=("webgpu", "cpu"), show_progress=False).out for a in set(AGENTS)}
    return {"tmp": tmp, "links_file": rl, "dirs": [dirs[a] for a in AGENTS]}


def links_for_dims(src, dst, d: int):
    """A self-consistent recursivelink.json for agents of hidden size `d` (another model than the tests')."""
    from train_links.links import expected_shapes

    doc = json.loads(src.read_text())
    rng = np.random.default_rng(0)
    for a in doc["agents"]:
        a["hidden_size"] = d
        a["model_id"] = a["weights_sha256"] = ""  # random links: trained on no model in particular
    for link in doc["links"]:
        width = d if link["kind"] == "inner" else 2 * d
        link.update(src_dim=d, dst_dim=d, width=width, dtype="f32", tensors={})
        for k, shape in expected_shapes(link["kind"], d, d, width).items():
            raw = (rng.standard_normal(shape) * 0.1).astype("<f4").tobytes()
            link["tensors"][k] = {"shape": list(shape), "sha256": hashlib.sha256(raw).hexdigest(),
                                  "data": base64.b64encode(raw).decode()}
    dst.write_text(json.dumps(doc))
    return dst


def run_latent_page(tmp, dirs, links_name: str, case: dict, screenshot, timeout_s: int = 900,
                    case_name: str = "case.json") -> dict:
    """Run the browser loop (web/harness/latent-check.html) on builds under `tmp`, served at /data/ (a folder
    shared by several test files takes a case_name of its own)."""
    from builder.run.browser import serve_and_run
    from builder.run.latent_browser import page_url

    (tmp / case_name).write_text(json.dumps(case))
    page = page_url([f"/data/{d.name}/" for d in dirs], f"/data/{links_name}", f"/data/{case_name}")
    return serve_and_run(page, {"/data/": tmp}, timeout_s=timeout_s, screenshot=screenshot)
