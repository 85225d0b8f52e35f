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
  naive   the same outer step with train_links.system.latent_rollout swapped for `naive_rollout` below: at every
          latent step the whole prefix (prompt + latents so far) is re-run without past_key_values. Same agents,
          same links, same rows, same loss: the only difference is the cache.
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
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
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


# ---------------------------------------------------------------------------------------------------
# the naive rollout (the only thing this benchmark changes in train_links)
# ---------------------------------------------------------------------------------------------------
def naive_rollout(agent, embeds, inner, m: int):
    """latent_rollout without a KV cache: every latent step re-runs the whole prefix (prompt + the latent inputs fed
    so far) from scratch and keeps the last position's hidden state. Same inputs, same outputs, same [m, d] block."""
    import torch

    x = embeds[None].to(agent.dtype)
    h = agent.body(inputs_embeds=x, use_cache=False).last_hidden_state[:, -1:]
    block = []
    for _ in range(m):
        x = torch.cat([x, inner(h.float()).to(agent.dtype)], dim=1)
        h = agent.body(inputs_embeds=x, use_cache=False).last_hidden_state[:, -1:]
        block.append(h[0, -1])
    return torch.stack(block).float()


# ---------------------------------------------------------------------------------------------------
# child: one configuration
# ---------------------------------------------------------------------------------------------------
def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def _trim():
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back so the next phase's peak starts low
    except OSError:
        pass


def _random_qwen3_in_memory():
    """Fallback when bench/build_qwen3_0p6b.py is not there: the Qwen3-0.6B config with small random weights."""
    import torch
    import transformers

    from builder.fetch import tiny_tokenizer_source

    p = tiny_tokenizer_source()
    tok = transformers.AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name)
    cfg = transformers.Qwen3Config(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                                   num_attention_heads=16, num_key_value_heads=8, head_dim=128, vocab_size=151936,
                                   tie_word_embeddings=True, initializer_range=0.02)
    torch.manual_seed(0)
    return transformers.Qwen3ForCausalLM(cfg).to(torch.float32), tok, "random:qwen3-0.6b"


class _BodyTimer:
    """Forward hooks on the shared decoder body: time and token count of every call, split into prefill-like calls
    (more than one position) and one-position decode calls."""

    def __init__(self, body):
        self.calls = []
        self._t0 = None
        body.register_forward_pre_hook(self._pre, with_kwargs=True)
        body.register_forward_hook(self._post, with_kwargs=True)

    def _pre(self, mod, args, kwargs):
        x = kwargs.get("inputs_embeds")
        self._n = int(x.shape[1]) if x is not None else 0
        self._t0 = time.perf_counter()

    def _post(self, mod, args, kwargs, out):
        self.calls.append((self._n, time.perf_counter() - self._t0))

    def take(self) -> dict:
        calls, self.calls = self.calls, []
        multi = [c for c in calls if c[0] > 1]
        one = [c for c in calls if c[0] == 1]
        return {"calls": len(calls), "tokens": sum(c[0] for c in calls),
                "multi_calls": len(multi), "multi_s": sum(c[1] for c in multi),
                "one_calls": len(one), "one_s": sum(c[1] for c in one)}


