#!/usr/bin/env python3
"""Latent vs text RecursiveMAS, same agents, prompts and rounds, measured side by side in one run.

Python side (builder.latent.LatentMAS on the CPU libraries): the real SmolLM2-135M q4f32_1 three-agent sequential set
(planner -> critic -> solver, one model) with its trained recursivelink.json (`mlcbuild make smollm2-135m --quant
q4f32_1 --links`, built once into <mlcbuild cache>/bench/latent_vs_text/ and reused), r = 3, m = the links' m, on
held-out rows of train_links.data. Latent and text runs alternate prompt by prompt (the order flips every prompt)
after one untimed warm-up run of each mode. Every agent keeps its prompt prefix in its KV cache between rounds, in
both modes. Latent mode decodes only the final answer; text mode decodes every agent's message and the answer (at
most --max-tokens in both modes). Two text baselines: "text@256", agents write until their turn ends (at most 256
tokens, `mlcbuild run`'s default, a text MAS as people run it), and "text@m", every message cut at m tokens (the
same budget as a latent block).
  speedup          median text end-to-end time / median latent end-to-end time
  token reduction  1 - (latent generated tokens) / (text generated tokens), summed over the prompts
  step ratio       latent step / decode step, timed back to back from the same prefilled prompt at the same KV
                   positions: latent step = inner link + decode_last_hidden; decode step = argmax + embed + decode
                   (logits). The per-step averages inside the timed runs are printed too. Timed again at
                   Qwen3-0.6B size (its config with random weights, q4f32_1 CPU lib, untrained inner link).
Browser side (headless Chromium, WebGPU on SwiftShader): the tiny 3-agent set of tests/mas_system.py, r = 3, in the
playground (web/index.html ?auto=1&mode=both). The first visit starts from an empty browser profile; the later visits
reuse that profile, so the artifact cache (web/src/runtime/cache.js) is warm. Load = the playground's own load_ms
(links, configs, sha256 of every shard, fetch or cache read, model load). The same first-vs-cached load is measured
on the SmolLM2 agents (?auto=load, no run): on 127.0.0.1 as served, and through an emulated network (--throttle,
default 100 Mbit/s with 20 ms latency), where the first visit pays for the download the cache saves.

Prints a table; the last stdout line is one JSON object (also appended to --json-file). `--quick`: the tiny set on the
Python side only (~1 min).
"""

import json
import os
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from common import BENCH, REPO, add_json_file, append_line, bench_cache, loadavg, now_iso, parser, print_table
from step_ratio import browser_step_times, mas_step_times, qwen3_step_times

# bench/train_links.py would shadow the train_links package, so bench/ goes last (the bench modules that
# load_script brings in still import from it); tests/mas_system.py has the tiny 3-agent set
sys.path[:] = ([str(REPO), str(REPO / "tests")] + [p for p in sys.path if Path(p or ".").resolve() != BENCH]
               + [str(BENCH)])

TARGETS = {"speedup": 2.4, "token_reduction": 0.756, "step_ratio": 0.75, "load_ratio": 5.0}
TINY_M = 4


def _root() -> Path:
    return bench_cache() / "latent_vs_text"


def smollm2_system(root: Path, targets=("webgpu", "cpu")):
    from builder.make import LinksStep, make

    out = Path(make("smollm2-135m", "q4f32_1", root, targets=targets, show_progress=False, links=LinksStep()).out)
    return [out] * 3, out / "recursivelink.json"


def tiny_system(root: Path, rounds: int, targets=("webgpu", "cpu")):
    """tests/mas_system.py's set: planner tiny-qwen3, critic tiny-llama, solver tiny-qwen3, q0f32, perturbed links."""
    from mas_system import AGENTS, tiny_links

    from builder.make import make
    from train_links import format as fmt

    root.mkdir(parents=True, exist_ok=True)
    agents, links, pattern = tiny_links(m=TINY_M, rounds=rounds)
    rl = fmt.save(root / "recursivelink.json", agents, pattern, links, m=TINY_M, rounds=rounds)
    dirs = {a: Path(make(a, "q0f32", root, targets=targets, show_progress=False).out) for a in set(AGENTS)}
    return [dirs[a] for a in AGENTS], rl


