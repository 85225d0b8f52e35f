"""Held-out comparison: answer cross-entropy and exact-match accuracy for a single agent, a text MAS, and the
latent MAS with untrained and with trained links (same agents, same pattern, same rounds)."""

import torch

from .data import exact_match
from .rollout import answer_loss, generate
from .system import run_latent, run_single, run_text


@torch.no_grad()
def evaluate(agents, pattern, rows, rounds, m, untrained, trained, max_new: int = 16, text_tokens: int | None = None,
             progress=None) -> dict[str, dict]:
    """Returns {setting: {"answer_ce": float, "accuracy": float, "rows": n}}."""
    final = agents[pattern.final]
    settings = {
        "single agent": lambda q: run_single(agents, pattern, q),
        "text MAS": lambda q: run_text(agents, pattern, q, rounds, text_tokens or m),
        "latent MAS, untrained links": lambda q: run_latent(agents, untrained, pattern, q, rounds, m),
        "latent MAS, trained links": lambda q: run_latent(agents, trained, pattern, q, rounds, m),
    }
    out = {}
    for name, build in settings.items():
        ce = hits = 0.0
        for row in rows:
            emb = build(row["question"])
            ce += float(answer_loss(final, emb, final.answer_ids(row["answer"])))
            hits += exact_match(generate(final, emb, max_new), row["answer"])
            if progress:
                progress.update(1)
        n = max(1, len(rows))
        out[name] = {"answer_ce": ce / n, "accuracy": hits / n, "rows": len(rows)}
    return out


def render(results: dict[str, dict]) -> str:
    lines = [f"{'setting':<30} {'answer CE':>10} {'exact match':>12}"]
    for name, r in results.items():
        lines.append(f"{name:<30} {r['answer_ce']:>10.4f} {r['accuracy']:>11.1%}")
    return "\n".join(lines)
