"""`mlcbuild train-links`: the Click command (registered in builder/cli.py); `python3 -m train_links.cli ...`
runs the same command."""

import json
import sys

import click

from .patterns import PATTERNS


@click.command("train-links", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--agents", required=True, help="Comma-separated models, one per pattern agent: presets or local paths "
              "(HF folder or .gguf), e.g. tiny-qwen3,tiny-llama,tiny-qwen3.")
@click.option("--pattern", type=click.Choice(list(PATTERNS)), default="sequential", show_default=True)
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="JSONL rows {question, plan?, refined_plan?, answer}; default: the built-in arithmetic set.")
@click.option("--rounds", type=int, default=3, show_default=True, help="Recursion rounds r.")
@click.option("--latent-steps", type=int, default=16, show_default=True, help="Latent thoughts m per agent.")
@click.option("--out", default="recursivelink.json", show_default=True, type=click.Path(dir_okay=False))
@click.option("--inner-steps", type=int, default=300, show_default=True)
@click.option("--outer-steps", type=int, default=200, show_default=True)
@click.option("--batch", type=int, default=4, show_default=True, help="Rows per outer step.")
@click.option("--lr", type=float, default=5e-4, show_default=True, help="Outer-loop learning rate.")
@click.option("--inner-lr", type=float, default=1e-3, show_default=True)
@click.option("--warmup", type=int, default=None, help="Warmup steps (default: 10% of --outer-steps).")
@click.option("--dtype", type=click.Choice(["f32", "bf16"]), default="f32", show_default=True,
              help="Precision of the frozen agents (links train in f32).")
@click.option("--link-dtype", type=click.Choice(["f32", "f16"]), default="f32", show_default=True,
              help="Precision of the tensors stored in --out.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--checkpoint", default=None, type=click.Path(dir_okay=False),
              help="Checkpoint file (default: OUT.ckpt).")
@click.option("--checkpoint-every", type=int, default=50, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from the checkpoint if there is one.")
@click.option("--eval", "do_eval", is_flag=True, help="Report held-out answer CE and exact match: single agent, "
              "text MAS, latent MAS with untrained and with trained links.")
@click.option("--eval-rows", type=int, default=20, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def train_links_cmd(agents, pattern, data, rounds, latent_steps, out, inner_steps, outer_steps, batch, lr, inner_lr,
                    warmup, dtype, link_dtype, seed, checkpoint, checkpoint_every, resume, do_eval, eval_rows, quiet,
                    as_json):
    """Train RecursiveLinks (inner + outer) for frozen agents and write recursivelink.json."""
    from .evaluate import render
    from .pipeline import Config, run

    cfg = Config(agents=[a.strip() for a in agents.split(",") if a.strip()], pattern=pattern, data=data,
                 rounds=rounds, latent_steps=latent_steps, out=out, inner_steps=inner_steps, outer_steps=outer_steps,
                 batch=batch, lr=lr, inner_lr=inner_lr, warmup=warmup, dtype=dtype, link_dtype=link_dtype, seed=seed,
                 checkpoint=checkpoint, checkpoint_every=max(1, checkpoint_every), resume=resume, eval=do_eval,
                 eval_rows=eval_rows, progress=not (quiet or as_json))
    echo = (lambda s: None) if as_json else (lambda s: click.echo(s, err=True))
    summary = run(cfg, echo=echo)
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    elif "eval" in summary:
        click.echo(render(summary["eval"]))


if __name__ == "__main__":  # `python3 -m train_links.cli ...` == `mlcbuild train-links ...`
    from builder.cli import cli

    cli.main(args=["train-links", *sys.argv[1:]])