def prompts(n: int) -> list[str]:
    from train_links.data import builtin

    return [r["question"] for r in builtin()[1][:n]]


def verdict(value, target, higher=True) -> str:
    if value is None:
        return "n/a"
    return "MEETS" if (value >= target if higher else value <= target) else "MISSES"


# -- Python side ----------------------------------------------------------------------------------------------------

def _summary(out: dict) -> dict:
    m = out["metrics"]
    per = {s: [x for x in m["stages"] if x["stage"] == s] for s in ("latent", "decode")}
    lat_ms, dec_ms = (sum(x["ms"] for x in per[s]) for s in ("latent", "decode"))
    dec_tok = sum(x["tokens"] for x in per["decode"])
    return {"e2e_s": m["e2e_latency_s"], "generated_tokens": m["generated_tokens"], "prompt_tokens": m["prompt_tokens"],
            "latent_steps": m["latent_steps"], "answer": out["answer"],
            "latent_ms_per_step": lat_ms / m["latent_steps"] if m["latent_steps"] else None,
            "decode_ms_per_token": dec_ms / dec_tok if dec_tok else None}


def python_side(dirs, links_file, qs, rounds, max_new, text_budgets, step_n, step_reps) -> dict:
    from builder.run.latent import LatentMAS

    mas = LatentMAS(dirs, links_file)
    modes = {"latent": None, **{f"text@{t}": t for t in text_budgets}}
    for mode, tt in modes.items():  # warm-up: first-call costs (thread pool, allocations) are not in the figures
        mas.run(qs[0], mode.split("@")[0], max_new_tokens=4, text_tokens=tt and min(tt, 4), rounds=1)
    runs = {mode: [] for mode in modes}
    for i, q in enumerate(qs):
        order = list(modes) if i % 2 == 0 else list(reversed(modes))
        for mode in order:
            out = mas.run(q, mode.split("@")[0], max_new_tokens=max_new, text_tokens=modes[mode], rounds=rounds)
            runs[mode].append(_summary(out))
    res = {"model": str(dirs[0].name), "agents": [d.name for d in dirs], "rounds": rounds, "m": mas.m,
           "max_new_tokens": max_new, "prompts": qs, "runs": runs, "modes": {}}
    for mode, rs in runs.items():
        res["modes"][mode] = {"e2e_s_median": statistics.median(r["e2e_s"] for r in rs),
                              "generated_tokens": sum(r["generated_tokens"] for r in rs),
                              "prompt_tokens": sum(r["prompt_tokens"] for r in rs),
                              "latent_steps": sum(r["latent_steps"] for r in rs)}
    res["compare"] = {mode: compare(res["modes"]["latent"], res["modes"][mode]) for mode in modes if mode != "latent"}
    res["steps"] = mas_step_times(mas, qs[0], step_n, step_reps)
    lat = [r["latent_ms_per_step"] for r in runs["latent"] if r["latent_ms_per_step"]]
    dec = [r["decode_ms_per_token"] for mode in modes if mode != "latent" for r in runs[mode]
           if r["decode_ms_per_token"]]
    res["steps"]["in_run_ms"] = {"latent": statistics.median(lat) if lat else None,
                                 "decode": statistics.median(dec) if dec else None}
    return res


def compare(lat: dict, txt: dict) -> dict:
    gen = txt["generated_tokens"]
    return {"speedup": txt["e2e_s_median"] / lat["e2e_s_median"],
            "token_reduction": 1 - lat["generated_tokens"] / gen if gen else None}


# -- browser side ---------------------------------------------------------------------------------------------------

