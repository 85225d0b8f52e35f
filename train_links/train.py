"""Training the links with the LLMs frozen.

Inner loop (per agent): align inner(h_t) with the embedding of the NEXT token y_{t+1} over the assistant turns of
the agent's own chat-formatted dataset text: L_in = 1 - cos + 0.1 * MSE. The frozen agent's hidden states are
computed once.
Outer loop (whole system): unroll the pattern for r rounds and minimise the final agent's answer cross-entropy;
gradients flow through the frozen agents into every outer link. Teacher-forced first (train_links.teacher: the
senders' blocks are their hidden states over the ground-truth text of their turns, a batched forward per agent),
then optionally through the exact inference computation (latent rollouts, train_links.batched).
"""

import io
import math
import random
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from mlcbuild_common.errors import MlcbuildError
from mlcbuild_common.fsutil import write_bytes_atomic

from . import dist
from .agents import Agent
from .patterns import Pattern
from .rollout import answer_loss
from .system import LinkSet, run_latent


def cosine_schedule(opt, warmup: int, total: int):
    """Linear warmup to the base lr, then cosine decay to 10% of it (transformers' schedule)."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    return get_cosine_with_min_lr_schedule_with_warmup(opt, warmup, max(total, warmup + 1), min_lr_rate=0.1)


def inner_loss(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, mean cosine): L_in = 1 - cos(inner(h_t), Emb(y_{t+1})) + 0.1 * MSE."""
    cos = F.cosine_similarity(pred, target, dim=-1).mean()
    return 1 - cos + 0.1 * F.mse_loss(pred, target), cos


class Pairs(NamedTuple):
    """Next-token pairs over assistant turns: h [N, d] (last-layer hidden state at t), y [N, d] (the input
    embedding of token t+1), ids [N] (token t+1)."""
    h: torch.Tensor
    y: torch.Tensor
    ids: torch.Tensor


@torch.no_grad()
def inner_pairs(agent: Agent, rows: list[dict], max_len: int = 512, batch: int = 16) -> Pairs:
    """(h_t, Emb(y_{t+1})) pairs over each row's chat text: the role's prompt (slots empty) followed by the field
    this role writes (plan / refined_plan / answer) as the assistant turn; only pairs whose target token lies in
    the assistant turn count (the RecursiveMAS recipe). Rows of similar length run as one right-padded batch:
    attention is causal, so padding after a row's end never changes its hidden states (measured: 2.3x faster
    than one row at a time on SmolLM2, pairs equal to 1e-4)."""
    xs, ids, starts = [], [], []
    for row in rows:
        prompt = agent.prompt_embeds({"question": row["question"]}, {})
        reply = agent.answer_ids(row.get(agent.role.target) or row["answer"])
        seq_ids = torch.cat([torch.full((prompt.shape[0],), -1), reply])[:max_len]
        xs.append(torch.cat([prompt, agent.embed(reply)])[:max_len])
        ids.append(seq_ids)
        starts.append(prompt.shape[0] - 1)  # the position that predicts the first reply token
    order = sorted(range(len(xs)), key=lambda i: len(xs[i]))
    hs, ys, ts = [None] * len(xs), [None] * len(xs), [None] * len(xs)
    for at in range(0, len(order), batch):
        group = order[at:at + batch]
        top = max(len(xs[i]) for i in group)
        x = torch.zeros(len(group), top, xs[group[0]].shape[-1], dtype=xs[group[0]].dtype)
        for j, i in enumerate(group):
            x[j, :len(xs[i])] = xs[i]
        h = agent.body(inputs_embeds=x).last_hidden_state
        for j, i in enumerate(group):
            s, n = starts[i], len(xs[i])
            hs[i] = h[j, s:n - 1].float()
            ys[i] = xs[i][s + 1:].float()  # the next token's input embedding
            ts[i] = ids[i][s + 1:]
    return Pairs(torch.cat(hs), torch.cat(ys), torch.cat(ts))


@torch.no_grad()
def inner_cosine(inner, pairs: Pairs) -> float:
    return float(F.cosine_similarity(inner(pairs.h), pairs.y, dim=-1).mean())


