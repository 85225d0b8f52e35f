"""One configuration of bench/train_links.py, measured in its own process (`train_links.py --child NAME CONF
THREADS`): load, inner loop, and the outer step with the KV cache and with the naive rollout. Prints one JSON line."""

import json
import statistics
import sys
import time

from common import peak_mb, reset_peak, rss_mb, trim


# the naive rollout: the only thing this benchmark changes in train_links
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
           "peak_reset": reset_peak()}

    # --- load
    t0 = time.perf_counter()
    if spec == "memory:qwen3-0.6b":
        model, tok, mid = _random_qwen3_in_memory()
    else:
        from builder.fetch import model_source

        model, tok, mid, _ = load_model(spec, resolve=model_source)
    res["load_s"] = time.perf_counter() - t0
    res["phases"]["load"] = {"peak_mb": peak_mb()}
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
        trim()
        reset_peak()
        t0 = time.perf_counter()
        pairs = inner_pairs(agents["planner"], train_rows[:inner_rows])
        pairs_s = time.perf_counter() - t0
        bt = timer.take()
        stamps = [time.perf_counter()]
        train_inner(links.inner["planner"], pairs, inner_steps + 1,
                    on_step=lambda *a: stamps.append(time.perf_counter()))
        st = [b - a for a, b in zip(stamps, stamps[1:], strict=False)][1:]
        n_pairs = int(pairs[0].shape[0])
        res["phases"]["inner"] = {"peak_mb": peak_mb(), "pairs_rows": inner_rows, "pairs_tokens": n_pairs,
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
              f"{c3 - c0:.2f} s cpu (forward {t1 - t0:.2f} s, backward {t2 - t1:.2f} s), RSS {rss_mb():.0f} MB",
              file=sys.stderr, flush=True)

    for mode in modes:
        trim()
        reset_peak()
        one_step(mode, 0)
        peaks[mode] = peak_mb()
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
