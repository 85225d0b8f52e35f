#!/usr/bin/env python3
"""CPU libs vs transformers: decode step time and 128-token prefill time, same weights, same thread count.

Models: smollm2-135m (the real GGUF, dequantized) and the Qwen3-0.6B config with random weights (the folder
bench/build_qwen3_0p6b.py generates). Libs: `mlcbuild make MODEL --target cpu` at q0f32 and q4f32_1, built
into <cache>/bench/cpu/ (re-runs reuse them). Each model runs in its own child process that loads the
TVM libs and the transformers model, sets both thread pools to --threads, and then alternates TVM and torch
measurement by measurement, so load from other jobs hits both sides alike. torch always runs f32 weights (the
q4f32_1 lib's torch counterpart is the same f32 model: torch has no int4 kernel here). Figures are medians.

Prints a table; the last line is one JSON object. `--quick` times the tiny-llama preset only (a smoke run).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, bench_cache, last_json, load_script, now_iso

QUANTS = ("q0f32", "q4f32_1")
PREFILL = 128
# Both runtimes keep their idle worker threads spinning for a while after a parallel region; a pause before
# each side lets the other side's workers go to sleep instead of competing for the two cores.
SETTLE_S = 0.5


def _cache() -> Path:
    return bench_cache() / "cpu"


def source_of(model: str) -> tuple[str, str]:
    """(what `mlcbuild make` builds, what transformers loads) for a model name of this benchmark."""
    if model == "qwen3-0.6b":
        folder, _ = load_script("build_qwen3_0p6b").ensure_source(28)
        return str(folder), str(folder)
    from builder.fetch import fetch

    fetched = fetch(model, show_progress=False)
    return model, str(fetched.path)


def build(model: str, make_arg: str, quant: str) -> Path:
    from builder.make import make

    res = make(make_arg, quant, _cache() / model, targets=("cpu",), show_progress=False)
    return Path(res.out)


def _torch_model(ref: str):
    import torch
    from transformers import AutoModelForCausalLM

    p = Path(ref)
    if p.suffix == ".gguf":
        return AutoModelForCausalLM.from_pretrained(p.parent, gguf_file=p.name, dtype=torch.float32).eval()
    return AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32).eval()


def child(model: str, ref: str, libs: dict, threads: int, steps: int, reps: int) -> dict:
    """Runs in its own process: both pools sized before anything runs."""
    os.environ["TVM_NUM_THREADS"] = str(threads)
    import numpy as np
    import torch

    from builder.run.engine import Engine

    torch.set_num_threads(threads)
    tm = _torch_model(ref)
    engines = {q: Engine(Path(d), max_seq_len=PREFILL + steps + 8) for q, d in libs.items()}
    vocab = min(tm.config.vocab_size, *(e.vocab_size for e in engines.values()))
    ids = [(i * 7919 + 101) % vocab for i in range(PREFILL)]
    times = {k: {"prefill": [], "decode": []} for k in [*engines, "torch"]}

    def run_tvm(eng, rec):
        eng.reset()
        t0 = time.perf_counter()
        logits = eng.prefill(eng.embed(ids))
        rec["prefill"].append(time.perf_counter() - t0)
        tok = int(np.argmax(logits))
        for _ in range(steps):
            e = eng.embed([tok])[0]
            t0 = time.perf_counter()
            logits = eng.decode(e)
            rec["decode"].append(time.perf_counter() - t0)
            tok = int(np.argmax(logits))

    def run_torch(rec):
        with torch.inference_mode():
            t0 = time.perf_counter()
            out = tm(torch.tensor([ids]), use_cache=True)
            rec["prefill"].append(time.perf_counter() - t0)
            past, tok = out.past_key_values, int(out.logits[0, -1].argmax())
            for _ in range(steps):
                t0 = time.perf_counter()
                out = tm(torch.tensor([[tok]]), past_key_values=past, use_cache=True)
                rec["decode"].append(time.perf_counter() - t0)
                past, tok = out.past_key_values, int(out.logits[0, -1].argmax())

    for _ in range(reps + 1):  # the first round warms up both sides and is dropped
        for q, eng in engines.items():
            time.sleep(SETTLE_S)
            run_tvm(eng, times[q])
            time.sleep(SETTLE_S)
            run_torch(times["torch"])
    res = {}
    for k, rec in times.items():
        pre, dec = rec["prefill"][len(rec["prefill"]) // (reps + 1):], rec["decode"][len(rec["decode"]) // (reps + 1):]
        res[k] = {"prefill_s": round(statistics.median(pre), 4), "decode_s": round(statistics.median(dec), 4)}
    return {"model": model, "threads": threads, "prefill_tokens": PREFILL, "decode_steps": steps, "reps": reps,
            "times": res, "torch": torch.__version__,
            "ratios": {q: {"decode": round(res[q]["decode_s"] / res["torch"]["decode_s"], 3),
                           "prefill": round(res[q]["prefill_s"] / res["torch"]["prefill_s"], 3)} for q in engines}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2-135m,qwen3-0.6b")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8, help="decode steps per round")
    ap.add_argument("--reps", type=int, default=3, help="timed rounds (after one warm-up round)")
    ap.add_argument("--quick", action="store_true", help="tiny-llama only, 1 round: a smoke run")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(**json.loads(a.child))))
        return
    models = ["tiny-llama"] if a.quick else a.models.split(",")
    reps, steps = (1, 4) if a.quick else (a.reps, a.steps)
    started, load0, results = now_iso(), os.getloadavg(), []
    for model in models:
        make_arg, ref = source_of(model)
        if model.startswith("tiny-"):
            ref = str(Path(ref))  # the synthesized HF folder
        t0 = time.perf_counter()
        libs = {q: str(build(model, make_arg, q)) for q in QUANTS}
        build_s = time.perf_counter() - t0
        spec = json.dumps({"model": model, "ref": ref, "libs": libs, "threads": a.threads, "steps": steps,
                           "reps": reps})
        proc = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True,
                              cwd=REPO)
        if proc.returncode != 0:
            sys.exit(f"cpu_decode: {model} failed:\n{proc.stderr[-3000:]}")
        r = last_json(proc.stdout)
        r["build_s"] = round(build_s, 1)
        results.append(r)
    print(f"{'model':<14}{'lib':<9}{'threads':>8}{'decode s':>11}{'torch s':>10}{'ratio':>8}"
          f"{'prefill' + str(PREFILL) + ' s':>15}{'torch s':>10}{'ratio':>8}")
    for r in results:
        t = r["times"]
        for q in QUANTS:
            print(f"{r['model']:<14}{q:<9}{r['threads']:>8}{t[q]['decode_s']:>11.4f}{t['torch']['decode_s']:>10.4f}"
                  f"{r['ratios'][q]['decode']:>7.2f}x{t[q]['prefill_s']:>15.3f}{t['torch']['prefill_s']:>10.3f}"
                  f"{r['ratios'][q]['prefill']:>7.2f}x")
    print(json.dumps({"bench": "cpu_decode", "date": started, "loadavg_start": load0,
                      "loadavg_end": os.getloadavg(), "cpus": os.cpu_count(), "results": results}))


if __name__ == "__main__":
    main()