def train_inner(inner, pairs: Pairs, steps: int, lr: float = 1e-3, batch: int = 256, seed: int = 0, on_step=None):
    """Cheap steps over cached pairs; returns the last loss."""
    h, y = pairs.h, pairs.y
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
    """One row through the unbatched reference rollout (system.run_latent): the bench's baseline step."""
    emb = run_latent(agents, links, pattern, row["question"], rounds, m)
    final = agents[pattern.final]
    return answer_loss(final, emb, final.answer_ids(row["answer"]))


def _rows_for_step(n_rows: int, batch: int, seed: int, step: int) -> list[int]:
    """The rows of one step depend only on (seed, step), so a resumed run sees the same data."""
    return random.Random(seed * 1_000_003 + step).sample(range(n_rows), min(batch, n_rows))


def stage_schedule(teacher_steps: int, rollout_steps: int, warmup: int | None):
    """lr multiplier per global step: linear warmup then cosine to 10% within each stage (teacher-forced, then
    rollout), so the rollout stage starts again from the full learning rate."""
    def f(step):
        first = step < teacher_steps
        n, t = (teacher_steps, step) if first else (rollout_steps, step - teacher_steps)
        w = warmup if warmup is not None else max(1, n // 10)
        if t < w:
            return (t + 1) / (w + 1)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (t - w) / max(1, n - w))))
    return f


