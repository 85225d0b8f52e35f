"""Training the links with the LLMs frozen.

Inner loop (per agent): align inner(h_t) with the embedding of the NEXT token y_{t+1} over the agent's own
chat-formatted dataset text: L_in = 1 - cos + 0.1 * MSE. The frozen agent's hidden states are computed once.
Outer loop (whole system): unroll the pattern for r rounds, teacher-force the final agent's answer and minimise
its cross-entropy; gradients flow through the frozen agents into every outer link.
"""

import io
import math
import random
from pathlib import Path

import torch
import torch.nn.functional as F

from builder.errors import MlcbuildError
from builder.fsutil import write_bytes_atomic

from .agents import Agent
from .patterns import Pattern
from .rollout import answer_loss
from .system import LinkSet, run_latent


def cosine_schedule(opt, warmup: int, total: int):
    """Linear warmup to the base lr, then cosine decay to 10% of it."""
    def f(step):
        if step < warmup:
            return (step + 1) / (warmup + 1)
        t = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def inner_loss(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, mean cosine): L_in = 1 - cos(inner(h_t), Emb(y_{t+1})) + 0.1 * MSE."""
    cos = F.cosine_similarity(pred, target, dim=-1).mean()
    return 1 - cos + 0.1 * F.mse_loss(pred, target), cos


@torch.no_grad()
def inner_pairs(agent: Agent, rows: list[dict], max_len: int = 512, batch: int = 16):
    """(h_t, Emb(y_{t+1})) pairs over each row's chat text: the role's prompt (slots empty) followed by the field
    this role writes (plan / refined_plan / answer) as the assistant turn. Rows of similar length run as one
    right-padded batch: attention is causal, so padding after a row's end never changes its hidden states
    (measured: 2.3x faster than one row at a time on SmolLM2, pairs equal to 1e-4)."""
    xs = []
    for row in rows:
        prompt = agent.prompt_embeds({"question": row["question"]}, {})
        reply = row.get(agent.role.target) or row["answer"]
        xs.append(torch.cat([prompt, agent.embed(agent.answer_ids(reply))])[:max_len])
    order = sorted(range(len(xs)), key=lambda i: len(xs[i]))
    hs, ys = [None] * len(xs), [None] * len(xs)
    for at in range(0, len(order), batch):
        group = order[at:at + batch]
        top = max(len(xs[i]) for i in group)
        x = torch.zeros(len(group), top, xs[group[0]].shape[-1], dtype=xs[group[0]].dtype)
        for j, i in enumerate(group):
            x[j, :len(xs[i])] = xs[i]
        h = agent.body(inputs_embeds=x).last_hidden_state
        for j, i in enumerate(group):
            hs[i] = h[j, :len(xs[i]) - 1].float()
            ys[i] = xs[i][1:].float()  # the next token's input embedding
    return torch.cat(hs), torch.cat(ys)


@torch.no_grad()
def inner_cosine(inner, pairs) -> float:
    h, y = pairs
    return float(F.cosine_similarity(inner(h), y, dim=-1).mean())


def train_inner(inner, pairs, steps: int, lr: float = 1e-3, batch: int = 256, seed: int = 0, on_step=None):
    """A few hundred cheap steps over cached pairs; returns the last loss."""
    h, y = pairs
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(inner.parameters(), lr=lr, weight_decay=0.0)
    sched = cosine_schedule(opt, max(1, steps // 10), steps)
    last = float("nan")
    for step in range(steps):
        idx = torch.randint(0, h.shape[0], (min(batch, h.shape[0]),), generator=g)
        loss, cos = inner_loss(inner(h[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(inner.parameters(), 1.0)
        opt.step()
        sched.step()
        last = loss.item()
        if on_step:
            on_step(step, last, cos.item())
    return last


def outer_step_loss(agents: dict[str, Agent], links: LinkSet, pattern: Pattern, row: dict, rounds: int, m: int):
    emb = run_latent(agents, links, pattern, row["question"], rounds, m)
    final = agents[pattern.final]
    return answer_loss(final, emb, final.answer_ids(row["answer"]))


def _rows_for_step(n_rows: int, batch: int, seed: int, step: int) -> list[int]:
    """The rows of one step depend only on (seed, step), so a resumed run sees the same data."""
    return random.Random(seed * 1_000_003 + step).sample(range(n_rows), min(batch, n_rows))


class OuterTrainer:
    """The outer loop with AdamW, warmup + cosine, grad clip 1.0, checkpoints and resume."""

    def __init__(self, agents, links: LinkSet, pattern, rows, steps, rounds, m, lr=5e-4, warmup=None, batch=4,
                 seed=0, clip=1.0, ckpt: Path | None = None, ckpt_every: int = 50):
        self.agents, self.links, self.pattern, self.rows = agents, links, pattern, rows
        self.steps, self.rounds, self.m, self.batch, self.seed, self.clip = steps, rounds, m, batch, seed, clip
        self.ckpt, self.ckpt_every = (Path(ckpt) if ckpt else None), ckpt_every
        self.params = [p for p in links.outer.parameters()]
        self.opt = torch.optim.AdamW(self.params, lr=lr, weight_decay=0.0)
        self.sched = cosine_schedule(self.opt, warmup if warmup is not None else max(1, steps // 10), steps)
        self.step, self.losses, self.extra = 0, [], {}

    def state(self) -> dict:
        return {"links": self.links.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "step": self.step, "losses": self.losses, "steps": self.steps, "seed": self.seed, "extra": self.extra}

    def save(self):
        if self.ckpt:
            buf = io.BytesIO()
            torch.save(self.state(), buf)
            write_bytes_atomic(self.ckpt, buf.getvalue())  # a crash never leaves half a checkpoint

    def resume(self) -> bool:
        if not (self.ckpt and self.ckpt.is_file()):
            return False
        try:
            st = torch.load(self.ckpt, weights_only=True)
            self.links.load_state_dict(st["links"])
            self.opt.load_state_dict(st["opt"])
            self.sched.load_state_dict(st["sched"])
            saved = (st["seed"], st["steps"])
            self.step, self.losses, self.extra = st["step"], st["losses"], st.get("extra", {})
        except (RuntimeError, KeyError, TypeError, ValueError, OSError, EOFError) as e:
            why = (str(e).splitlines() or [type(e).__name__])[0][:120]
            raise MlcbuildError(f"{self.ckpt}: cannot resume from this checkpoint ({why})",
                                "delete it or train with the same agents and pattern") from None
        if saved != (self.seed, self.steps):
            raise MlcbuildError(f"{self.ckpt}: saved with seed {saved[0]} and {saved[1]} outer steps",
                                "resume with the same --seed and --outer-steps, or delete the checkpoint")
        return True

    def run(self, until: int | None = None, on_step=None) -> list[float]:
        """Train up to step `until` (default: all steps); returns the per-step losses so far."""
        self.links.train()
        for p in self.links.inner.parameters():  # inner links were trained by the inner loop; keep them fixed
            p.requires_grad_(False)
        end = min(self.steps, until if until is not None else self.steps)
        while self.step < end:
            idx = _rows_for_step(len(self.rows), self.batch, self.seed, self.step)
            self.opt.zero_grad()
            total = 0.0
            for i in idx:
                loss = outer_step_loss(self.agents, self.links, self.pattern, self.rows[i], self.rounds, self.m)
                (loss / len(idx)).backward()
                total += loss.item() / len(idx)
            if not math.isfinite(total):
                raise MlcbuildError(f"outer loss became {total} at step {self.step}", "lower --lr or use --dtype f32")
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
            self.opt.step()
            self.sched.step()
            self.step += 1
            self.losses.append(total)
            if on_step:
                on_step(self.step, total)
            if self.ckpt and (self.step % self.ckpt_every == 0 or self.step == self.steps):
                self.save()
        return self.losses


@torch.no_grad()
def mean_answer_ce(agents, links, pattern, rows, rounds, m) -> float:
    return sum(float(outer_step_loss(agents, links, pattern, r, rounds, m)) for r in rows) / max(1, len(rows))
