"""The whole train-links job as one function: load agents and data, inner loop, closed-form init of the outer
links, outer loop (teacher-forced, then optional rollout stage), save, evaluate. Runs the same under torchrun
(train_links.dist): every rank computes the inner stage (cheap, identical), the outer steps are split over ranks,
rank 0 writes the files."""

import copy
from pathlib import Path

import torch

from mlcbuild_common.errors import MlcbuildError
from mlcbuild_common.progress import bar

from . import data as data_mod
from . import dist
from . import format as fmt
from .agents import local_source, make_agents
from .config import Config
from .evaluate import evaluate
from .init import init_outer
from .patterns import get_pattern
from .system import LinkSet
from .train import OuterTrainer, inner_cosine, inner_pairs, train_inner


def _check(cfg: Config):
    for name, v, lo in (("--rounds", cfg.rounds, 1), ("--latent-steps", cfg.latent_steps, 1),
                        ("--batch", cfg.batch, 1), ("--inner-steps", cfg.inner_steps, 0),
                        ("--outer-steps", cfg.outer_steps, 0), ("--rollout-steps", cfg.rollout_steps, 0),
                        ("--pair-rows", cfg.pair_rows, 1), ("--val-rows", cfg.val_rows, 0),
                        ("--contrast", cfg.contrast, 0), ("--contrast-margin", cfg.contrast_margin, 0),
                        ("--keep-single", cfg.keep_single, 0)):
        if v < lo:
            raise MlcbuildError(f"{name} must be >= {lo}, got {v}", f"pass {name} {lo} or more")
    for name, v in (("--inner-width", cfg.inner_width), ("--outer-width", cfg.outer_width)):
        if v is not None and not 1 <= v <= fmt.MAX_DIM:
            raise MlcbuildError(f"{name} {v} is out of range", f"pass a width between 1 and {fmt.MAX_DIM}")
    if cfg.latent_steps > fmt.MAX_STEPS:
        raise MlcbuildError(f"--latent-steps {cfg.latent_steps} is above {fmt.MAX_STEPS}", "use fewer latent steps")
    if cfg.dtype not in ("f32", "bf16"):
        raise MlcbuildError(f"--dtype {cfg.dtype} is not supported", "use f32 or bf16")
    if cfg.link_dtype not in fmt.DTYPES:
        raise MlcbuildError(f"--link-dtype {cfg.link_dtype} is not supported", "use f32 or f16")
    if cfg.answer_target not in data_mod.TARGETS:
        raise MlcbuildError(f"--answer-target {cfg.answer_target} is not supported", "use answer or worked")
    if cfg.init not in ("ridge", "random"):
        raise MlcbuildError(f"--init {cfg.init} is not supported", "use ridge or random")


def load_rows(cfg: Config) -> tuple[list[dict], list[dict], list[dict]]:
    """(train, validation, held-out) rows. The built-in set and user files hold the last --val-rows training rows
    aside for validation; the varied set (--data varied) validates on its own validation TEMPLATES, so the links
    are selected on wordings they never trained on. --exclude-family drops a family from training and
    validation (leave-one-family-out); the held-out rows keep it, to test on."""
    from .tasks_varied import FAMILIES

    unknown = sorted(set(cfg.exclude_family) - set(FAMILIES))
    if unknown and (not cfg.data or cfg.data in ("builtin", "varied")):
        raise MlcbuildError(f"--exclude-family {unknown[0]}: no such task family",
                            f"use one of {', '.join(FAMILIES)}")
    if cfg.data == "varied":
        from .tasks_disjoint import disjoint_test
        from .tasks_varied import varied

        train, val = varied(exclude=tuple(cfg.exclude_family))
        val, held = val[:cfg.val_rows], disjoint_test()
    else:
        if cfg.data and cfg.data != "builtin":
            train, held = data_mod.split(data_mod.load_jsonl(cfg.data), cfg.held_out, cfg.seed)
        else:
            train, held = data_mod.builtin()
        train = [r for r in train if r.get("kind") not in cfg.exclude_family]
        k = min(cfg.val_rows, max(0, len(train) - 1))
        train, val = train[:len(train) - k], train[len(train) - k:]
    return data_mod.with_targets(train, cfg.answer_target), data_mod.with_targets(val, cfg.answer_target), held


