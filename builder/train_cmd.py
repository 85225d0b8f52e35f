"""`mlcbuild train-links` and `mlcbuild train-prompt` (its prompt-tuned baseline): Click commands over
train_links.pipeline (registered in builder/cli.py). Agents may be preset names: this layer resolves them
(builder.fetch), train_links only sees paths. Under torchrun: `torchrun --nproc-per-node N -m builder.cli train-links
...`."""

import json
import shlex

import click

from train_links.config import Config
from train_links.patterns import PATTERNS

DATA = click.option("--data", type=click.Path(dir_okay=False), default=None,
                    help="JSONL rows {question, plan?, refined_plan?, answer}, or 'builtin' (the default: the built-in "
                    "task set, 9 families), or 'varied' (the same families in >= 10 wordings each, validated on "
                    "wordings held out of training; its held-out rows are the template-disjoint test split).")
EXCLUDE = click.option("--exclude-family", multiple=True, help="Leave this task family (a row's kind) out of "
                       "training and validation, to test on it (leave-one-family-out). Repeatable.")


PATTERN = click.option("--pattern", type=click.Choice(list(PATTERNS)), default="sequential", show_default=True)


@click.command("train-links", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--agents", required=True, help="Comma-separated models, one per pattern agent: presets or local paths "
              "(HF folder or .gguf), e.g. tiny-qwen3,tiny-llama,tiny-qwen3.")
@PATTERN
@DATA
@EXCLUDE
@click.option("--rounds", type=int, default=3, show_default=True, help="Recursion rounds r.")
@click.option("--latent-steps", type=int, default=16, show_default=True, help="Latent thoughts m per agent.")
@click.option("--out", default="recursivelink.json", show_default=True, type=click.Path(dir_okay=False))
@click.option("--inner-steps", type=int, default=Config.inner_steps, show_default=True)
@click.option("--outer-steps", type=int, default=Config.outer_steps, show_default=True,
              help="Teacher-forced outer steps (senders' hidden states over the ground-truth text of their turns).")
@click.option("--rollout-steps", type=int, default=Config.rollout_steps, show_default=True,
              help="Then outer steps through the exact inference computation (latent rollouts; slower).")
@click.option("--answer-target", type=click.Choice(["answer", "worked"]), default=Config.answer_target,
              show_default=True, help="The final agent's training text: the bare answer, or the refined plan's "
              "computation then 'The answer is X.'")
@click.option("--max-new-tokens", "max_new", type=int, default=Config.max_new, show_default=True,
              help="Answer tokens generated when the links are scored (--val-rows, --eval).")
@click.option("--batch", type=int, default=Config.batch, show_default=True, help="Rows per outer step (global, "
              "split over torchrun ranks).")
@click.option("--lr", type=float, default=Config.lr, show_default=True, help="Outer-loop learning rate.")
@click.option("--contrast", type=float, default=Config.contrast, show_default=True, help="Weight of a hinge "
              "(teacher-forced steps) that wants each row's answer less likely with the hand-offs of another "
              "question of its family: links that carry per-question content, not only the task type.")
@click.option("--contrast-margin", type=float, default=Config.contrast_margin, show_default=True,
              help="The hinge's margin in nats of answer cross-entropy.")
@click.option("--keep-single", type=float, default=Config.keep_single, show_default=True, help="Weight of "
              "KL(one agent || the final agent given another same-family question's hand-offs) in the "
              "teacher-forced steps: where the hand-offs carry nothing for the question, keep one-agent behaviour.")
@click.option("--inner-lr", type=float, default=Config.inner_lr, show_default=True)
@click.option("--init", type=click.Choice(["ridge", "random"]), default=Config.init, show_default=True,
              help="Outer links' start: closed-form ridge regression between paired states, or random.")
@click.option("--init-from", type=click.Path(dir_okay=False), default=None,
              help="Start from this recursivelink.json (same agents, pattern and widths): its inner links are kept "
              "and its outer links train on.")
@click.option("--pair-rows", type=int, default=Config.pair_rows, show_default=True,
              help="Training rows whose assistant turns give the inner pairs and the ridge fit.")
@click.option("--inner-width", type=int, default=None, help="Inner links' MLP width (default: the hidden size).")
@click.option("--outer-width", type=int, default=None, help="Outer links' MLP width (default: 2x the receiver's "
              "hidden size).")
@click.option("--warmup", type=int, default=None, help="Warmup steps (default: 10% of --outer-steps).")
@click.option("--dtype", type=click.Choice(["f32", "bf16"]), default="f32", show_default=True,
              help="Precision of the frozen agents (links train in f32).")
@click.option("--link-dtype", type=click.Choice(["f32", "f16"]), default="f32", show_default=True,
              help="Precision of the tensors stored in --out.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--checkpoint", default=None, type=click.Path(dir_okay=False),
              help="Checkpoint file (default: OUT.ckpt).")
@click.option("--checkpoint-every", type=int, default=50, show_default=True)
@click.option("--val-rows", type=int, default=Config.val_rows, show_default=True,
              help="Training rows held aside to score the links (latent MAS exact match) every --select-every "
              "steps; the best links are kept. 0: keep the last links.")
