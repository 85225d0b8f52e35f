"""The tiny 3-agent RecursiveMAS set shared by the latent-loop tests (Python, browser, playground)."""

import torch

AGENTS = ["tiny-qwen3", "tiny-llama", "tiny-qwen3"]  # planner, critic, solver (two families, one tokenizer)
QUESTION = "Tom has 3 boxes of 4 apples. How many apples does he have?"


def tiny_links(m: int, rounds: int):
    """PyTorch agents of the sequential pattern and links perturbed away from their near-identity init."""
    from train_links.agents import make_agents
    from train_links.patterns import sequential
    from train_links.system import LinkSet

    pattern = sequential()
    agents = {a.name: a for a in make_agents(AGENTS, pattern)}
    links = LinkSet(agents, pattern, seed=0)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in links.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return agents, links, pattern