def child(name: str, conf: dict, threads: int) -> None:
    import torch

    spec, rounds, m, steps, inner_rows, inner_steps = (conf[k] for k in ("spec", "r", "m", "steps", "rows",
                                                                           "inner_steps"))

    torch.set_num_threads(threads)
    import transformers

    import train_links.system as system
    from train_links.agents import Agent, load_model
    from train_links.data import builtin
    from train_links.patterns import sequential
    from train_links.system import LinkSet
    from train_links.train import inner_pairs, outer_step_loss, train_inner

    res = {"name": name, "spec": spec, "rounds": rounds, "m": m, "threads": torch.get_num_threads(),
           "torch": torch.__version__, "transformers": transformers.__version__, "phases": {},
           "peak_reset": _reset_peak()}

    # --- load
    t0 = time.perf_counter()
    if spec == "memory:qwen3-0.6b":
        model, tok, mid = _random_qwen3_in_memory()
    else:
        from builder.fetch import model_source

        model, tok, mid, _ = load_model(spec, resolve=model_source)
    res["load_s"] = time.perf_counter() - t0
    res["phases"]["load"] = {"peak_mb": _peak_mb()}
    cfg = model.config
    res["model"] = {"id": mid, "params": sum(p.numel() for p in model.parameters()), "hidden": cfg.hidden_size,
                    "layers": cfg.num_hidden_layers, "vocab": cfg.vocab_size}
    pattern = sequential()
    agents = {r.name: Agent(r, model, tok, mid) for r in pattern.roles}  # one shared model, as make_agents does
    links = LinkSet(agents, pattern, seed=0)
    res["link_params"] = {"inner": sum(p.numel() for p in links.inner.parameters()),
                          "outer": sum(p.numel() for p in links.outer.parameters())}
    train_rows, _ = builtin()
    timer = _BodyTimer(agents["planner"].body)

    # --- inner loop (planner; the other agents are the same model with other prompts)
    if inner_rows:
        _trim()
        _reset_peak()
        t0 = time.perf_counter()
        pairs = inner_pairs(agents["planner"], train_rows[:inner_rows])
        pairs_s = time.perf_counter() - t0
        bt = timer.take()
        stamps = [time.perf_counter()]
        train_inner(links.inner["planner"], pairs, inner_steps + 1,
                    on_step=lambda *a: stamps.append(time.perf_counter()))
        st = [b - a for a, b in zip(stamps, stamps[1:], strict=False)][1:]
        n_pairs = int(pairs[0].shape[0])
        res["phases"]["inner"] = {"peak_mb": _peak_mb(), "pairs_rows": inner_rows, "pairs_tokens": n_pairs,
                                  "pairs_per_row_s": pairs_s / inner_rows, "pairs_forward": bt,
                                  "step_s": statistics.median(st), "steps_s": st, "batch": min(256, n_pairs)}
        del pairs

    # --- outer loop: KV cache (as train_links does it) and naive. Each mode first runs one warm-up step on its own
    # (its peak RSS is measured there, and row 0's loss and gradients are compared); then the timed steps alternate
    # kv, naive, kv, naive ... on the same rows, so a change in the machine's load hits both modes alike.
    opt = torch.optim.AdamW(list(links.outer.parameters()), lr=0.0, weight_decay=0.0)  # lr 0: links stay fixed
    params = list(links.outer.parameters())
    for p in links.inner.parameters():
        p.requires_grad_(False)
    kv_rollout = system.latent_rollout
    modes = {"kv": kv_rollout, "naive": naive_rollout} if conf["naive"] else {"kv": kv_rollout}
    recs = {k: [] for k in modes}
    grads, peaks = {}, {}

    def one_step(mode: str, i: int) -> None:
        system.latent_rollout = modes[mode]
        try:
            opt.zero_grad(set_to_none=True)
            c0, t0 = time.process_time(), time.perf_counter()
            loss = outer_step_loss(agents, links, pattern, train_rows[i], rounds, m)
            t1 = time.perf_counter()
            fwd = timer.take()
            loss.backward()
            t2 = time.perf_counter()
            timer.take()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            t3, c3 = time.perf_counter(), time.process_time()
        finally:
            system.latent_rollout = kv_rollout
        if i == 0:  # a link with no path to the loss (e.g. the feedback edge when r = 1) has no grad
            grads[mode] = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                                     for p in params])
        recs[mode].append({"loss": loss.item(), "forward_s": t1 - t0, "backward_s": t2 - t1, "opt_s": t3 - t2,
                           "step_s": t3 - t0, "cpu_s": c3 - c0, "body": fwd})
        print(f"bench:   {name} {mode} step {i}{' (warm-up)' if i == 0 else ''}: {t3 - t0:.2f} s wall, "
              f"{c3 - c0:.2f} s cpu (forward {t1 - t0:.2f} s, backward {t2 - t1:.2f} s), RSS {_rss_mb():.0f} MB",
              file=sys.stderr, flush=True)

    for mode in modes:
        _trim()
        _reset_peak()
        one_step(mode, 0)
        peaks[mode] = _peak_mb()
    for i in range(1, steps + 1):
        for mode in modes:
            one_step(mode, i)
    for mode, rs in recs.items():
        timed = rs[1:]
        med = {k: statistics.median(r[k] for r in timed)
               for k in ("step_s", "cpu_s", "forward_s", "backward_s", "opt_s")}
        body = {k: statistics.median(r["body"][k] for r in timed)
                for k in ("calls", "tokens", "multi_calls", "multi_s", "one_calls", "one_s")}
        res["phases"][mode] = {"peak_mb": peaks[mode], **med, "body": body, "steps": len(timed),
                               "steps_s": [r["step_s"] for r in timed], "cpus_s": [r["cpu_s"] for r in timed],
                               "losses": [r["loss"] for r in rs], "warmup_s": rs[0]["step_s"]}
    res["peak_mb"] = max(p["peak_mb"] for p in res["phases"].values())
    if not conf["naive"]:
        return print(json.dumps(res))
    kv, nv = res["phases"]["kv"], res["phases"]["naive"]
    g0, g1 = grads["kv"], grads["naive"]
    res["check"] = {"max_loss_diff": max(abs(a - b) for a, b in zip(kv["losses"], nv["losses"], strict=True)),
                    "grad_rel_diff": float((g0 - g1).norm() / g0.norm().clamp_min(1e-30)),
                    "grad_norm": float(g0.norm())}
    res["ratio"] = nv["step_s"] / kv["step_s"]  # median wall / median wall
    res["ratio_cpu"] = nv["cpu_s"] / kv["cpu_s"]  # process CPU time: less sensitive to other jobs
    res["ratio_pairs"] = [b / a for a, b in zip(kv["steps_s"], nv["steps_s"], strict=True)]  # same row, back to back
    print(json.dumps(res))


