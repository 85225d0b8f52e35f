#!/usr/bin/env python3
"""`mlcbuild eval` end to end at several `--batch` sizes side by side (1: one row at a time).

The same rows go through every configuration, block by block (a block of --block rows through each configuration
in turn, so a change in machine load hits them alike). Prints seconds per mode, the speed-up over the first
configuration, and how many rows' outputs equal the first configuration's (they must all be equal); the last line
is one JSON object.

  python3 bench/eval_speed.py                          # smollm2-135m x3, shipped links, 64 built-in held-out rows
  python3 bench/eval_speed.py --rows 0 --batches 1,8     # all 323 rows
  python3 bench/eval_speed.py --before /tmp/old --before-build DIR --batches 8   # against an older checkout

--before DIR adds an older checkout of this repository (e.g. `git worktree add /tmp/old COMMIT`) as the first
configuration: each block runs through its own `mlcbuild eval` (one row at a time; its build from --before-build,
made by that checkout) in a subprocess, and its seconds are the ones its eval reports per mode, as for the others.
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
    ap.add_argument("--before", default=None, help="an older checkout whose eval goes first (reference)")
    ap.add_argument("--before-build", default=None, help="the build that checkout made (needed with --before)")
    add_json_file(ap)
    a = ap.parse_args()
    if a.before and not a.before_build:
        raise SystemExit("--before needs --before-build: the build that checkout made")
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
    configs: list = [int(b) for b in a.batches.split(",") if b]
    if a.before:
        configs.insert(0, "before")
    mas = LatentMAS([build] * 3, Path(a.links))
    secs = {c: {m: 0.0 for m in modes} for c in configs}
    work = {c: {m: [0, 0] for m in modes} for c in configs}  # prompt positions prefilled, kept
    outs = {c: [] for c in configs}
    load = loadavg()
    t_all = time.perf_counter()
    for start in range(0, len(rows), a.block):
        block = rows[start:start + a.block]
        for c in configs:
            if c == "before":
                res = before_eval(a, block, modes)
            else:
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
        name = f"batch {c}" if c != "before" else f"before ({a.before}, one row at a time)"
        table.append([name, *(f"{secs[c][m]:.1f}" for m in modes), f"{total[c]:.1f}",
                      f"{total[ref] / total[c]:.2f}x", " ".join(f"{same[m]}/{len(rows)}" for m in modes),
                      sum(w[0] for w in work[c].values())])
        res.append({"batch": 1 if c == "before" else c, "code": a.before if c == "before" else "this checkout",
                    "seconds": secs[c], "total": total[c],
                    "speedup": total[ref] / total[c], "same_outputs": same,
                    "prefilled": {m: work[c][m][0] for m in modes}, "kept": {m: work[c][m][1] for m in modes}})
    print_table(table, ["configuration", *(f"{m} s" for m in modes), "total s", "speed-up",
                        "same outputs as the first", "positions prefilled"], "l" + "r" * (len(modes) + 4))
    line = json.dumps({"build": str(build), "links": a.links, "data": a.data, "rows": len(rows), "modes": modes,
                       "threads": a.threads, "when": now_iso(), "machine": machine(), "load_before": load,
                       "load_after": loadavg(), "results": res})
    print(line)
    append_line(a.json_file, line)


def before_eval(a, block: list[dict], modes: list[str]) -> dict:
    """`mlcbuild eval` of the checkout at a.before on these rows (one row at a time), as evaluate()'s result."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "rows.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in block))
        env = {**os.environ, "PYTHONPATH": str(Path(a.before).resolve()), "TVM_NUM_THREADS": str(a.threads)}
        build, links = str(Path(a.before_build).resolve()), str(Path(a.links).resolve())  # it runs in tmp
        out = subprocess.run([sys.executable, "-m", "builder.cli", "eval", "--agents", ",".join([build] * 3),
                              "--links", links, "--data", str(data), "--modes", ",".join(modes), "--json",
                              "--quiet"], env=env, cwd=tmp, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"the eval of {a.before} failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout)


if __name__ == "__main__":
    main()
