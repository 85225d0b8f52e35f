#!/usr/bin/env python3
"""Batched decode on the CPU runtime: one step of B sequences (Engine.batch, builder/run/batch.py) against B lone
steps, for B in --sizes, with logits (a text token) and without (a latent step, decode_last_hidden).

Each of B sequences holds its own 128-token prompt. Lone steps and batched steps alternate repetition by
repetition, and every batched row's logits are compared with the same sequence's lone step (they are the same bits).
Prints per-row milliseconds and the speed-up; the last line is one JSON object.

  python3 bench/batch_decode.py                      # smollm2-135m, its default quantization
  python3 bench/batch_decode.py --quick              # tiny-llama q4f32_2 (a smoke run)
"""

import os
import statistics
import time

from common import add_json_file, append_line, bench_cache, loadavg, machine, now_iso, parser, print_table

PROMPT = 128


def main():
    ap = parser(__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--quant", default=None)
    ap.add_argument("--sizes", default="1,2,4,8,16")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--quick", action="store_true", help="tiny-llama q4f32_2, sizes 1,4, 3 reps")
    add_json_file(ap)
    a = ap.parse_args()
    if a.quick:
        a.model, a.quant, a.sizes, a.reps = "tiny-llama", "q4f32_2", "1,4", 3
    os.environ["TVM_NUM_THREADS"] = str(a.threads)
    import json

    import numpy as np

    from builder.make import make
    from builder.run.engine import Engine

    build = make(a.model, a.quant, bench_cache() / "batch_decode", targets=("cpu",), show_progress=not a.quick).out
    eng = Engine(build, max_seq_len=PROMPT + 64)
    sizes = [int(s) for s in a.sizes.split(",")]
    rng = np.random.default_rng(0)
    prompts = [eng.embed(rng.integers(0, eng.vocab_size, PROMPT)) for _ in range(max(sizes))]
    lone = [eng.sequence() for _ in prompts]
    batch = eng.batch(max(sizes))
    for i, p in enumerate(prompts):
        lone[i].prefill(p)
        batch.prefill(i, p)
    x = eng.embed(rng.integers(0, eng.vocab_size, max(sizes)))
    load = loadavg()
    rows, res = [], []
    for b in sizes:
        ids = list(range(b))
        t = {"lone": [], "batch": [], "lone_hidden": [], "batch_hidden": []}
        worst = 0.0
        for _ in range(a.reps):
            for i in ids:  # every step adds a position: keep the sequences at PROMPT + 1 for comparable steps
                lone[i].truncate(PROMPT)
                batch.truncate(i, PROMPT)
            t0 = time.perf_counter()
            want = [lone[i].decode(x[i]) for i in ids]
            t["lone"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            got = batch.decode(ids, x[:b])
            t["batch"].append(time.perf_counter() - t0)
            worst = max(worst, max(float(np.abs(got[i] - want[i]).max()) for i in ids))
            for i in ids:
                lone[i].truncate(PROMPT)
                batch.truncate(i, PROMPT)
            t0 = time.perf_counter()
            for i in ids:
                lone[i].decode_hidden(x[i])
            t["lone_hidden"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            batch.decode_hidden(ids, x[:b])
            t["batch_hidden"].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1000 / b for k, v in t.items()}  # ms per sequence
        r = {"batch": b, "ms_per_row": med, "speedup": med["lone"] / med["batch"],
             "speedup_hidden": med["lone_hidden"] / med["batch_hidden"], "max_abs_diff": worst}
        res.append(r)
        rows.append([b, f"{med['lone']:.2f}", f"{med['batch']:.2f}", f"{r['speedup']:.2f}x",
                     f"{med['lone_hidden']:.2f}", f"{med['batch_hidden']:.2f}", f"{r['speedup_hidden']:.2f}x",
                     f"{worst:.1e}"])
    print_table(rows, ["B", "lone ms/row", "batched ms/row", "speed-up", "latent lone", "latent batched",
                       "speed-up", "max |logit diff|"], "r")
    line = json.dumps({"model": build.name, "threads": a.threads, "prompt": PROMPT, "when": now_iso(),
                       "machine": machine(), "load_before": load, "load_after": loadavg(), "results": res})
    print(line)
    append_line(a.json_file, line)


if __name__ == "__main__":
    main()
