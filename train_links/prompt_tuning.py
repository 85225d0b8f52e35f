"""The baseline any links must beat: the final agent ALONE with trained slot vectors (prompt tuning).

Where the latent MAS splices the senders' hand-off ([m, d] per incoming edge) into the final agent's slot, this
baseline splices the same number of free vectors, trained on the same rows, in the same order (the links'
per-step row draw), for the same number of steps, with the same loss (the final agent's answer cross-entropy) and
the same selection (greedy exact match on the same validation rows every --select-every steps). If the links beat
it, their gain is more than a learned prompt: the hand-off carries something about the question.

The file (`slotprompt` v1, next to recursivelink.json in docs/recursivelink.md) stores the vectors with the agent's
model id, weights hash and role, so `mlcbuild eval --prompt FILE --modes prompt-tuned` can check it fits."""

import copy
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlcbuild_common.errors import MlcbuildError
from mlcbuild_common.fsutil import write_bytes_atomic

from . import format as fmt

FORMAT, VERSION = "slotprompt", 1


@dataclass
class SlotPrompt:
    slots: dict[str, np.ndarray]  # slot name -> [k, d] float32 vectors, spliced as a hand-off would be
    meta: dict  # the file minus tensor data: agent {name, model_id, weights_sha256, hidden_size, role}, training

    @property
    def role(self) -> dict:
        return self.meta["agent"]["role"]


def slot_rows(pattern, m: int) -> dict[str, int]:
    """Rows per slot of the final agent in the final round: m per incoming edge, as the latent MAS fills it."""
    rows: dict[str, int] = {}
    for e in pattern.incoming(pattern.final):
        rows[e.slot] = rows.get(e.slot, 0) + m
    return rows


def save(path, agent, slots: dict[str, torch.Tensor], training: dict, dtype: str = "f32") -> Path:
    doc = {"format": FORMAT, "version": VERSION, "training": training,
           "agent": {"name": agent.name, "model_id": agent.model_id, "weights_sha256": agent.weights_sha256,
                     "hidden_size": agent.d, "role": {"system": agent.role.system, "user": agent.role.user,
                                                      "target": agent.role.target}},
           "slots": {k: fmt._encode(v, dtype, f"slot {k}") for k, v in slots.items()}, "dtype": dtype}
    return fmt.write_json(path, doc)