class OuterTrainer:
    """The outer links: `teacher_steps` teacher-forced steps (train_links.teacher), then `rollout_steps` steps
    through the exact inference computation (batched latent rollouts). AdamW (0.9, 0.95) over the outer links,
    warmup + cosine per stage, grad clip, checkpoints with exact resume, and data parallel over the ranks of
    torchrun (train_links.dist): a step's rows are split over the ranks and the summed gradients are the
    single-process ones. The loss is the mean over rows of each row's answer cross-entropy."""

    def __init__(self, agents, links: LinkSet, pattern, rows, teacher_steps, rounds, m, lr=1e-4, warmup=None,
                 batch=8, seed=0, clip=1.0, ckpt: Path | None = None, ckpt_every: int = 50, rollout_steps: int = 0,
                 contrast: float = 0.0, margin: float = 0.5, keep_single: float = 0.0):
        self.agents, self.links, self.pattern, self.rows = agents, links, pattern, rows
        self.contrast, self.margin, self.keep_single = contrast, margin, keep_single
        self.family: dict = {}  # kind -> row indices: where a row's partner (contrast, keep_single) comes from
        for i, r in enumerate(rows):
            self.family.setdefault(r.get("kind"), []).append(i)
        self.rounds, self.m, self.batch, self.seed, self.clip = rounds, m, batch, seed, clip
        self.teacher_steps, self.rollout_steps = teacher_steps, rollout_steps
        self.steps = teacher_steps + rollout_steps
        self.ckpt, self.ckpt_every = (Path(ckpt) if ckpt else None), ckpt_every
        self.params = [p for p in links.outer.parameters()]
        self.opt = torch.optim.AdamW(self.params, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, stage_schedule(teacher_steps, rollout_steps, warmup))
        self.step, self.losses, self.extra = 0, [], {}

    def state(self) -> dict:
        return {"links": self.links.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "step": self.step, "losses": self.losses, "steps": [self.teacher_steps, self.rollout_steps],
                "seed": self.seed, "extra": self.extra}

    def save(self):
        if self.ckpt and dist.is_main():
            buf = io.BytesIO()
            torch.save(self.state(), buf)
            write_bytes_atomic(self.ckpt, buf.getvalue())  # a crash never leaves half a checkpoint
        dist.barrier()

    def resume(self) -> bool:
        if not (self.ckpt and self.ckpt.is_file()):
            return False
        try:
            st = torch.load(self.ckpt, weights_only=True)
            self.links.load_state_dict(st["links"])
            self.opt.load_state_dict(st["opt"])
            self.sched.load_state_dict(st["sched"])
            saved = (st["seed"], list(st["steps"]) if isinstance(st["steps"], list | tuple) else st["steps"])
            self.step, self.losses, self.extra = st["step"], st["losses"], st.get("extra", {})
        except (RuntimeError, KeyError, TypeError, ValueError, OSError, EOFError) as e:
            why = (str(e).splitlines() or [type(e).__name__])[0][:120]
            raise MlcbuildError(f"{self.ckpt}: cannot resume from this checkpoint ({why})",
                                "delete it or train with the same agents and pattern") from None
        if saved != (self.seed, [self.teacher_steps, self.rollout_steps]):
            raise MlcbuildError(f"{self.ckpt}: saved with seed {saved[0]} and steps {saved[1]} (teacher-forced, "
                                "rollout)", "resume with the same --seed, --outer-steps and --rollout-steps, "
                                "or delete the checkpoint")
        return True

    def stage(self) -> str:
        return "teacher" if self.step < self.teacher_steps else "rollout"

    def partners(self, idx: list[int]) -> list[int | None]:
        """For each row, another training row of the same kind (None when its family has one row or no kind);
        depends only on (seed, step), so a resumed run draws the same partners."""
        rng = random.Random(self.seed * 7_919 + self.step)
        out = []
        for i in idx:
            fam = self.family.get(self.rows[i].get("kind"), [])
            out.append(None if self.rows[i].get("kind") is None or len(fam) < 2 else
                       fam[(fam.index(i) + 1 + rng.randrange(len(fam) - 1)) % len(fam)])
        return out

    def loss_sum(self, rows: list[dict], partner_rows: list[dict | None] | None = None) -> torch.Tensor:
        """Sum over `rows` of each row's loss in the current stage: its answer cross-entropy, plus in the
        teacher-forced stage with `contrast` > 0 a hinge that wants the answer at least `margin` nats less
        likely when the senders worked on another question of the same family (`partner_rows`): the links are
        pushed to carry per-question content, not only the task type, which the shuffled control cannot tell
        apart (bench/RESULTS.md, issue 23). With `keep_single` > 0, a term that keeps the final agent's
        one-agent behaviour where the hand-offs carry nothing for its question: keep_single * KL(one agent ||
        the agent given another same-family question's hand-offs), per answer position, averaged over the row."""
        from .batched import rollout_losses
        from .teacher import losses_of, single_logits, teacher_forced_losses

        if self.stage() != "teacher":
            return rollout_losses(self.agents, self.links, self.pattern, rows, self.rounds, self.m).sum()
        own = teacher_forced_losses(self.agents, self.links, self.pattern, rows, self.rounds)
        pairs = [(j, p) for j, p in enumerate(partner_rows or []) if p is not None]
        if not ((self.contrast or self.keep_single) and pairs):
            return own.sum()
        at = [j for j, _ in pairs]
        mine = [rows[j] for j in at]
        logits = teacher_forced_losses(self.agents, self.links, self.pattern, mine, self.rounds,
                                       sender_rows=[p for _, p in pairs], logits=True)
        total = own.sum()
        final = self.agents[self.pattern.final]
        if self.contrast:
            total = total + self.contrast * torch.relu(self.margin - (losses_of(final, logits, mine) - own[at])).sum()
        if self.keep_single:
            kl = [F.kl_div(F.log_softmax(lg, -1), F.log_softmax(ref, -1), log_target=True, reduction="batchmean")
                  for lg, ref in zip(logits, single_logits(final, mine), strict=True)]
            total = total + self.keep_single * torch.stack(kl).sum()
        return total

    def run(self, until: int | None = None, on_step=None) -> list[float]:
        """Train up to global step `until` (default: all steps); returns the per-step losses so far."""
        self.links.train()
        for p in self.links.inner.parameters():  # inner links were trained by the inner loop; keep them fixed
            p.requires_grad_(False)
        end = min(self.steps, until if until is not None else self.steps)
        while self.step < end:
            idx = _rows_for_step(len(self.rows), self.batch, self.seed, self.step)
            mine = dist.shard(idx)
            partner = dict(zip(idx, self.partners(idx), strict=True)) if self.contrast or self.keep_single else {}
            self.opt.zero_grad()
            loss = self.loss_sum([self.rows[i] for i in mine],
                                 [None if partner.get(i) is None else self.rows[partner[i]] for i in mine]) \
                / len(idx) if mine else None
            if loss is not None:
                loss.backward()
            dist.sum_grads(self.params)
            total = torch.tensor([loss.item() if loss is not None else 0.0], dtype=torch.float64)
            if dist.world() > 1:
                import torch.distributed as tdist

                tdist.all_reduce(total)
            total = float(total)
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
    """Held-out answer cross-entropy through the inference computation (latent rollouts)."""
    from .batched import rollout_losses

    return float(rollout_losses(agents, links, pattern, rows, rounds, m).mean()) if rows else 0.0
