"""The train-links settings (no torch here: the CLI reads the defaults when it starts)."""

from dataclasses import dataclass


@dataclass
class Config:
    agents: list[str]
    pattern: str = "sequential"
    data: str | None = None  # a JSONL file, "builtin" (default) or "varied" (train_links.tasks_varied)
    exclude_family: tuple[str, ...] = ()  # families left out of training and validation (leave-one-family-out)
    rounds: int = 3
    latent_steps: int = 16
    out: str = "recursivelink.json"
    inner_steps: int = 600
    outer_steps: int = 300  # teacher-forced steps
    rollout_steps: int = 0  # then steps through the exact inference computation
    answer_target: str = "answer"  # the final agent's training text: "answer" or "worked" (data.worked_answer)
    max_new: int = 40  # answer tokens generated when the links are scored (validation, --eval)
    batch: int = 8
    contrast: float = 0.0  # weight of the same-family contrast hinge (teacher-forced stage; train.OuterTrainer)
    contrast_margin: float = 0.5  # nats the answer CE must rise with another question's hand-offs
    keep_single: float = 0.0  # weight of KL(one agent || agent given another question's hand-offs) (train.OuterTrainer)
    lr: float = 1e-4
    inner_lr: float = 1e-3
    init: str = "ridge"  # outer links: "ridge" (closed form) or "random"
    init_from: str | None = None  # start from this links file (same agents, pattern, widths): no inner stage
    pair_rows: int = 600  # rows whose assistant turns give the inner pairs and the ridge fit
    inner_width: int | None = None  # default d
    outer_width: int | None = None  # default 2 * d_target
    warmup: int | None = None
    dtype: str = "f32"  # the frozen agents: f32 or bf16 (links always train in f32)
    link_dtype: str = "f32"  # stored tensors: f32 or f16
    seed: int = 0
    checkpoint: str | None = None  # default: OUT.ckpt
    checkpoint_every: int = 50
    resume: bool = False
    stop_after: int | None = None  # stop after this outer step (checkpoint written); --resume goes on
    val_rows: int = 0  # training rows held aside to score the links (latent exact match); 0: keep the last links
    select_every: int = 50  # outer steps between validation scores
    eval: bool = False
    eval_rows: int = 64
    held_out: float = 0.2
    progress: bool = True
    command: str = ""  # the CLI command that reproduces this run (recorded in the links file)
