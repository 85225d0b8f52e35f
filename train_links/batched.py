"""The latent loop for many questions at once in PyTorch: the rollout trainer's final stage and fast held-out
checks. Same computation as system.run_latent / rollout.latent_rollout, row for row: prompts are left-padded
with an attention mask and per-row positions, so each row sees exactly its own prompt."""

import torch

from .agents import Agent
from .patterns import Pattern


def _left_pad(seqs: list[torch.Tensor]):
    """(x [B, T, d], mask [B, T], positions [B, T]) with each row's tokens at the right end."""
    top = max(s.shape[0] for s in seqs)
    x = seqs[0].new_zeros(len(seqs), top, seqs[0].shape[-1])
    mask = torch.zeros(len(seqs), top, dtype=torch.long)
    for i, s in enumerate(seqs):
        x[i, top - s.shape[0]:] = s
        mask[i, top - s.shape[0]:] = 1
    pos = (mask.cumsum(1) - 1).clamp_min(0)
    return x, mask, pos


def _step(agent: Agent, x, mask, pos, cache=None):
    out = agent.body(inputs_embeds=x.to(agent.dtype), attention_mask=mask, position_ids=pos, past_key_values=cache,
                     use_cache=True)
    return out.last_hidden_state, out.past_key_values


def rollout_batch(agent: Agent, prompts: list[torch.Tensor], inner, m: int) -> torch.Tensor:
    """Prefill every prompt, then m latent steps each (inner(h) fed back); returns [B, m, d] float32."""
    x, mask, pos = _left_pad(prompts)
    h, cache = _step(agent, x, mask, pos)
    h, nxt = h[:, -1:], pos[:, -1:] + 1
    block = []
    for _ in range(m):
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
        h, cache = _step(agent, inner(h.float()), mask, nxt, cache)
        nxt = nxt + 1
        block.append(h[:, -1])
    return torch.stack(block, 1).float()


@torch.no_grad()
def generate_batch(agent: Agent, prompts: list[torch.Tensor], max_new: int = 16) -> list[str]:
    """Greedy answers from prompt embeddings, one per row; each row stops at its end-of-turn / eos token."""
    stop = {agent.tokenizer.eos_token_id, *agent.encode(agent.turn_end).tolist()[:1]} - {None}
    head = agent.model.get_output_embeddings()
    x, mask, pos = _left_pad(prompts)
    h, cache = _step(agent, x, mask, pos)
    nxt = pos[:, -1:] + 1
    ids = [[] for _ in prompts]
    done = [False] * len(prompts)
    for _ in range(max_new):
        tok = head(h[:, -1]).argmax(-1)
        for i, t in enumerate(tok.tolist()):
            if not done[i]:
                done[i] = t in stop
                if not done[i]:
                    ids[i].append(t)
        if all(done):
            break
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
        h, cache = _step(agent, agent.embed(tok[:, None]), mask, nxt, cache)
        nxt = nxt + 1
    return [agent.tokenizer.decode(x, skip_special_tokens=True) for x in ids]


def final_prompts(agents: dict[str, Agent], pattern: Pattern, questions: list[str], rounds: int, hand_off, join,
                  produce) -> list[torch.Tensor]:
    """Walk `pattern` for `rounds` rounds over a batch of questions and return the final agent's final-round prompt
    embeddings, one per row. A sender's message for row i goes through hand_off(edge, message) into the receiver's
    slot (join merges two messages in one slot); produce(name, prompts) gives an agent's messages for the batch."""
    prev: dict[str, list] = {}
    for r in range(rounds):
        cur: dict[str, list] = {}
        for name in pattern.order():
            prompts = []
            for i, q in enumerate(questions):
                slots: dict = {}
                for e in pattern.incoming(name):
                    src = prev.get(e.src) if e.next_round else cur.get(e.src)
                    if src is not None:
                        msg = hand_off(e, src[i])
                        slots[e.slot] = msg if e.slot not in slots else join(slots[e.slot], msg)
                prompts.append(agents[name].prompt_embeds({"question": q}, slots))
            if r == rounds - 1 and name == pattern.final:
                return prompts
            cur[name] = produce(name, prompts)
        prev = cur
    raise AssertionError("the final agent is always in the last stage")


def run_latent_batch(agents: dict[str, Agent], links, pattern: Pattern, questions: list[str], rounds: int,
                     m: int) -> list[torch.Tensor]:
    """system.run_latent for several questions: the final agent's final-round prompt embeddings, one per row."""
    return final_prompts(agents, pattern, questions, rounds,
                         hand_off=lambda e, block: links.outer[e.key](block),
                         join=lambda a, b: torch.cat([a, b], 0),
                         produce=lambda name, prompts: rollout_batch(agents[name], prompts, links.inner[name], m))


def rollout_losses(agents: dict[str, Agent], links, pattern: Pattern, rows: list[dict], rounds: int,
                   m: int) -> torch.Tensor:
    """[B] answer cross-entropy per row through the exact inference computation (latent rollouts, r rounds)."""
    from .teacher import answer_losses

    prompts = run_latent_batch(agents, links, pattern, [r["question"] for r in rows], rounds, m)
    return answer_losses(agents[pattern.final], prompts, rows)


def single_prompts(agents: dict[str, Agent], pattern: Pattern, questions: list[str]) -> list[torch.Tensor]:
    final = agents[pattern.final]
    return [final.prompt_embeds({"question": q}, {}) for q in questions]
