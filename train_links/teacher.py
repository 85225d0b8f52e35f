"""Teacher-forced outer-link training: the recipe of the RecursiveMAS training code.

No latent rollout inside the loop. Each agent reads its chat prompt (latent blocks spliced into its slots) followed
by the ground-truth text of its own turn (plan, refined plan, answer); its last-layer hidden states over that text
are the block it hands on. A hand-off is outer(h over the sender's text), as at inference, where it is
outer(h over the sender's latent thoughts): the inner link trains the thoughts to stand in for that text. The
loss is the final agent's answer cross-entropy in the final round; gradients flow back through every frozen agent
of the unrolled rounds into every outer link.

One step is a batched forward per agent per round (rows right-padded: attention is causal, so padding after a
row never changes its hidden states) and one backward, instead of m sequential decode steps per agent per row.
"""

import torch
import torch.nn.functional as F

from .agents import Agent
from .patterns import Pattern

MAX_BLOCK = 80  # a sender's text block is cut to this many positions (as in the RecursiveMAS code)


def _pad(seqs: list[torch.Tensor]) -> torch.Tensor:
    top = max(s.shape[0] for s in seqs)
    out = seqs[0].new_zeros(len(seqs), top, seqs[0].shape[-1])
    for i, s in enumerate(seqs):
        out[i, :s.shape[0]] = s
    return out


def _turn_ids(agent: Agent, row: dict) -> torch.Tensor:
    """The token ids of a sender's own turn (the field its role writes), cut to MAX_BLOCK."""
    return agent.answer_ids(row.get(agent.role.target) or row["answer"])[:MAX_BLOCK]


def _slots(pattern: Pattern, links, name: str, prev: dict, cur: dict, i: int) -> dict:
    slots: dict = {}
    for e in pattern.incoming(name):
        src = prev.get(e.src) if e.next_round else cur.get(e.src)
        if src is None:
            continue
        block = links.outer[e.key](src[i])
        slots[e.slot] = block if e.slot not in slots else torch.cat([slots[e.slot], block], 0)
    return slots


def answer_logits(agent: Agent, prompts: list[torch.Tensor], rows: list[dict]) -> list[torch.Tensor]:
    """Per row, the f32 logits [n, V] at the positions that predict its answer's n tokens (or its "target" text's;
    then the end-of-turn) after its prompt embeddings: one right-padded forward; only those positions go through
    the LM head."""
    ids = [agent.answer_ids(row.get("target") or row["answer"]) for row in rows]  # target: data.with_targets
    seqs = [torch.cat([p, agent.embed(i).to(p.dtype)]) for p, i in zip(prompts, ids, strict=True)]
    x = _pad(seqs).to(agent.dtype)
    with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):
        h = agent.body(inputs_embeds=x).last_hidden_state
    head = agent.model.get_output_embeddings()
    return [head(h[j, p.shape[0] - 1:p.shape[0] - 1 + len(i)]).float()
            for j, (p, i) in enumerate(zip(prompts, ids, strict=True))]


def answer_losses(agent: Agent, prompts: list[torch.Tensor], rows: list[dict]) -> torch.Tensor:
    """[B] per-row mean cross-entropy of each row's answer after its prompt embeddings (answer_logits)."""
    return losses_of(agent, answer_logits(agent, prompts, rows), rows)


def losses_of(agent: Agent, logits: list[torch.Tensor], rows: list[dict]) -> torch.Tensor:
    return torch.stack([F.cross_entropy(lg, agent.answer_ids(row.get("target") or row["answer"]))
                        for lg, row in zip(logits, rows, strict=True)])


@torch.no_grad()
def single_logits(agent: Agent, rows: list[dict]) -> list[torch.Tensor]:
    """answer_logits of the agent alone, its slots empty: the one-agent baseline's distribution."""
    return answer_logits(agent, [agent.prompt_embeds({"question": r["question"]}, {}) for r in rows], rows)


def teacher_forced_losses(agents: dict[str, Agent], links, pattern: Pattern, rows: list[dict],
                          rounds: int, sender_rows: list[dict] | None = None, logits: bool = False):
    """[B] answer cross-entropy of the final agent for each row of one batch, teacher-forced as above (with
    `logits`, its answer_logits instead). `sender_rows`: every turn before the final one works on these rows'
    questions and texts instead (row i's hand-offs come from sender_rows[i]), as `mlcbuild eval`'s shuffled
    control does at inference."""
    prev: dict[str, list[torch.Tensor]] = {}
    senders = sender_rows or rows
    for r in range(rounds):
        cur: dict[str, list[torch.Tensor]] = {}
        for name in pattern.order():
            agent = agents[name]
            last = r == rounds - 1 and name == pattern.final
            prompts = [agent.prompt_embeds({"question": row["question"]}, _slots(pattern, links, name, prev, cur, i))
                       for i, row in enumerate(rows if last else senders)]
            if last:
                return (answer_logits if logits else answer_losses)(agent, prompts, rows)
            turns = [_turn_ids(agent, row) for row in senders]
            x = _pad([torch.cat([p, agent.embed(t).to(p.dtype)]) for p, t in zip(prompts, turns, strict=True)])
            x = x.to(agent.dtype)
            with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):
                h = agent.body(inputs_embeds=x).last_hidden_state
            spans = [(len(p), len(p) + len(t)) for p, t in zip(prompts, turns, strict=True)]
            cur[name] = [h[i, a:b].float() for i, (a, b) in enumerate(spans)]
        prev = cur
    raise AssertionError("the final agent is always in the last stage")
