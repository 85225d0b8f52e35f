"""RecursiveLinks on the real SmolLM2-135M-Instruct (GGUF, d=576): rollout, gradients, save/load."""

import math

import pytest
import torch

from builder.fetch import model_source
from train_links import format as fmt
from train_links.agents import make_agents
from train_links.data import builtin
from train_links.patterns import sequential
from train_links.system import LinkSet, run_latent
from train_links.train import OuterTrainer, inner_cosine, inner_pairs, train_inner

torch.set_num_threads(1)


@pytest.mark.slow
def test_smollm2_links_train_and_round_trip(tmp_path):
    p = sequential()
    agents = {a.name: a for a in make_agents(["smollm2-135m"] * 3, p, resolve=model_source)}  # one model, three roles
    assert agents["planner"].d == 576 and agents["solver"].turn_end == "<|im_end|>"
    train, held = builtin()
    links = LinkSet(agents, p, seed=0)
    a = agents["solver"]
    pairs, held_pairs = inner_pairs(a, train[:8]), inner_pairs(a, held[:4])
    before = inner_cosine(links.inner["solver"], held_pairs)
    train_inner(links.inner["solver"], pairs, steps=40, lr=1e-3)
    after = inner_cosine(links.inner["solver"], held_pairs)
    print(f"SmolLM2 solver held-out next-token cosine {before:.3f} -> {after:.3f}")
    assert after > before + 0.1
    losses = OuterTrainer(agents, links, p, train, teacher_steps=1, rollout_steps=1, rounds=2, m=4, batch=2).run()
    assert all(math.isfinite(x) for x in losses)
    for key, link in links.outer.items():
        assert link.w_res.weight.grad is not None and link.w_res.weight.grad.abs().sum() > 0, key
    path = fmt.save(tmp_path / "rl.json", agents, p, links, 4, 2, "f16")
    lf = fmt.load(path, {n: x.d for n, x in agents.items()})
    fresh = LinkSet(agents, lf.pattern, seed=1)
    lf.load_into(fresh)
    with torch.no_grad():
        x = run_latent(agents, links, p, held[0]["question"], 2, 4)
        y = run_latent(agents, fresh, lf.pattern, held[0]["question"], 2, 4)
    assert torch.nn.functional.cosine_similarity(x, y, dim=-1).min() > 0.99