# ---------------------------------------------------------------------------------------------------
# parent
# ---------------------------------------------------------------------------------------------------
def qwen3_spec() -> tuple[str, str]:
    """(spec, note): the random-weight folder from bench/build_qwen3_0p6b.py (generated once if missing), else an
    in-memory model."""
    import importlib.util

    gen = REPO / "bench" / "build_qwen3_0p6b.py"
    try:
        s = importlib.util.spec_from_file_location("_bench_build_qwen3_0p6b", gen)
        mod = importlib.util.module_from_spec(s)
        s.loader.exec_module(mod)
        path, _ = mod.ensure_source(28)
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
                with open(f"/proc/{proc.pid}/status") as f:
                    rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024
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
    res = json.loads("".join(out).strip().splitlines()[-1])
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
    w = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    for x in [head, ["-" * n for n in w], *rows]:
        print("  ".join(c.ljust(n) if i == 0 else c.rjust(n) for i, (c, n) in enumerate(zip(x, w, strict=True))))
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny configuration only, few steps (smoke run)")
    ap.add_argument("--only", nargs="+", choices=list(CONFIGS), help="run only these configurations")
    ap.add_argument("--threads", type=int, default=THREADS, help=f"torch threads (default {THREADS})")
    ap.add_argument("--json-file", type=Path, default=None, help="also append the JSON result line here")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM -> KeyboardInterrupt: run_child cleans up
    if a.child:
        child(a.child[0], json.loads(a.child[1]), int(a.child[2]))
        return
    confs = {k: dict(v) for k, v in (QUICK if a.quick else CONFIGS).items() if a.quick or not a.only or k in a.only}
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(), "threads": a.threads,
            "quick": a.quick, "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
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
            with open(a.json_file.with_suffix(".partial.jsonl"), "a") as f:
                f.write(json.dumps({"bench": "train_links", **meta, "result": results[-1]}) + "\n")
    meta["failed"] = failed
    meta["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    report(results, meta)
    for name, why in failed.items():
        print(f"FAILED {name}: {why}")
    line = json.dumps({"bench": "train_links", **meta, "results": results}, sort_keys=True)
    if a.json_file:
        with open(a.json_file, "a") as f:
            f.write(line + "\n")
    print(line)
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
