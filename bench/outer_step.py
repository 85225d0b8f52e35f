#!/usr/bin/env python3
"""Benchmark one outer-link training step, three ways, side by side in one process (same agents, rows, r, m, batch):

  rollout    the step of mlcbuild before the teacher-forced recipe (train_links.train.outer_step_loss): each row
             alone through system.run_latent (m latent steps per agent per round on the KV cache), backward;
  batched    the rollout stage of today's trainer: the same computation for the whole batch at once
             (train_links.batched.rollout_losses, left-padded prompts);
  teacher    the teacher-forced step (train_links.teacher): one batched forward per agent per round over the
             ground-truth turns, backward.
Each mode does one warm-up step, then the timed steps rotate teacher, batched, rollout. The optimizer's lr is 0, so
every step sees the same links. Prints a table; the last stdout line is one JSON object.

  python3 bench/outer_step.py [--model smollm2-135m] [--rounds 3] [--m 16] [--batch 8] [--steps 3] [--dtype f32]
  python3 bench/outer_step.py --quick    # tiny-qwen3, a few seconds
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--quick", action="store_true", help="tiny-qwen3, r=2, m=4, batch 4, 1 timed step")
    a = ap.parse_args()
    if a.quick:
        a.model, a.rounds, a.m, a.batch, a.steps = "tiny-qwen3", 2, 4, 4, 1

    import torch

    from builder.fetch import model_source
    from train_links.agents import make_agents
    from train_links.batched import rollout_losses
    from train_links.data import builtin
    from train_links.patterns import sequential
    from train_links.system import LinkSet
    from train_links.teacher import teacher_forced_losses
    from train_links.train import outer_step_loss

    torch.set_num_threads(a.threads)
    pattern = sequential()
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    agents = {x.name: x for x in make_agents([a.model] * 3, pattern, dtype, resolve=model_source)}
    links = LinkSet(agents, pattern, 0)
    opt = torch.optim.AdamW(links.outer.parameters(), lr=0.0)
    rows = builtin()[0][:a.batch]

    def teacher():
        return teacher_forced_losses(agents, links, pattern, rows, a.rounds).mean()

    def batched():
        return rollout_losses(agents, links, pattern, rows, a.rounds, a.m).mean()

    def rollout():  # row by row, each backward on its own as the old trainer did
        total = 0.0
        for row in rows:
            loss = outer_step_loss(agents, links, pattern, row, a.rounds, a.m) / len(rows)
            loss.backward()
            total += float(loss)
        return total

    modes = {"teacher": teacher, "batched": batched, "rollout": rollout}
    times = {k: [] for k in modes}
    losses = {}

    def step(name):
        opt.zero_grad()
        t0 = time.perf_counter()
        loss = modes[name]()
        if torch.is_tensor(loss):
            loss.backward()
            loss = float(loss)
        opt.step()
        return time.perf_counter() - t0, loss

    for name in modes:  # warm-up
        step(name)
    for _ in range(a.steps):
        for name in modes:
            dt, losses[name] = step(name)
            times[name].append(dt)
    med = {k: statistics.median(v) for k, v in times.items()}
    load = os.getloadavg()[0]
    print(f"{a.model}, sequential x3, r={a.rounds}, m={a.m}, batch {a.batch}, {a.dtype}, {a.threads} threads, "
          f"load {load:.2f}")
    print(f"{'mode':<10} {'step s (median)':>16} {'vs teacher':>11} {'answer CE':>10}")
    for k in modes:
        print(f"{k:<10} {med[k]:>16.2f} {med[k] / med['teacher']:>10.1f}x {losses[k]:>10.4f}")
    print(json.dumps({"model": a.model, "rounds": a.rounds, "m": a.m, "batch": a.batch, "dtype": a.dtype,
                      "threads": a.threads, "load": load, "step_s": med, "samples": times,
                      "rollout_over_teacher": med["rollout"] / med["teacher"],
                      "batched_over_teacher": med["batched"] / med["teacher"], "loss": losses}))


if __name__ == "__main__":
    main()
