#!/usr/bin/env python3
"""`mlcbuild eval` end to end at several `--batch` sizes side by side (1: one row at a time).

The same rows go through every configuration, block by block (a block of --block rows through each configuration
in turn, so a change in machine load hits them alike). Prints seconds per mode, the speed-up over the first
configuration, and how many rows' outputs equal the first configuration's (they must all be equal); the last line
is one JSON object.

  python3 bench/eval_speed.py                          # smollm2-135m x3, shipped links, 64 built-in held-out rows
  python3 bench/eval_speed.py --rows 0 --batches 1,8     # all 323 rows
"""

import os
import time

from common import REPO, add_json_file, append_line, bench_cache, loadavg, machine, now_iso, parser, print_table

LINKS = REPO / "train_links" / "shipped" / "smollm2-135m-sequential.json"


def main():
    ap = parser(__doc__)
    ap.add_argument("--build", default=None, help="a CPU build folder (default: make smollm2-135m into the cache)")
    ap.add_argument("--links", default=str(LINKS))
    ap.add_argument("--data", default="builtin", help="builtin (held-out split) or disjoint")
    ap.add_argument("--rows", type=int, default=64, help="spread evenly over the split (0: all)")
    ap.add_argument("--modes", default="single,text,latent")
    ap.add_argument("--batches", default="1,8", help="batch sizes; the first is the reference")
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    add_json_file(ap)
    a = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(a.threads)
    import json
    from pathlib import Path

    from builder.make import make
    from builder.run.evaluate import evaluate
    from builder.run.latent import LatentMAS
    from train_links.data import builtin

    build = Path(a.build) if a.build else make("smollm2-135m", None, bench_cache() / "eval_speed", targets=("cpu",),
                                               show_progress=True).out
    if a.data == "disjoint":
        from train_links.tasks_disjoint import disjoint_test

        rows = disjoint_test()
    else:
        rows = builtin()[1]
    if a.rows and a.rows < len(rows):
        rows = [rows[i * len(rows) // a.rows] for i in range(a.rows)]
    modes = [m for m in a.modes.split(",") if m]
    configs = [int(b) for b in a.batches.split(",")]
    mas = LatentMAS([build] * 3, Path(a.links))
    secs = {c: {m: 0.0 for m in modes} for c in configs}
    work = {c: {m: [0, 0] for m in modes} for c in configs}  # prompt positions prefilled, kept
    outs = {c: [] for c in configs}
    load = loadavg()
    t_all = time.perf_counter()
    for start in range(0, len(rows), a.block):
        block = rows[start:start + a.block]
        for c in configs:
            res = evaluate(mas, block, modes, batch=c)
            for m in modes:
                s = res["modes"][m]
                secs[c][m] += s["seconds"]
                work[c][m][0] += s["prompt_tokens"]
                work[c][m][1] += s["reused_tokens"]
            outs[c] += [{m: r["outputs"][m]["output"] for m in modes} for r in res["rows"]]
        print(f"  {start + len(block)}/{len(rows)} rows, {time.perf_counter() - t_all:.0f} s", flush=True)
    ref = configs[0]
    total = {c: sum(secs[c].values()) for c in configs}
    table, res = [], []
    for c in configs:
        same = {m: sum(x[m] == y[m] for x, y in zip(outs[c], outs[ref], strict=True)) for m in modes}
        name = f"batch {c}"
        table.append([name, *(f"{secs[c][m]:.1f}" for m in modes), f"{total[c]:.1f}",
                      f"{total[ref] / total[c]:.2f}x", " ".join(f"{same[m]}/{len(rows)}" for m in modes),
                      sum(w[0] for w in work[c].values())])
        res.append({"batch": c, "seconds": secs[c], "total": total[c],
                    "speedup": total[ref] / total[c], "same_outputs": same,
                    "prefilled": {m: work[c][m][0] for m in modes}, "kept": {m: work[c][m][1] for m in modes}})
    print_table(table, ["configuration", *(f"{m} s" for m in modes), "total s", "speed-up",
                        "same outputs as the first", "positions prefilled"], "l" + "r" * (len(modes) + 4))
    line = json.dumps({"build": str(build), "links": a.links, "data": a.data, "rows": len(rows), "modes": modes,
                       "threads": a.threads, "when": now_iso(), "machine": machine(), "load_before": load,
                       "load_after": loadavg(), "results": res})
    print(line)
    append_line(a.json_file, line)


if __name__ == "__main__":
    main()
