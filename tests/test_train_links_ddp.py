"""train-links under torchrun: 2 CPU ranks (gloo) give the same links as 1 rank with the same global batch, through
both outer stages, and a 2-rank run resumes from its checkpoint to the same links."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train_links import format as fmt

REPO = Path(__file__).resolve().parent.parent
ARGS = ["--agents", "tiny-qwen3,tiny-llama,tiny-qwen3", "--rounds", "2", "--latent-steps", "2", "--inner-steps", "20",
        "--outer-steps", "3", "--rollout-steps", "2", "--batch", "4", "--pair-rows", "24", "--lr", "1e-3",
        "--quiet"]


def _train(tmp: Path, name: str, ranks: int, *extra: str) -> Path:
    out = tmp / f"{name}.json"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] \
        if ranks > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([*launch, "-m", "builder.cli", "train-links", *ARGS, "--out", str(out), *extra], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def _max_diff(a: Path, b: Path) -> float:
    ta, tb = fmt.load(a).tensors, fmt.load(b).tensors
    assert ta.keys() == tb.keys()
    return max(float((ta[k][n] - tb[k][n]).abs().max()) for k in ta for n in ta[k])


@pytest.mark.slow
def test_two_ranks_match_one(tmp_path):
    one = _train(tmp_path, "one", 1)
    two = _train(tmp_path, "two", 2)
    diff = _max_diff(one, two)
    print(f"1 rank vs 2 ranks (gloo), global batch 4, 3 teacher-forced + 2 rollout steps: max abs diff {diff:.2e}")
    assert diff <= 1e-5
    assert fmt.load(two).meta["training"]["ranks"] == 2 and fmt.load(one).meta["training"]["ranks"] == 1
    # the outer links moved: the runs compare trained links, not two copies of the start
    init = torch.load(Path(f"{one}.ckpt"), weights_only=True)["extra"]["init"]
    trained = fmt.load(one).tensors["planner->critic:plan"]["w_res.weight"]
    assert float((trained - init["outer.planner->critic:plan.w_res.weight"]).abs().max()) > 1e-4


@pytest.mark.slow
def test_two_ranks_resume_exactly(tmp_path):
    """Stopped after step 2 (in the teacher-forced stage) and resumed on 2 ranks: the same links as one run."""
    whole = _train(tmp_path, "whole", 2)
    part = _train(tmp_path, "part", 2, "--stop-after", "2")
    assert torch.load(Path(f"{part}.ckpt"), weights_only=True)["step"] == 2
    _train(tmp_path, "part", 2, "--resume")
    assert torch.load(Path(f"{part}.ckpt"), weights_only=True)["step"] == 5
    assert _max_diff(whole, part) == 0.0
