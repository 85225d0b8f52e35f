"""The whole train-links job as one function: load agents and data, inner loop, outer loop, save, evaluate."""

import copy
from dataclasses import dataclass
from pathlib import Path

import torch

from builder.errors import MlcbuildError
from builder.progress import bar

from . import data as data_mod
from . import format as fmt
from .agents import make_agents
from .evaluate import evaluate
from .patterns import get_pattern
from .system import LinkSet
from .train import OuterTrainer, inner_cosine, inner_pairs, train_inner


@dataclass
class Config:
    agents: list[str]
    pattern: str = "sequential"
    data: str | None = None
    rounds: int = 3
    latent_steps: int = 16
    out: str = "recursivelink.json"
    inner_steps: int = 300
    outer_steps: int = 200
    batch: int = 4
    lr: float = 5e-4
    inner_lr: float = 1e-3
    warmup: int | None = None
    dtype: str = "f32"  # the frozen agents: f32 or bf16 (links always train in f32)
    link_dtype: str = "f32"  # stored tensors: f32 or f16
    seed: int = 0
    checkpoint: str | None = None  # default: OUT.ckpt
    checkpoint_every: int = 50
    resume: bool = False
    eval: bool = False
    eval_rows: int = 20
    held_out: float = 0.2
    progress: bool = True


def _check(cfg: Config):
    for name, v, lo in (("--rounds", cfg.rounds, 1), ("--latent-steps", cfg.latent_steps, 1),
                        ("--batch", cfg.batch, 1), ("--inner-steps", cfg.inner_steps, 0),
                        ("--outer-steps", cfg.outer_steps, 0)):
        if v < lo:
            raise MlcbuildError(f"{name} must be >= {lo}, got {v}", f"pass {name} {max(lo, 1)} or more")
    if cfg.latent_steps > fmt.MAX_STEPS:
        raise MlcbuildError(f"--latent-steps {cfg.latent_steps} is above {fmt.MAX_STEPS}", "use fewer latent steps")
    if cfg.dtype not in ("f32", "bf16"):
        raise MlcbuildError(f"--dtype {cfg.dtype} is not supported", "use f32 or bf16")
    if cfg.link_dtype not in fmt.DTYPES:
        raise MlcbuildError(f"--link-dtype {cfg.link_dtype} is not supported", "use f32 or f16")


def load_rows(cfg: Config) -> tuple[list[dict], list[dict]]:
    if cfg.data:
        return data_mod.split(data_mod.load_jsonl(cfg.data), cfg.held_out, cfg.seed)
    return data_mod.builtin(held_out=cfg.held_out)


def run(cfg: Config, echo=print) -> dict:
    """Train (or resume), write cfg.out, and optionally evaluate; returns a summary dict."""
    _check(cfg)
    torch.manual_seed(cfg.seed)
    pattern = get_pattern(cfg.pattern, len(cfg.agents))
    train_rows, held = load_rows(cfg)
    if not train_rows:
        raise MlcbuildError("no training rows after the held-out split", "add rows to --data")
    dtype = torch.bfloat16 if cfg.dtype == "bf16" else torch.float32
    agents = {a.name: a for a in make_agents(cfg.agents, pattern, dtype)}
    links = LinkSet(agents, pattern, cfg.seed)
    untrained = copy.deepcopy(links)
    ckpt = Path(cfg.checkpoint or f"{cfg.out}.ckpt")
    trainer = OuterTrainer(agents, links, pattern, train_rows, cfg.outer_steps, cfg.rounds, cfg.latent_steps,
                           lr=cfg.lr, warmup=cfg.warmup, batch=cfg.batch, seed=cfg.seed, ckpt=ckpt,
                           ckpt_every=cfg.checkpoint_every)
    summary = {"inner": {}, "outer": {}, "out": str(cfg.out)}
    resumed = cfg.resume and trainer.resume()
    eval_rows = held[:cfg.eval_rows]
    for name, agent in agents.items():
        if resumed:
            break  # the checkpoint holds the trained inner links
        pairs = inner_pairs(agent, train_rows)
        held_pairs = inner_pairs(agent, eval_rows) if eval_rows else pairs
        before = inner_cosine(links.inner[name], held_pairs)
        with bar(cfg.inner_steps, f"inner {name}", cfg.progress, unit="step") as b:
            def tick(step, loss, cos, b=b):
                b.update(1)
                b.set_postfix(loss=f"{loss:.4f}", cos=f"{cos:.3f}", refresh=False)
            last = train_inner(links.inner[name], pairs, cfg.inner_steps, cfg.inner_lr, seed=cfg.seed, on_step=tick)
        after = inner_cosine(links.inner[name], held_pairs)
        summary["inner"][name] = {"loss": last, "heldout_cos_before": before, "heldout_cos_after": after}
        echo(f"inner {name}: held-out next-token cosine {before:.3f} -> {after:.3f}")
    if resumed:
        summary["inner"] = trainer.extra.get("inner", {})
        echo(f"resumed from {ckpt} at outer step {trainer.step}/{cfg.outer_steps}")
    else:
        trainer.extra["inner"] = summary["inner"]
        trainer.save()  # inner links done: a resume never redoes them
    with bar(cfg.outer_steps, "outer", cfg.progress, unit="step", initial=trainer.step) as b:
        def otick(step, loss):
            b.update(1)
            b.set_postfix(loss=f"{loss:.4f}", lr=f"{trainer.sched.get_last_lr()[0]:.2e}", refresh=False)
        losses = trainer.run(on_step=otick)
    tail = losses[-10:]
    summary["outer"] = {"steps": len(losses), "loss_first": losses[0] if losses else None,
                        "loss_last10": sum(tail) / len(tail) if tail else None}
    if tail:
        echo(f"outer: answer CE {losses[0]:.4f} (step 1) -> {summary['outer']['loss_last10']:.4f} (last 10 steps)")
    training = {"data": cfg.data or "builtin", "data_sha256": data_mod.rows_hash(train_rows),
                "train_rows": len(train_rows), "heldout_rows": len(held), "inner_steps": cfg.inner_steps,
                "outer_steps": cfg.outer_steps, "batch": cfg.batch, "lr": cfg.lr, "seed": cfg.seed,
                "dtype": cfg.dtype, "final_losses": {"inner": {k: v["loss"] for k, v in summary["inner"].items()},
                                                     "outer": summary["outer"]["loss_last10"]}}
    fmt.save(cfg.out, agents, pattern, links, cfg.latent_steps, cfg.rounds, cfg.link_dtype, training)
    echo(f"wrote {cfg.out} ({Path(cfg.out).stat().st_size} bytes)")
    if cfg.eval:
        if not eval_rows:
            raise MlcbuildError("--eval needs held-out rows", "use more rows in --data or a larger --held-out")
        with bar(4 * len(eval_rows), "eval", cfg.progress, unit="row") as b:
            summary["eval"] = evaluate(agents, pattern, eval_rows, cfg.rounds, cfg.latent_steps, untrained, links,
                                       progress=b)
    return summary
