"""Running one agent on embeddings: latent rollout on the KV cache, teacher-forced answer loss, greedy decoding."""

import torch
import torch.nn.functional as F

from .agents import Agent


def latent_rollout(agent: Agent, embeds: torch.Tensor, inner: torch.nn.Module, m: int) -> torch.Tensor:
    """Prefill `embeds` [L, d], then m latent steps: feed inner(h_last) as the next input embedding on the KV cache
    and collect the last-layer hidden state (after the final norm). Returns the [m, d] block in float32."""
    out = agent.body(inputs_embeds=embeds[None].to(agent.dtype), use_cache=True)
    cache, h = out.past_key_values, out.last_hidden_state[:, -1:]
    block = []
    for _ in range(m):
        x = inner(h.float()).to(agent.dtype)  # links run in fp32 even when the agent runs in bf16
        out = agent.body(inputs_embeds=x, past_key_values=cache, use_cache=True)
        cache, h = out.past_key_values, out.last_hidden_state
        block.append(h[0, -1])
    return torch.stack(block).float()


def answer_loss(agent: Agent, prompt: torch.Tensor, answer_ids: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the answer tokens after the prompt (teacher forcing, one forward pass).
    Only the positions that predict answer tokens go through the LM head (vocab projections are costly)."""
    x = torch.cat([prompt.to(agent.dtype), agent.embed(answer_ids)], dim=0)[None]
    h = agent.body(inputs_embeds=x).last_hidden_state[0]
    n = answer_ids.shape[0]
    logits = agent.model.get_output_embeddings()(h[-n - 1:-1])
    return F.cross_entropy(logits.float(), answer_ids)


@torch.no_grad()
def generate(agent: Agent, prompt: torch.Tensor, max_new: int = 8) -> str:
    """Greedy decoding from prompt embeddings; stops at the end-of-turn / eos token."""
    stop = {agent.tokenizer.eos_token_id, *agent.encode(agent.turn_end).tolist()[:1]} - {None}
    head = agent.model.get_output_embeddings()
    out = agent.body(inputs_embeds=prompt[None].to(agent.dtype), use_cache=True)
    ids = []
    for _ in range(max_new):
        nxt = int(head(out.last_hidden_state[0, -1]).argmax())
        if nxt in stop:
            break
        ids.append(nxt)
        out = agent.body(inputs_embeds=agent.embed(torch.tensor([[nxt]])), past_key_values=out.past_key_values,
                         use_cache=True)
    return agent.tokenizer.decode(ids, skip_special_tokens=True)