def load(path, hidden_size: int | None = None) -> SlotPrompt:
    """Read and check a slotprompt file; every problem is one MlcbuildError naming the file and the field."""
    p = Path(path)
    if not p.is_file():
        raise fmt._bad(p, "no such file", "pass the file written by mlcbuild train-prompt")
    if p.stat().st_size > 64 << 20:
        raise fmt._bad(p, "larger than 64 MiB: not a slot prompt", "pass the file written by mlcbuild train-prompt")
    try:
        doc = json.loads(p.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise fmt._bad(p, f"not valid JSON, truncated or corrupted ({str(e)[:80]})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise fmt._bad(p, f"not a {FORMAT} v{VERSION} file", "pass the file written by mlcbuild train-prompt")
    agent = fmt._need(doc, "agent", dict, p)
    d = fmt._int(agent.get("hidden_size"), 1, fmt.MAX_DIM, p, "agent.hidden_size")
    role = fmt._need(agent, "role", dict, f"{p}: agent")
    if not all(isinstance(role.get(k), str) for k in ("system", "user")):
        raise fmt._bad(p, "agent.role needs system and user strings")
    if hidden_size is not None and d != hidden_size:
        raise fmt._bad(p, f"vectors of size {d}, but the model's hidden size is {hidden_size}",
                       "train the prompt for this model")
    dtype = doc.get("dtype")
    if dtype not in fmt.DTYPES:
        raise fmt._bad(p, f"dtype {str(dtype)[:20]!r} is not supported (expected f32 or f16)")
    slots = {}
    for name, spec in fmt._need(doc, "slots", dict, p).items():
        shape = spec.get("shape") if isinstance(spec, dict) else None
        if not (isinstance(shape, list) and len(shape) == 2 and shape[1] == d):
            raise fmt._bad(p, f"slot {name[:40]!r}: shape must be [rows, {d}]")
        fmt._int(shape[0], 1, fmt.MAX_STEPS, p, f"slot {name[:40]} rows")
        slots[name] = fmt._decode(spec, shape, dtype, f"{p}: slot {name[:40]}").numpy()
    if not slots:
        raise fmt._bad(p, "no slots")
    return SlotPrompt(slots, {k: v for k, v in doc.items() if k != "slots"})


def check_fits(sp: SlotPrompt, role, weights_sha256: str | None, where) -> None:
    """The prompt was trained for this final agent: same role text and slots, same weights when both are known."""
    if (sp.role["system"], sp.role["user"]) != (role.system, role.user) or not set(sp.slots) <= set(role.slots):
        raise MlcbuildError(f"{where}: trained for another role or slots than the links' final agent {role.name}",
                            "train the prompt with the same --pattern as the links")
    want = sp.meta["agent"].get("weights_sha256")
    if want and weights_sha256 and want != weights_sha256:
        raise MlcbuildError(f"{where}: trained on weights {want[:12]}, the build holds {weights_sha256[:12]}",
                            "train the prompt on these weights")


def _score(agent, slots, rows, max_new) -> float:
    from .batched import generate_batch
    from .data import rivals_by_kind
    from .evaluate import BATCH, count_hits

    rivals, hits = rivals_by_kind(rows), 0
    for at in range(0, len(rows), BATCH):
        chunk = rows[at:at + BATCH]
        prompts = [agent.prompt_embeds({"question": r["question"]}, slots) for r in chunk]
        with torch.no_grad():
            hits += count_hits(generate_batch(agent, prompts, max_new), chunk, rivals)
    return hits / max(1, len(rows))


def train(agent, rows_per_slot: dict[str, int], train_rows, val_rows, steps, batch, lr, seed, warmup=None,
          select_every=50, max_new=40, ckpt: Path | None = None, resume=False, echo=print, on_step=None,
          start: dict | None = None) -> dict:
    """Train the slot vectors (from `start`, {slot: [k, d]}, when given: the prompt that a links file's
    --init-from counterpart started from); returns {"slots": best tensors, "validation", "selected_step",
    "losses"}. Rows per step are the links trainer's (train._rows_for_step): both see the same data in order."""
    from .teacher import answer_losses
    from .train import _rows_for_step, stage_schedule

    g = torch.Generator().manual_seed(seed)
    emb = agent.model.get_input_embeddings().weight
    params = {s: torch.nn.Parameter(emb[torch.randint(0, emb.shape[0], (k,), generator=g)].detach().float().clone())
              for s, k in rows_per_slot.items()}  # start from real token embeddings: the scale the model expects
    for s, v in (start or {}).items():
        if s not in params or tuple(v.shape) != tuple(params[s].shape):
            raise MlcbuildError(f"--init-from: slot {s} of shape {list(v.shape)} does not fit this run's "
                                f"{ {k: list(p.shape) for k, p in params.items()} }", "use the same --latent-steps")
        params[s].data.copy_(torch.as_tensor(v))
    opt = torch.optim.AdamW(list(params.values()), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, stage_schedule(steps, 0, warmup))
    step, losses, extra = 0, [], {"validation": []}
    if resume and ckpt and ckpt.is_file():
        st = torch.load(ckpt, weights_only=True)
        if st["seed"] != seed or st["steps"] != steps:
            raise MlcbuildError(f"{ckpt}: saved with seed {st['seed']} and {st['steps']} steps",
                                "resume with the same --seed and --steps, or delete the checkpoint")
        for s, v in st["slots"].items():
            params[s].data.copy_(v)
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        step, losses, extra = st["step"], st["losses"], st["extra"]
        echo(f"resumed from {ckpt} at step {step}/{steps}")

    def save_ckpt():
        if ckpt:
            buf = io.BytesIO()
            torch.save({"slots": {s: p.detach() for s, p in params.items()}, "opt": opt.state_dict(),
                        "sched": sched.state_dict(), "step": step, "losses": losses, "extra": extra, "seed": seed,
                        "steps": steps}, buf)
            write_bytes_atomic(ckpt, buf.getvalue())

    def select():
        acc = _score(agent, {s: p.detach() for s, p in params.items()}, val_rows, max_new)
        extra["validation"].append([step, acc])
        if "best" not in extra or acc > extra["best"]["accuracy"]:
            extra["best"] = {"step": step, "accuracy": acc,
                             "slots": {s: copy.deepcopy(p.detach()) for s, p in params.items()}}
        echo(f"prompt step {step}: validation exact match {acc:.1%} ({len(val_rows)} rows)")

    if val_rows and "best" not in extra:
        select()
    while step < steps:
        idx = _rows_for_step(len(train_rows), batch, seed, step)
        chunk = [train_rows[i] for i in idx]
        prompts = [agent.prompt_embeds({"question": r["question"]}, params) for r in chunk]
        loss = answer_losses(agent, prompts, chunk).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        opt.step()
        sched.step()
        step += 1
        losses.append(loss.item())
        if on_step:
            on_step(step, losses[-1])
        if val_rows and (step % select_every == 0 or step == steps):
            select()
        if step % 50 == 0 or step == steps:
            save_ckpt()
    best = extra.get("best")
    slots = best["slots"] if best else {s: p.detach() for s, p in params.items()}
    return {"slots": slots, "validation": extra["validation"], "selected_step": best["step"] if best else steps,
            "losses": losses}