def browser_side(root: Path, dirs, links_file, question, rounds, max_new, visits, timeout_s=1800) -> dict:
    from builder.run.browser import run_page
    from builder.run.serve import PlaygroundServer

    query = {"auto": "1", "mode": "both", "r": rounds, "m": TINY_M, "max": max_new, "text_tokens": TINY_M,
             "q": question, "builds": ",".join(f"/dist/{d.name}/" for d in dirs),
             "links": f"/dist/{links_file.relative_to(root).as_posix()}"}
    out = []
    with tempfile.TemporaryDirectory(prefix="mlcbuild-bench-profile-") as profile, PlaygroundServer(root) as srv:
        for i in range(visits):  # one server for all visits: the cache keys are absolute URLs (port included)
            t0 = time.perf_counter()
            page = run_page(srv.playground_url(urllib.parse.urlencode(query)), timeout_s=timeout_s,
                            profile=Path(profile))
            wall = time.perf_counter() - t0
            if not page["ok"]:
                tail = "\n".join(page["console"][-10:])
                raise RuntimeError(f"playground visit {i + 1} failed: {page['error']}\n{tail}")
            r = page["result"]
            fetched = sum(v["fetched"] for v in r["verified"].values())
            cached = sum(v["cached"] for v in r["verified"].values())
            out.append({"visit": "first" if i == 0 else "cached", "load_ms": r["load_ms"], "page_wall_s": wall,
                        "shards_fetched": fetched, "shards_cached": cached,
                        **{mode: {"e2e_s": r[mode]["metrics"]["e2e_latency_s"],
                                  "generated_tokens": r[mode]["metrics"]["generated_tokens"],
                                  "prompt_tokens": r[mode]["metrics"]["prompt_tokens"],
                                  "latent_steps": r[mode]["metrics"]["latent_steps"],
                                  "decode_tokens_per_s": r[mode]["metrics"]["decode_tokens_per_s"],
                                  "answer": r[mode]["answer"]} for mode in ("latent", "text")}})
    text = f"text@{TINY_M}"
    modes = {name: {"e2e_s_median": statistics.median(v[mode]["e2e_s"] for v in out),
                    "generated_tokens": sum(v[mode]["generated_tokens"] for v in out),
                    "prompt_tokens": sum(v[mode]["prompt_tokens"] for v in out),
                    "latent_steps": sum(v[mode]["latent_steps"] for v in out)}
             for name, mode in (("latent", "latent"), (text, "text"))}
    first = out[0]["load_ms"]
    cached = statistics.median(v["load_ms"] for v in out[1:]) if len(out) > 1 else None
    return {"agents": [d.name for d in dirs], "rounds": rounds, "m": TINY_M, "text_tokens": TINY_M,
            "max_new_tokens": max_new, "question": question, "visits": out, "modes": modes,
            "compare": {text: compare(modes["latent"], modes[text])},
            "load": {"first_ms": first, "cached_ms": cached, "ratio": first / cached if cached else None}}


def load_side(root: Path, dirs, links_file, visits: int, throttle: tuple[int, int] | None,
              timeout_s: float = 1800) -> dict:
    """Playground visits that only load the agents (?auto=load): the first from an empty browser profile, the rest
    in the same profile (Cache API warm). `throttle`: (kbit/s, latency ms) for the page's network requests."""
    from builder.run.browser import run_page
    from builder.run.serve import PlaygroundServer

    query = {"auto": "load", "builds": ",".join(f"/dist/{d.relative_to(root).as_posix()}/" for d in dirs),
             "links": f"/dist/{links_file.relative_to(root).as_posix()}"}
    out = []
    with tempfile.TemporaryDirectory(prefix="mlcbuild-bench-profile-") as profile, PlaygroundServer(root) as srv:
        for i in range(visits):
            page = run_page(srv.playground_url(urllib.parse.urlencode(query)), timeout_s=timeout_s,
                            profile=Path(profile), throttle=throttle)
            if not page["ok"]:
                raise RuntimeError(f"load visit {i + 1} failed: {page['error']}\n" + "\n".join(page["console"][-10:]))
            r = page["result"]
            out.append({"visit": "first" if i == 0 else "cached", "load_ms": r["load_ms"],
                        "shards_fetched": sum(v["fetched"] for v in r["verified"].values()),
                        "shards_cached": sum(v["cached"] for v in r["verified"].values()),
                        "verify_ms": sum(v["ms"] for v in r["verified"].values()),
                        "stages_ms": r["load_times"]})
    first = out[0]["load_ms"]
    cached = statistics.median(v["load_ms"] for v in out[1:]) if len(out) > 1 else None
    return {"throttle": throttle, "visits": out, "first_ms": first, "cached_ms": cached,
            "ratio": first / cached if cached else None}