@click.option("--select-every", type=int, default=Config.select_every, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from the checkpoint if there is one.")
@click.option("--stop-after", type=int, default=None, help="Stop after this outer step (the checkpoint and the links "
              "so far are written); --resume goes on from there.")
@click.option("--eval", "do_eval", is_flag=True, help="Report held-out answer CE and exact match: single agent, "
              "text MAS, latent MAS with untrained and with trained links.")
@click.option("--eval-rows", type=int, default=Config.eval_rows, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def train_links_cmd(agents, pattern, data, exclude_family, rounds, latent_steps, out, inner_steps, outer_steps,
                    rollout_steps, answer_target, max_new, batch, lr, contrast, contrast_margin, keep_single, inner_lr,
                    init, init_from, pair_rows, inner_width, outer_width, warmup, dtype, link_dtype, seed, checkpoint,
                    checkpoint_every, val_rows, select_every, resume, stop_after, do_eval, eval_rows, quiet, as_json):
    """Train RecursiveLinks (inner + outer) for frozen agents and write recursivelink.json.

    Runs unchanged under `torchrun --nproc-per-node N` (data parallel: gloo on CPUs, nccl on GPUs)."""
    from train_links.evaluate import render
    from train_links.pipeline import run

    from .fetch import model_source

    cfg = Config(agents=[a.strip() for a in agents.split(",") if a.strip()], pattern=pattern, data=data,
                 exclude_family=tuple(exclude_family), rounds=rounds, latent_steps=latent_steps, out=out,
                 inner_steps=inner_steps, outer_steps=outer_steps, rollout_steps=rollout_steps,
                 answer_target=answer_target, max_new=max_new, batch=batch, lr=lr, contrast=contrast,
                 contrast_margin=contrast_margin, keep_single=keep_single, inner_lr=inner_lr, init=init,
                 init_from=init_from, pair_rows=pair_rows,
                 inner_width=inner_width, outer_width=outer_width, warmup=warmup, dtype=dtype, link_dtype=link_dtype,
                 seed=seed, checkpoint=checkpoint, checkpoint_every=max(1, checkpoint_every), resume=resume,
                 stop_after=stop_after, val_rows=val_rows, select_every=max(1, select_every), eval=do_eval,
                 eval_rows=eval_rows, progress=not (quiet or as_json), command=_command(click.get_current_context()))
    echo = (lambda s: None) if as_json else (lambda s: click.echo(s, err=True))
    summary = run(cfg, echo=echo, resolve=model_source)
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    elif "eval" in summary:
        click.echo(render(summary["eval"]))


@click.command("train-prompt", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--agents", required=True, help="The same models as the links' train-links --agents (only the final "
              "agent is loaded and trained for).")
@PATTERN
@DATA
@EXCLUDE
@click.option("--latent-steps", type=int, default=16, show_default=True, help="m: the vectors per incoming edge of "
              "the final agent (as many rows as the links' hand-off).")
@click.option("--out", default="slotprompt.json", show_default=True, type=click.Path(dir_okay=False))
@click.option("--outer-steps", type=int, default=Config.outer_steps, show_default=True,
              help="Steps; with --rollout-steps, the links' total, so both train on the same rows.")
@click.option("--rollout-steps", type=int, default=Config.rollout_steps, show_default=True)
@click.option("--answer-target", type=click.Choice(["answer", "worked"]), default=Config.answer_target,
              show_default=True)
@click.option("--max-new-tokens", "max_new", type=int, default=Config.max_new, show_default=True)
@click.option("--batch", type=int, default=Config.batch, show_default=True)
@click.option("--lr", type=float, default=1e-2, show_default=True, help="Prompt tuning wants a larger rate than "
              "the links.")
@click.option("--warmup", type=int, default=None)
@click.option("--dtype", type=click.Choice(["f32", "bf16"]), default="f32", show_default=True)
@click.option("--link-dtype", type=click.Choice(["f32", "f16"]), default="f32", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--checkpoint", default=None, type=click.Path(dir_okay=False), help="Default: OUT.ckpt.")
@click.option("--val-rows", type=int, default=Config.val_rows, show_default=True)
@click.option("--select-every", type=int, default=Config.select_every, show_default=True)
@click.option("--init-from", type=click.Path(dir_okay=False), default=None,
              help="Start from this slot prompt (the counterpart of the links' --init-from).")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint if there is one.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def train_prompt_cmd(agents, pattern, data, exclude_family, latent_steps, out, outer_steps, rollout_steps,
                     answer_target, max_new, batch, lr, warmup, dtype, link_dtype, seed, checkpoint, val_rows,
                     select_every, init_from, resume, quiet, as_json):
    """Train the prompt-tuned baseline: the final agent alone with trained slot vectors, on the links' rows.

    `mlcbuild eval --prompt OUT --modes single,prompt-tuned,latent` then compares it with the latent MAS."""
    from train_links.pipeline import run_prompt

    from .fetch import model_source

    cfg = Config(agents=[a.strip() for a in agents.split(",") if a.strip()], pattern=pattern, data=data,
                 exclude_family=tuple(exclude_family), latent_steps=latent_steps, out=out, outer_steps=outer_steps,
                 rollout_steps=rollout_steps, answer_target=answer_target, max_new=max_new, batch=batch, lr=lr,
                 warmup=warmup, dtype=dtype, link_dtype=link_dtype, seed=seed, checkpoint=checkpoint,
                 init_from=init_from, resume=resume, val_rows=val_rows, select_every=max(1, select_every),
                 progress=not (quiet or as_json),
                 command=_command(click.get_current_context()))
    echo = (lambda s: None) if as_json else (lambda s: click.echo(s, err=True))
    summary = run_prompt(cfg, echo=echo, resolve=model_source)
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))


def _command(ctx) -> str:
    """The command that reproduces this run (options that differ from their defaults), kept in the output file."""
    parts = ["mlcbuild", ctx.command.name]
    for p in ctx.command.params:
        v = ctx.params.get(p.name)
        if p.name in ("resume", "stop_after", "quiet", "as_json", "checkpoint") or v is None or v is False \
                or v == p.default or v == ():
            continue
        if isinstance(v, tuple):
            for x in v:
                parts += [p.opts[0], str(x)]
            continue
        parts += [p.opts[0]] if v is True else [p.opts[0], str(v)]
    return shlex.join(parts)
