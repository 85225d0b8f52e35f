"""The multi-agent system: the set of links for a pattern, and the unrolled latent / text / single-agent runs."""

import torch
from torch import nn

from .agents import Agent
from .links import InnerLink, OuterLink
from .patterns import Pattern
from .rollout import generate, latent_rollout


class LinkSet(nn.Module):
    """One inner link per agent and one outer link per pattern edge (keyed "src->dst:slot")."""

    def __init__(self, agents: dict[str, Agent], pattern: Pattern, seed: int = 0, inner_width: int | None = None,
                 outer_width: int | None = None):
        super().__init__()
        torch.manual_seed(seed)  # link init is part of the run's reproducibility
        self.inner = nn.ModuleDict({n: InnerLink(a.d, inner_width, target_norm=a.emb_stats()["mean"])
                                    for n, a in agents.items()})
        self.outer = nn.ModuleDict({
            e.key: OuterLink(agents[e.src].d, agents[e.dst].d, outer_width,
                             target_norm=agents[e.dst].emb_stats()["mean"], seed=seed + i)
            for i, e in enumerate(pattern.edges)})

    def named_links(self):
        yield from (("inner", k, v) for k, v in self.inner.items())
        yield from (("outer", k, v) for k, v in self.outer.items())


def _add(slots: dict, slot: str, value):
    """Several edges may feed one slot: their blocks are concatenated in edge order."""
    if slot not in slots:
        slots[slot] = value
    elif isinstance(value, str):
        slots[slot] = slots[slot] + "\n" + value
    else:
        slots[slot] = torch.cat([slots[slot], value], dim=0)


def run_latent(agents: dict[str, Agent], links: LinkSet, pattern: Pattern, question: str, rounds: int,
               m: int, trace: list | None = None) -> torch.Tensor:
    """Unroll the pattern for `rounds` rounds in latent space; returns the final agent's final-round prompt
    embeddings (latent blocks spliced in), ready for teacher forcing or decoding. `trace` collects every
    hand-off {edge, round, block} (the parity tests compare them with the compiled runners)."""
    prev: dict[str, torch.Tensor] = {}
    for r in range(rounds):
        cur: dict[str, torch.Tensor] = {}
        for name in pattern.order():
            slots: dict = {}
            for e in pattern.incoming(name):
                src = prev.get(e.src) if e.next_round else cur.get(e.src)
                if src is not None:
                    block = links.outer[e.key](src)
                    if trace is not None:
                        trace.append({"edge": e.key, "round": r, "block": block.detach()})
                    _add(slots, e.slot, block)
            emb = agents[name].prompt_embeds({"question": question}, slots)
            if r == rounds - 1 and name == pattern.final:
                return emb
            cur[name] = latent_rollout(agents[name], emb, links.inner[name], m)
        prev = cur
    raise AssertionError("the final agent is always in the last stage")


@torch.no_grad()
def run_text(agents: dict[str, Agent], pattern: Pattern, question: str, rounds: int, max_new: int) -> torch.Tensor:
    """The text-MAS baseline: the same graph, but each agent decodes up to `max_new` tokens of text that the next
    agent reads (re-tokenized with its own tokenizer) in the same slot."""
    prev: dict[str, str] = {}
    for r in range(rounds):
        cur: dict[str, str] = {}
        for name in pattern.order():
            slots: dict = {}
            for e in pattern.incoming(name):
                src = prev.get(e.src) if e.next_round else cur.get(e.src)
                if src is not None:
                    _add(slots, e.slot, src)
            emb = agents[name].prompt_embeds({"question": question}, slots)
            if r == rounds - 1 and name == pattern.final:
                return emb
            cur[name] = generate(agents[name], emb, max_new)
        prev = cur
    raise AssertionError("the final agent is always in the last stage")


def run_single(agents: dict[str, Agent], pattern: Pattern, question: str) -> torch.Tensor:
    """The single-agent baseline: the final agent alone, slots left empty."""
    return agents[pattern.final].prompt_embeds({"question": question}, {})
