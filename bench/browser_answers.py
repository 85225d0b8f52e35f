#!/usr/bin/env python3
"""Held-out questions answered by the latent MAS in the browser (`mlcbuild run --browser`: the playground's JS loop
on the WebGPU libraries, headless Chromium on SwiftShader) and in Python (`builder.latent` on the CPU libraries),
with the same links, r and m: the answer texts must be the same.

  python3 bench/browser_answers.py --build dist/smollm2-135m-q4f32_2 [--links FILE] [--n 5] [--max-tokens 16]
      [--data builtin|disjoint] [--spread]

The links default to the build's recursivelink.json; the questions are the first n rows of the built-in held-out
split or, with --data disjoint, of the template-disjoint test split (--spread: n rows spread evenly over the split,
so over its families). Prints a table; the last stdout line is one JSON object.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True, type=Path)
    ap.add_argument("--links", type=Path, default=None)
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--data", choices=["builtin", "disjoint"], default="builtin")
    ap.add_argument("--spread", action="store_true", help="n rows spread evenly over the split, not the first n")
    a = ap.parse_args()
    links = a.links or a.build / "recursivelink.json"

    from builder.run.latent import LatentMAS
    from builder.run.latent_browser import run_browser
    from train_links.data import builtin
    from train_links.tasks_disjoint import disjoint_test

    every = builtin()[1] if a.data == "builtin" else disjoint_test()
    rows = [every[i * len(every) // a.n] for i in range(a.n)] if a.spread else every[:a.n]
    dirs = [a.build] * 3
    mas = LatentMAS(dirs, links)
    out = []
    for row in rows:
        t0 = time.perf_counter()
        py = mas.run(row["question"], "latent", max_new_tokens=a.max_tokens)["answer"]
        t1 = time.perf_counter()
        web = run_browser(dirs, links, row["question"], ["latent"], None, None, a.max_tokens, 8)["latent"]["answer"]
        t2 = time.perf_counter()
        out.append({"question": row["question"], "python": py, "browser": web, "same": py == web,
                    "python_s": round(t1 - t0, 2), "browser_s": round(t2 - t1, 2)})
        print(f"{'same' if py == web else 'DIFF':<5} {py!r:<24} {web!r:<24} {row['question'][:60]}", flush=True)
    same = sum(r["same"] for r in out)
    print(f"{same}/{len(out)} answers identical (r={mas.rounds}, m={mas.m}, load {os.getloadavg()[0]:.2f})")
    print(json.dumps({"build": str(a.build), "links": str(links), "data": a.data, "rounds": mas.rounds, "m": mas.m,
                      "same": same, "n": len(out), "rows": out}))


if __name__ == "__main__":
    main()
