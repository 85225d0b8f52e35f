#!/usr/bin/env python3
"""Latent vs text RecursiveMAS for each of the four patterns, measured side by side in one run on the CPU libraries.

Agents alternate over two heterogeneous models per role (default: tiny-llama-bpe, hidden 96 with its own BPE
tokenizer, and tiny-qwen3, hidden 64 with SmolLM2's). Links are random (perturbed from their init): this measures
cost (time, generated and prompt tokens), not answers. Each mode runs every prompt once after one warm-up.

  python3 bench/patterns.py                     # tiny heterogeneous agents (~2 min)
  python3 bench/patterns.py --models smollm2-135m,gemma3-270m --patterns sequential --prompts 2
"""

import json
import statistics
import sys
import time

from common import add_json_file, append_line, bench_cache, loadavg, machine, now_iso, parser, print_table

PATTERN_AGENTS = {"sequential": 3, "mixture": 3, "distillation": 2, "deliberation": 2}
PROMPTS = ["Tom has 3 boxes of 4 apples. How many apples does he have?",
           "A shelf holds 31 pencils. Then 2 pencils are taken away. How many pencils remain on the shelf?",
           "Which is larger, 47 or 74?", "What comes next: 2, 4, 6, 8, ?"]


def links_for(name: str, specs: list[str], root, m: int, rounds: int):
    """Random links for pattern `name` with these agent models, saved under root."""
    import torch

    from builder.fetch import model_source
    from train_links import format as fmt
    from train_links.agents import make_agents
    from train_links.patterns import get_pattern
    from train_links.system import LinkSet

    pattern = get_pattern(name, len(specs))
    agents = {a.name: a for a in make_agents(specs, pattern, resolve=model_source)}
    links = LinkSet(agents, pattern, seed=0)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in links.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return fmt.save(root / f"links-{name}.json", agents, pattern, links, m=m, rounds=rounds)


def measure(mas, prompts, mode: str, m: int, rounds: int, max_new: int, text_tokens: int) -> dict:
    mas.run(prompts[0], mode, max_new_tokens=max_new, rounds=rounds, m=m, text_tokens=text_tokens)  # warm-up
    runs = []
    for q in prompts:
        t0 = time.perf_counter()
        r = mas.run(q, mode, max_new_tokens=max_new, rounds=rounds, m=m, text_tokens=text_tokens)
        runs.append({"s": time.perf_counter() - t0, **{k: r["metrics"][k] for k in ("generated_tokens",
                                                                                     "prompt_tokens")}})
    return {"e2e_s_median": statistics.median(r["s"] for r in runs),
            "generated_tokens": sum(r["generated_tokens"] for r in runs),
            "prompt_tokens": sum(r["prompt_tokens"] for r in runs)}


def main():
    ap = parser(__doc__)
    ap.add_argument("--models", default="tiny-llama-bpe,tiny-qwen3", help="two presets, alternated over roles")
    ap.add_argument("--quant", default="q0f32")
    ap.add_argument("--patterns", default=",".join(PATTERN_AGENTS))
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--m", type=int, default=4, help="latent steps per hand-off")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=16, help="final answer budget, both modes")
    ap.add_argument("--text-tokens", type=int, default=64, help="text mode's per-message cap")
    add_json_file(ap)
    a = ap.parse_args()

    from builder.make import make
    from builder.run.latent import LatentMAS

    models = a.models.split(",")
    root = bench_cache() / "patterns"
    root.mkdir(parents=True, exist_ok=True)
    builds = {x: make(x, a.quant, root, targets=("cpu",), show_progress=False).out for x in set(models)}
    prompts = (PROMPTS * 4)[: a.prompts]
    res = {"when": now_iso(), "machine": machine(), "load_before": loadavg(), "models": models, "m": a.m,
           "rounds": a.rounds, "prompts": len(prompts), "patterns": {}}
    rows = []
    for name in a.patterns.split(","):
        specs = [models[i % len(models)] for i in range(PATTERN_AGENTS[name])]
        mas = LatentMAS([builds[s] for s in specs], links_for(name, specs, root, a.m, a.rounds))
        lat = measure(mas, prompts, "latent", a.m, a.rounds, a.max_tokens, a.text_tokens)
        txt = measure(mas, prompts, "text", a.m, a.rounds, a.max_tokens, a.text_tokens)
        speed = txt["e2e_s_median"] / lat["e2e_s_median"]
        fewer = 1 - lat["generated_tokens"] / txt["generated_tokens"] if txt["generated_tokens"] else None
        res["patterns"][name] = {"agents": specs, "latent": lat, "text": txt, "speedup": speed,
                                 "token_reduction": fewer}
        rows.append([name, "+".join(specs), f"{lat['e2e_s_median']:.2f}", f"{txt['e2e_s_median']:.2f}",
                     f"{speed:.1f}x", lat["generated_tokens"], txt["generated_tokens"],
                     "-" if fewer is None else f"{fewer:.1%}"])
        print(f"{name}: latent {lat['e2e_s_median']:.2f} s, text {txt['e2e_s_median']:.2f} s", file=sys.stderr)
    res["load_after"] = loadavg()
    print_table(rows, ["pattern", "agents", "latent s", "text s", "speedup", "latent gen", "text gen",
                       "fewer tokens"], "llrrrrrr")
    line = json.dumps(res)
    print(line)
    append_line(a.json_file, line)


if __name__ == "__main__":
    main()
