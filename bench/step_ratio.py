"""The step ratio of bench/latent_vs_text.py: a latent step (inner link + decode_last_hidden) against a decode step
(argmax + embed + decode with logits), timed back to back from the same prefilled prompt at the same KV positions."""

import json
import statistics
import tempfile
import time
from pathlib import Path

from common import load_script


def step_times(eng, link, emb, steps: int, reps: int) -> dict:
    """Latent steps and decode steps from the same prefilled prompt (same KV positions), alternating blocks.
    `link`: the agent's inner link (a torch module, run on one thread like builder.latent does)."""
    import numpy as np
    import torch

    rec = {k: [] for k in ("latent", "decode", "link", "decode_last_hidden", "argmax_embed", "decode_kernel")}

    def apply_link(h):
        with torch.no_grad():
            return link(torch.from_numpy(np.ascontiguousarray(h[None], dtype=np.float32))).numpy()[0]

    def block(total: str, parts: list, x) -> None:
        """`steps` steps; each applies `parts` in turn to the carried state x; records each part's time and the sum."""
        for _ in range(steps):
            t = [time.perf_counter()]
            for _part, f in parts:
                x = f(x)
                t.append(time.perf_counter())
            rec[total].append(t[-1] - t[0])
            for (part, _f), a, b in zip(parts, t, t[1:], strict=False):
                rec[part].append(b - a)

    torch.set_num_threads(1)
    for _ in range(reps):
        eng.reset()
        block("latent", [("link", apply_link), ("decode_last_hidden", eng.decode_hidden)], eng.hidden(emb)[-1])
        eng.reset()
        block("decode", [("argmax_embed", lambda lg: eng.embed([int(np.argmax(lg))])[0]),
                         ("decode_kernel", eng.decode)], eng.prefill(emb))
    med = {k: statistics.median(v) * 1000 for k, v in rec.items()}
    return {"prompt_positions": len(emb), "steps": steps, "reps": reps, "median_ms": med,
            "ratio": med["latent"] / med["decode"], "kernel_ratio": med["decode_last_hidden"] / med["decode_kernel"]}


def mas_step_times(mas, question: str, steps: int, reps: int) -> dict:
    name = mas.pattern.order()[0]
    agent = mas.agents[name]
    emb, _ = agent.prompt(question, {})
    return step_times(agent.engine, mas.links[f"inner:{name}"], emb, steps, reps)


def qwen3_step_times(question: str, steps: int, reps: int) -> dict:
    """The same step timing at Qwen3-0.6B size: the config with random weights (bench/build_qwen3_0p6b.py), its
    q4f32_1 CPU lib (bench/cpu_decode.py builds and caches it) and an untrained inner link of its width. A step's
    work does not depend on the weights' values or on training."""
    from builder.run.engine import Engine
    from train_links.links import InnerLink

    cpu = load_script("cpu_decode")
    make_arg, _ = cpu.source_of("qwen3-0.6b")
    eng = Engine(cpu.build("qwen3-0.6b", make_arg, "q4f32_1"), max_seq_len=512)
    emb = eng.embed(eng.chat_ids([{"role": "user", "content": question}]))
    res = step_times(eng, InnerLink(eng.hidden_size).eval(), emb, steps, reps)
    return {"model": "qwen3-0.6b config (random weights), q4f32_1", **res}


def browser_step_times(dist: Path, links_file: Path, question: str, steps: int, reps: int,
                       timeout_s: float = 1800) -> dict:
    """The step ratio on WebGPU (SwiftShader): web/harness/step-check.html on the SmolLM2 build, planner's link."""
    from builder.run.browser import serve_and_run
    from builder.run.engine import Engine

    ids = Engine(dist).chat_ids([{"role": "user", "content": question}])
    with tempfile.TemporaryDirectory(prefix="mlcbuild-bench-steps-") as tmp:
        (Path(tmp) / "case.json").write_text(json.dumps({"ids": ids, "agent": "planner", "steps": steps,
                                                         "reps": reps}))
        page = serve_and_run(f"harness/step-check.html?model=/build/&links=/build/{links_file.name}"
                             "&case=/case/case.json", {"/build/": dist, "/case/": Path(tmp)}, timeout_s=timeout_s)
    if not page["ok"]:
        raise RuntimeError(f"step-check failed: {page['error']}\n" + "\n".join(page["console"][-10:]))
    r = page["result"]
    return {"model": dist.name, "prompt_positions": r["positions"], "steps": steps, "reps": reps,
            "median_ms": {"latent": r["latent_ms"], "decode": r["decode_ms"]},
            "ratio": r["latent_ms"] / r["decode_ms"], "samples_ms": r["samples"]}