def _setup(cfg: Config, resolve):
    """(pattern, train rows, validation rows, held-out rows, agents by name): what links and prompt training share."""
    torch.manual_seed(cfg.seed)
    pattern = get_pattern(cfg.pattern, len(cfg.agents))
    train_rows, val_rows, held = load_rows(cfg)
    if not train_rows:
        raise MlcbuildError("no training rows after the held-out split", "add rows to --data")
    dtype = torch.bfloat16 if cfg.dtype == "bf16" else torch.float32
    agents = {a.name: a for a in make_agents(cfg.agents, pattern, dtype, resolve=resolve)}
    return pattern, train_rows, val_rows, held, agents


def _inner_stage(cfg, agents, links, train_rows, eval_rows, echo) -> dict:
    """Inner links on next-token pairs, then the outer links' closed-form start from the senders' pairs."""
    summary, pairs = {}, {}
    fit_rows = train_rows[:cfg.pair_rows]
    for name, agent in agents.items():
        pairs[name] = inner_pairs(agent, fit_rows)
        held_pairs = inner_pairs(agent, eval_rows) if eval_rows else pairs[name]
        before = inner_cosine(links.inner[name], held_pairs)
        with bar(cfg.inner_steps, f"inner {name}", cfg.progress and dist.is_main(), unit="step") as b:
            def tick(step, loss, cos, b=b):
                b.update(1)
                b.set_postfix(loss=f"{loss:.4f}", cos=f"{cos:.3f}", refresh=False)
            last = train_inner(links.inner[name], pairs[name], cfg.inner_steps, cfg.inner_lr, seed=cfg.seed,
                               on_step=tick)
        after = inner_cosine(links.inner[name], held_pairs)
        summary[name] = {"loss": last, "heldout_cos_before": before, "heldout_cos_after": after}
        echo(f"inner {name}: held-out next-token cosine {before:.3f} -> {after:.3f}")
    if cfg.init == "ridge":
        for key, link in links.outer.items():
            src, dst = key.split(":")[0].split("->")
            init_outer(link, agents[src], agents[dst], pairs[src], fit_rows)
        echo(f"outer links: closed-form (ridge) start from {len(fit_rows)} rows")
    return summary


def _load_start(path, agents, pattern, links) -> list[str]:
    """Copy a links file's tensors into `links`; it must be for the same pattern, agents and link widths. Returns
    the commands that made that file, in order (its own --init-from chain, then its command)."""
    lf = fmt.load(path, {n: a.d for n, a in agents.items()})
    if lf.pattern.to_json() != pattern.to_json():
        raise MlcbuildError(f"--init-from {path}: pattern {lf.pattern.name} with agents {lf.pattern.agents} is not "
                            f"this run's ({pattern.name}, {pattern.agents})", "train with the file's --pattern")
    try:
        lf.load_into(links)
    except RuntimeError as e:
        raise MlcbuildError(f"--init-from {path}: its link widths differ from this run's "
                            f"({str(e).splitlines()[-1].strip()[:100]})",
                            "pass the --inner-width and --outer-width the file was trained with") from None
    training = lf.meta.get("training") or {}
    return [*training.get("init_from_commands", []), training.get("command", "")]


def _select(trainer, links, agents, pattern, rows, cfg, echo) -> None:
    """Score the current links on the validation rows (latent MAS exact match, the inference computation) and
    keep them in the checkpoint's extra if they are the best so far: more outer steps lower the answer CE but
    can lower the accuracy (measured on SmolLM2-135M), so the kept links are the best scored, not the last."""
    from .evaluate import latent_accuracy

    acc = latent_accuracy(agents, pattern, links, rows, cfg.rounds, cfg.latent_steps, cfg.max_new)
    best = trainer.extra.get("best")
    trainer.extra.setdefault("validation", []).append([trainer.step, acc])
    if best is None or acc > best["accuracy"]:
        trainer.extra["best"] = {"step": trainer.step, "accuracy": acc, "links": copy.deepcopy(links.state_dict())}
    echo(f"outer step {trainer.step}: validation exact match {acc:.1%} ({len(rows)} rows)")