# -- report ---------------------------------------------------------------------------------------------------------

def rows_for(side: str, res: dict) -> list[tuple]:
    rows = []
    for mode, c in res["compare"].items():
        lat, txt = res["modes"]["latent"], res["modes"][mode]
        rows.append((side, f"latent vs {mode}: e2e median (s)",
                     f"{lat['e2e_s_median']:.3f} vs {txt['e2e_s_median']:.3f}",
                     f"{c['speedup']:.2f}x", f">= {TARGETS['speedup']}x", verdict(c["speedup"], TARGETS["speedup"])))
        red = c["token_reduction"]
        rows.append((side, f"latent vs {mode}: generated tokens",
                     f"{lat['generated_tokens']} vs {txt['generated_tokens']}",
                     "n/a" if red is None else f"{red:.1%} fewer", f">= {TARGETS['token_reduction']:.1%}",
                     verdict(red, TARGETS["token_reduction"])))
    return rows


def report(result: dict) -> None:
    rows = []
    py = result.get("python")
    if py:
        rows += rows_for("python", py)
        s = py["steps"]
        med = s["median_ms"]
        rows.append(("python", "latent step / decode step (ms)", f"{med['latent']:.2f} / {med['decode']:.2f}",
                     f"{s['ratio']:.2f}", f"<= {TARGETS['step_ratio']}",
                     verdict(s["ratio"], TARGETS["step_ratio"], higher=False)))
        rows.append(("python", "  kernels: decode_last_hidden / decode", f"{med['decode_last_hidden']:.2f} / "
                     f"{med['decode_kernel']:.2f}", f"{s['kernel_ratio']:.2f}", "info", ""))
        q3 = py.get("steps_qwen3")
        if q3:
            mq = q3["median_ms"]
            rows.append(("python", "Qwen3-0.6B size: latent step / decode step (ms)",
                         f"{mq['latent']:.2f} / {mq['decode']:.2f}", f"{q3['ratio']:.2f}",
                         f"<= {TARGETS['step_ratio']}",
                         verdict(q3["ratio"], TARGETS["step_ratio"], higher=False)))
            rows.append(("python", "  kernels: decode_last_hidden / decode", f"{mq['decode_last_hidden']:.2f} / "
                         f"{mq['decode_kernel']:.2f}", f"{q3['kernel_ratio']:.2f}", "info", ""))
        ir = s["in_run_ms"]
        if ir["latent"] and ir["decode"]:
            rows.append(("python", "  in the runs: ms per latent step / per token",
                         f"{ir['latent']:.2f} / {ir['decode']:.2f}",
                         f"{ir['latent'] / ir['decode']:.2f}", "info", ""))
    br = result.get("browser") or {}
    if "compare" in br:
        rows += rows_for("browser", br)
        ld = br["load"]
        rows.append(("browser", "playground load first / cached (ms)",
                     f"{ld['first_ms']:.0f} / " + (f"{ld['cached_ms']:.0f}" if ld["cached_ms"] else "-"),
                     f"{ld['ratio']:.2f}x" if ld["ratio"] else "n/a", f">= {TARGETS['load_ratio']}x",
                     verdict(ld["ratio"], TARGETS["load_ratio"])))
    bs = br.get("steps_smollm2")
    if bs:
        rows.append(("browser", "SmolLM2 latent step / decode step (ms)",
                     f"{bs['median_ms']['latent']:.0f} / {bs['median_ms']['decode']:.0f}", f"{bs['ratio']:.2f}",
                     f"<= {TARGETS['step_ratio']}", verdict(bs["ratio"], TARGETS["step_ratio"], higher=False)))
    for ld in br.get("load_smollm2", []):
        net = "127.0.0.1" if not ld["throttle"] else f"{ld['throttle'][0] / 1000:g} Mbit/s, {ld['throttle'][1]} ms"
        rows.append(("browser", f"SmolLM2 load first / cached, {net} (ms)",
                     f"{ld['first_ms']:.0f} / " + (f"{ld['cached_ms']:.0f}" if ld["cached_ms"] else "-"),
                     f"{ld['ratio']:.2f}x" if ld["ratio"] else "n/a", f">= {TARGETS['load_ratio']}x",
                     verdict(ld["ratio"], TARGETS["load_ratio"])))
    result["table"] = [dict(zip(("side", "measure", "values", "figure", "target", "verdict"), r, strict=True))
                       for r in rows]
    print_table(rows, ("side", "measure", "values", "figure", "target", "verdict"))


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny models, Python side only (~1 min)")
    ap.add_argument("--prompts", type=int, default=None, help="held-out prompts (default 5; --quick 2)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=32, help="final answer budget, both modes")
    ap.add_argument("--text-tokens", type=int, default=None, help="text mode's per-message cap (default 256, "
                    "builder.run.latent.TEXT_TOKENS: agents write until their turn ends); a second text baseline "
                    "always runs with the equal budget m")
    ap.add_argument("--browser-visits", type=int, default=3, help="playground visits (1 cold, the rest cached)")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--throttle", default="100000,20", help="KBIT_S,LATENCY_MS of the emulated network for the "
                    "SmolLM2 load visits (default 100 Mbit/s, 20 ms); 'none' skips them")
    ap.add_argument("--no-qwen3-steps", action="store_true", help="skip the step timing at Qwen3-0.6B size")
    ap.add_argument("--only", choices=["load", "browser-steps"], default=None,
                    help="only the SmolLM2 load visits, or only the browser step timing")
    ap.add_argument("--threads", type=int, default=2, help="TVM_NUM_THREADS for the CPU libs")
    ap.add_argument("--root", type=Path, default=None,
                    help="where the builds go (default <cache>/bench/latent_vs_text)")
    add_json_file(ap)
    a = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(a.threads)
    import torch

    torch.set_num_threads(1)  # the links are tiny; keep torch's pool from competing with TVM's
    root = a.root or _root()
    t_start = time.perf_counter()
    meta = {"date": now_iso(), "command": " ".join(["bench/latent_vs_text.py", *sys.argv[1:]]), "quick": a.quick,
            "threads": a.threads, "cpus": os.cpu_count(), "loadavg_start": loadavg()}
    result = {"meta": meta, "targets": TARGETS}
    if a.quick:
        dirs, links = tiny_system(root / "tiny", a.rounds, targets=("cpu",))
        qs = prompts(a.prompts or 2)
        result["python"] = python_side(dirs, links, qs, a.rounds, 8, [a.text_tokens or 16, TINY_M], 8, 2)
    else:
        dirs, links = smollm2_system(root)
        qs = prompts(a.prompts or 5)
        from builder.run.latent import TEXT_TOKENS
        from train_links import format as fmt

        m = fmt.load(links).meta["latent_steps"]
        if a.only is None:
            result["python"] = python_side(dirs, links, qs, a.rounds, a.max_tokens, [a.text_tokens or TEXT_TOKENS, m],
                                           16, 3)
            if not a.no_qwen3_steps:
                result["python"]["steps_qwen3"] = qwen3_step_times(qs[0], 16, 3)
        if not a.no_browser:
            br = result.setdefault("browser", {})
            if a.only is None:
                tdirs, tlinks = tiny_system(root / "tiny", a.rounds)
                br.update(browser_side(root / "tiny", tdirs, tlinks, qs[0], a.rounds, 8, a.browser_visits))
            if a.only in (None, "browser-steps"):
                br["steps_smollm2"] = browser_step_times(dirs[0], links, qs[0], 4, 2)
            if a.only in (None, "load"):
                loads = [load_side(root, dirs, links, a.browser_visits, None)]
                if a.throttle != "none":
                    kbit, lat = (int(x) for x in a.throttle.split(","))
                    loads.append(load_side(root, dirs, links, a.browser_visits, (kbit, lat)))
                br["load_smollm2"] = loads
    meta["loadavg_end"] = loadavg()
    meta["wall_s"] = round(time.perf_counter() - t_start, 1)
    print(f"# {meta['date']}  threads {a.threads}, {meta['cpus']} cpus, loadavg {meta['loadavg_start']} -> "
          f"{meta['loadavg_end']}, {meta['wall_s']} s")
    report(result)
    line = json.dumps(result, default=str)
    print(line)  # the last stdout line
    append_line(a.json_file, line)


if __name__ == "__main__":
    main()
