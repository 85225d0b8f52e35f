#!/usr/bin/env python3
"""Benchmark RecursiveLinks training (train_links/): step time and peak RSS of the inner and outer loops.

Configurations (sequential pattern, planner -> critic -> solver, the 3 agents share ONE frozen model, f32):
  tiny           the `tiny-qwen3` preset (random weights, d=64)
  smollm2-135m   the offline SmolLM2-135M-Instruct GGUF, dequantized to f32 by transformers
  qwen3-0.6b     the Qwen3-0.6B architecture with random weights (the folder bench/build_qwen3_0p6b.py generates
                 under <mlcbuild cache>/bench/, or built in memory if that script is missing)

Each configuration runs in its own process (`--child`), torch.set_num_threads(1) (or --threads; on a shared 2-core
machine 2 threads stall at every barrier when another job holds a core), and measures:
  load    train_links.agents.load_model (fetch + tokenizer + transformers load)
  inner   inner_pairs (the frozen forward that caches (h_t, Emb(y_t+1)) pairs, per row) and train_inner steps
          (batch 256 over the cached pairs; median after one warm-up step)
  kv      one outer step exactly as train_links runs it: run_latent (latent_rollout on the KV cache) + answer_loss,
          backward, grad clip, AdamW step; batch 1 row per step
  naive   the same outer step with train_links.system.latent_rollout swapped for `naive_rollout`
          (bench/train_links_child.py): at every latent step the whole prefix (prompt + latents so far) is re-run
          without past_key_values. Same agents, same links, same rows, same loss: the only difference is the cache.
Each outer mode runs one warm-up step alone (its peak RSS is taken there), then the timed steps alternate kv, naive,
kv, naive on the same rows; wall time and process CPU time are both reported (CPU time is less sensitive to the
other jobs of a shared machine).
The optimizer's lr is 0 so the links do not move and both modes see the same parameters at every step; the
losses and the first step's gradients of the two modes are compared (they must agree to float rounding).
Peak RSS per phase: /proc/self/clear_refs "5" resets the high-water mark before a phase and
resource.getrusage(RUSAGE_SELF).ru_maxrss reads it after (the process peak is the max over phases).

Prints a table; the last stdout line is one JSON object (also appended to --json-file if given).
`--quick` runs the tiny configuration only with fewer steps (a smoke run of a few seconds).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import (
    REPO,
    add_json_file,
    append_line,
    last_json,
    load_script,
    loadavg,
    machine,
    now_iso,
    parser,
    print_table,
    rss_mb,
)
from train_links_child import child

THREADS = 1
# spec: model; r, m: rounds and latent steps; steps: timed outer steps (after 1 warm-up step); rows / inner_steps:
# inner-loop rows (frozen forward) and timed train_inner steps; naive: also time the naive outer step
CONFIGS = {
    "tiny": dict(spec="tiny-qwen3", r=3, m=16, steps=5, rows=8, inner_steps=10, naive=True),
    "smollm2-135m": dict(spec="smollm2-135m", r=3, m=16, steps=3, rows=4, inner_steps=10, naive=True),
    # r=1 for the ratio: its naive step peaks at 7.6 GB (2 rollouts); at r=3 (8 rollouts, longer prompts) it would
    # pass the RSS cap (SmolLM2's r=3 naive step alone peaks at 10.2 GB)
    "qwen3-0.6b": dict(spec="qwen3-0.6b-random", r=1, m=16, steps=2, rows=2, inner_steps=10, naive=True),
    # the train_links default (r=3, m=16) at this size, KV path only
    "qwen3-0.6b-r3": dict(spec="qwen3-0.6b-random", r=3, m=16, steps=1, rows=0, inner_steps=0, naive=False),
}
QUICK = {"tiny": dict(spec="tiny-qwen3", r=3, m=8, steps=2, rows=4, inner_steps=3, naive=True)}
RSS_CAP_MB = float(os.environ.get("BENCH_RSS_CAP_MB", 14000))  # a child above this is killed (shared machine)


def qwen3_spec() -> tuple[str, str]:
    """(spec, note): the random-weight folder from bench/build_qwen3_0p6b.py (generated once if missing), else an
    in-memory model."""
    try:
        path, _ = load_script("build_qwen3_0p6b").ensure_source(28)
        return str(path), f"folder from bench/build_qwen3_0p6b.py ({path.name})"
    except (OSError, ImportError, AttributeError, SystemExit) as e:
        return "memory:qwen3-0.6b", f"built in memory ({type(e).__name__}: {e})"


def run_child(name: str, conf: dict, threads: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, json.dumps(conf), str(threads)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO),
                            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    out, err = [], []

    def pump_err():  # keep the child's stderr; show its "bench:" progress lines as they come
        for line in proc.stderr:
            err.append(line)
            if line.startswith("bench: "):
                sys.stderr.write(line)
                sys.stderr.flush()

    readers = [threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True),
               threading.Thread(target=pump_err, daemon=True)]
    for t in readers:
        t.start()
    killed = None
    try:
        while proc.poll() is None:  # watchdog: other jobs share this machine
            try:
                rss = rss_mb(proc.pid)
            except (OSError, AttributeError):
                rss = 0
            if rss > RSS_CAP_MB:
                killed = rss
                break
            time.sleep(0.2)
    finally:  # also on Ctrl-C / SIGTERM of this process: never leave a child running
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    for t in readers:
        t.join()
    stderr = "".join(err)
    if killed:
        raise SystemExit(f"bench: child {name} killed at RSS {killed:.0f} MB > cap {RSS_CAP_MB:.0f} MB "
                         "(BENCH_RSS_CAP_MB)")
    if proc.returncode != 0:
        sys.stderr.write(stderr[-4000:])
        raise SystemExit(f"bench: child {name} failed (exit {proc.returncode})")
    res = last_json("".join(out))
    res["wall_s"] = time.perf_counter() - t0
    return res


def _f(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def report(results: list[dict], meta: dict) -> None:
    print(f"train_links benchmark, sequential pattern (3 agents, one shared model), f32, torch threads "
          f"{meta['threads']}; {meta['cpus']} cpus, loadavg {meta['loadavg_start']} -> {meta['loadavg_end']}")
    head = ["config", "r", "m", "load", "inner pairs/row", "inner step", "outer kv", "outer naive", "naive/kv",
            "kv cpu", "naive cpu", "cpu ratio", "RSS load", "RSS inner", "RSS kv", "RSS naive"]
    rows = []
    for r in results:
        ph = r["phases"]

        def get(phase, key, fmt=_f, ph=ph):
            return fmt(ph[phase][key]) if phase in ph else "-"

        mb = lambda v: f"{v:.0f} MB"  # noqa: E731
        rows.append([r["name"], str(r["rounds"]), str(r["m"]), _f(r["load_s"]), get("inner", "pairs_per_row_s"),
                     get("inner", "step_s"), get("kv", "step_s"), get("naive", "step_s"),
                     f"{r['ratio']:.1f}x" if "ratio" in r else "-", get("kv", "cpu_s"), get("naive", "cpu_s"),
                     f"{r['ratio_cpu']:.1f}x" if "ratio_cpu" in r else "-",
                     *(get(k, "peak_mb", mb) for k in ("load", "inner", "kv", "naive"))])
    print_table(rows, head, align="lr")
    print()
    print("outer steps: median of the timed steps (wall); cpu = process CPU time of the step; RSS = peak in phase")
    print()
    print("where an outer step goes (median step; body = decoder calls, 'multi' = calls over > 1 position):")
    for r in results:
        for mode in ("kv", "naive"):
            if mode not in r["phases"]:
                continue
            p = r["phases"][mode]
            b = p["body"]
            print(f"  {r['name']:<13} {mode:<5} forward {_f(p['forward_s'])} ({b['multi_calls']:.0f} multi-position "
                  f"calls {_f(b['multi_s'])}, {b['one_calls']:.0f} one-position calls {_f(b['one_s'])}, "
                  f"{b['tokens']:.0f} positions), backward {_f(p['backward_s'])}, clip+AdamW {_f(p['opt_s'])}")
    print()
    for r in results:
        if "check" not in r:
            continue
        c = r["check"]
        ok = c["max_loss_diff"] < 1e-3 and c["grad_rel_diff"] < 1e-2
        print(f"  {r['name']:<13} kv vs naive: max |loss diff| {c['max_loss_diff']:.1e}, first-step grad rel diff "
              f"{c['grad_rel_diff']:.1e} -> {'same computation' if ok else 'MISMATCH'}; naive/kv {r['ratio']:.1f}x "
              f"wall ({', '.join(f'{x:.1f}' for x in r['ratio_pairs'])} per back-to-back pair), "
              f"{r['ratio_cpu']:.1f}x cpu: {'meets' if min(r['ratio'], r['ratio_cpu']) >= 2 else 'BELOW'} "
              "the 2x target")


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny configuration only, few steps (smoke run)")
    ap.add_argument("--only", nargs="+", choices=list(CONFIGS), help="run only these configurations")
    ap.add_argument("--threads", type=int, default=THREADS, help=f"torch threads (default {THREADS})")
    add_json_file(ap)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM -> KeyboardInterrupt: run_child cleans up
    if a.child:
        child(a.child[0], json.loads(a.child[1]), int(a.child[2]))
        return
    confs = {k: dict(v) for k, v in (QUICK if a.quick else CONFIGS).items() if a.quick or not a.only or k in a.only}
    meta = {"date": now_iso(), **machine(), "threads": a.threads, "quick": a.quick, "loadavg_start": loadavg()}
    if any(c["spec"] == "qwen3-0.6b-random" for c in confs.values()):
        spec, meta["qwen3_source"] = qwen3_spec()
        for c in confs.values():
            if c["spec"] == "qwen3-0.6b-random":
                c["spec"] = spec
    results, failed = [], {}
    for name, conf in confs.items():
        print(f"bench: {name} (r={conf['r']}, m={conf['m']}) ...", file=sys.stderr, flush=True)
        try:
            results.append(run_child(name, conf, a.threads))
        except SystemExit as e:  # keep the other configurations' figures
            print(e, file=sys.stderr, flush=True)
            failed[name] = str(e)
            continue
        if a.json_file:  # each configuration's figures survive a later failure or interruption
            append_line(a.json_file.with_suffix(".partial.jsonl"),
                        json.dumps({"bench": "train_links", **meta, "result": results[-1]}))
    meta["failed"] = failed
    meta["loadavg_end"] = loadavg()
    report(results, meta)
    for name, why in failed.items():
        print(f"FAILED {name}: {why}")
    line = json.dumps({"bench": "train_links", **meta, "results": results}, sort_keys=True)
    append_line(a.json_file, line)
    print(line)
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