def run(cfg: Config, echo=print, resolve=local_source) -> dict:
    """Train (or resume), write cfg.out, and optionally evaluate; returns a summary dict. `resolve` turns each of
    cfg.agents into (path, model_id); mlcbuild passes one that knows preset names."""
    _check(cfg)
    dist.init()
    if not dist.is_main():
        echo = lambda s: None  # noqa: E731 - one rank speaks
    pattern, train_rows, val_rows, held, agents = _setup(cfg, resolve)
    links = LinkSet(agents, pattern, cfg.seed, cfg.inner_width, cfg.outer_width)
    ckpt = Path(cfg.checkpoint or f"{cfg.out}.ckpt")
    trainer = OuterTrainer(agents, links, pattern, train_rows, cfg.outer_steps, cfg.rounds, cfg.latent_steps,
                           lr=cfg.lr, warmup=cfg.warmup, batch=cfg.batch, seed=cfg.seed, ckpt=ckpt,
                           ckpt_every=cfg.checkpoint_every, rollout_steps=cfg.rollout_steps,
                           contrast=cfg.contrast, margin=cfg.contrast_margin, keep_single=cfg.keep_single)
    summary = {"inner": {}, "outer": {}, "out": str(cfg.out)}
    resumed = cfg.resume and trainer.resume()
    k = min(cfg.eval_rows, len(held))  # spread over the split: held-out rows come in family blocks
    eval_rows = [held[i * len(held) // k] for i in range(k)]
    if resumed:
        summary["inner"] = trainer.extra.get("inner", {})
        untrained = copy.deepcopy(links)
        untrained.load_state_dict(trainer.extra["init"])
        echo(f"resumed from {ckpt} at outer step {trainer.step}/{trainer.steps}")
    elif cfg.init_from:
        chain = _load_start(cfg.init_from, agents, pattern, links)
        summary["inner"] = {}
        untrained = copy.deepcopy(links)  # "untrained" = the file started from
        trainer.extra.update(inner={}, init=untrained.state_dict(), init_from=str(cfg.init_from),
                             init_from_commands=chain)
        trainer.save()
        echo(f"started from {cfg.init_from} (its inner links are kept; outer links train on)")
    else:
        summary["inner"] = _inner_stage(cfg, agents, links, train_rows, eval_rows, echo)
        untrained = copy.deepcopy(links)  # the closed-form start: reported next to the trained links
        trainer.extra.update(inner=summary["inner"], init=untrained.state_dict())
        trainer.save()  # inner links and init done: a resume never redoes them
    with bar(trainer.steps, "outer", cfg.progress and dist.is_main(), unit="step", initial=trainer.step) as b:
        def otick(step, loss):
            b.update(1)
            b.set_postfix(stage=trainer.stage(), loss=f"{loss:.4f}", lr=f"{trainer.sched.get_last_lr()[0]:.2e}",
                          refresh=False)
        end = min(trainer.steps, cfg.stop_after if cfg.stop_after is not None else trainer.steps)
        while True:  # in chunks of --select-every steps, scoring the links on the validation rows after each
            if val_rows and "best" not in trainer.extra:
                _select(trainer, links, agents, pattern, val_rows, cfg, echo)
            if trainer.step >= end:
                break
            chunk = cfg.select_every if val_rows else end
            losses = trainer.run(until=min(end, (trainer.step // chunk + 1) * chunk), on_step=otick)
            if val_rows:
                _select(trainer, links, agents, pattern, val_rows, cfg, echo)
        losses = trainer.losses
    if val_rows and trainer.step >= trainer.steps:
        best = trainer.extra["best"]
        links.load_state_dict(best["links"])
        echo(f"kept the links of outer step {best['step']}: validation exact match {best['accuracy']:.1%}")
    if trainer.step < trainer.steps:
        trainer.save()
        echo(f"stopped after outer step {trainer.step}/{trainer.steps}; --resume continues from {ckpt}")
    tail = losses[-10:]
    summary["outer"] = {"steps": len(losses), "loss_first": losses[0] if losses else None,
                        "loss_last10": sum(tail) / len(tail) if tail else None}
    if tail:
        echo(f"outer: answer CE {losses[0]:.4f} (step 1) -> {summary['outer']['loss_last10']:.4f} (last 10 steps)")
    training = {"data": cfg.data or "builtin", "exclude_family": list(cfg.exclude_family),
                "data_sha256": data_mod.rows_hash(train_rows + val_rows),  # as before: training + validation rows
                "train_rows": len(train_rows) + len(val_rows), "heldout_rows": len(held),
                "inner_steps": cfg.inner_steps,
                "outer_steps": cfg.outer_steps, "rollout_steps": cfg.rollout_steps, "batch": cfg.batch,
                "answer_target": cfg.answer_target, "lr": cfg.lr, "init": cfg.init,
                "contrast": cfg.contrast, "contrast_margin": cfg.contrast_margin, "keep_single": cfg.keep_single,
                "max_new_tokens": cfg.max_new,  # the answer budget it was validated with (the playground's default)
                "init_from": trainer.extra.get("init_from"),
                "init_from_commands": trainer.extra.get("init_from_commands", []),  # run these first to reproduce
                "pair_rows": cfg.pair_rows, "seed": cfg.seed, "dtype": cfg.dtype,
                "ranks": dist.world(), "outer_steps_done": trainer.step, "val_rows": len(val_rows),
                "validation": trainer.extra.get("validation", []),
                "selected_step": trainer.extra.get("best", {}).get("step"),
                "final_losses": {"inner": {k: v["loss"] for k, v in summary["inner"].items()},
                                 "outer": summary["outer"]["loss_last10"]}}
    if cfg.command:
        training["command"] = cfg.command
    if dist.is_main():
        fmt.save(cfg.out, agents, pattern, links, cfg.latent_steps, cfg.rounds, cfg.link_dtype, training)
        echo(f"wrote {cfg.out} ({Path(cfg.out).stat().st_size} bytes)")
    if cfg.eval and dist.is_main():
        if not eval_rows:
            raise MlcbuildError("--eval needs held-out rows", "use more rows in --data or a larger --held-out")
        with bar(4 * len(eval_rows), "eval", cfg.progress, unit="row") as b:
            summary["eval"] = evaluate(agents, pattern, eval_rows, cfg.rounds, cfg.latent_steps, untrained, links,
                                       max_new=cfg.max_new, progress=b)
    dist.barrier()
    return summary


def run_prompt(cfg: Config, echo=print, resolve=local_source) -> dict:
    """The prompt-tuned baseline (train_links.prompt_tuning) for cfg's pattern and agents: the final agent alone,
    its final-round slots filled by m trained vectors per incoming edge, trained on the same rows, steps
    (--outer-steps + --rollout-steps), batch, seed and validation as train-links with the same options would
    use. Writes cfg.out (a slotprompt file)."""
    from . import prompt_tuning

    _check(cfg)
    pattern, train_rows, val_rows, _, agents = _setup(cfg, resolve)
    final = agents[pattern.final]
    steps = cfg.outer_steps + cfg.rollout_steps
    with bar(steps, "prompt", cfg.progress, unit="step") as b:
        def tick(step, loss):
            b.update(1)
            b.set_postfix(loss=f"{loss:.4f}", refresh=False)
        start, chain = None, []
        if cfg.init_from:
            sp = prompt_tuning.load(cfg.init_from, final.d)
            prompt_tuning.check_fits(sp, final.role, final.weights_sha256, cfg.init_from)
            start = sp.slots
            chain = [*sp.meta["training"].get("init_from_commands", []), sp.meta["training"].get("command", "")]
        res = prompt_tuning.train(final, prompt_tuning.slot_rows(pattern, cfg.latent_steps), train_rows, val_rows,
                                  steps, cfg.batch, cfg.lr, cfg.seed, cfg.warmup, cfg.select_every, cfg.max_new,
                                  Path(cfg.checkpoint or f"{cfg.out}.ckpt"), cfg.resume, echo, tick, start)
    training = {"data": cfg.data or "builtin", "exclude_family": list(cfg.exclude_family),
                "data_sha256": data_mod.rows_hash(train_rows + val_rows), "train_rows": len(train_rows),
                "val_rows": len(val_rows), "steps": steps, "batch": cfg.batch, "lr": cfg.lr, "seed": cfg.seed,
                "answer_target": cfg.answer_target, "dtype": cfg.dtype, "pattern": pattern.name,
                "latent_steps": cfg.latent_steps, "validation": res["validation"],
                "selected_step": res["selected_step"], "init_from": cfg.init_from, "init_from_commands": chain,
                "command": cfg.command}
    prompt_tuning.save(cfg.out, final, res["slots"], training, cfg.link_dtype)
    best = max((a for _, a in res["validation"]), default=None)
    if best is not None:
        echo(f"kept the vectors of step {res['selected_step']}: validation exact match {best:.1%}")
    echo(f"wrote {cfg.out} ({Path(cfg.out).stat().st_size} bytes)")
    return {"out": str(cfg.out), **{k: v for k, v in training.items() if k != "command"}}
