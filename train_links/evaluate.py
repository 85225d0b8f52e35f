"""Held-out comparison in PyTorch (train-links --eval): exact match for a single agent, a text MAS, and the latent
MAS with closed-form-init (untrained) and with trained links, plus the latent answer cross-entropy. Batched, greedy.
`mlcbuild eval` measures the same on the compiled CPU libraries."""

import torch

from .batched import final_prompts, generate_batch, rollout_losses, run_latent_batch, single_prompts
from .data import exact_match, rivals_by_kind, well_formed

BATCH = 16


@torch.no_grad()
def _text_prompts(agents, pattern, questions, rounds, text_tokens):
    return final_prompts(agents, pattern, questions, rounds, hand_off=lambda e, text: text,
                         join=lambda a, b: a + "\n" + b,
                         produce=lambda name, prompts: generate_batch(agents[name], prompts, text_tokens))


@torch.no_grad()
def latent_accuracy(agents, pattern, links, rows, rounds, m, max_new: int = 24) -> float:
    """Exact match of the latent MAS on `rows` (batched, greedy)."""
    hits, rivals = 0, rivals_by_kind(rows)
    for at in range(0, len(rows), BATCH):
        chunk = rows[at:at + BATCH]
        prompts = run_latent_batch(agents, links, pattern, [r["question"] for r in chunk], rounds, m)
        answers = generate_batch(agents[pattern.final], prompts, max_new)
        hits += count_hits(answers, chunk, rivals)
    return hits / max(1, len(rows))


def count_hits(answers: list[str], rows: list[dict], rivals: dict) -> int:
    return sum(exact_match(a, r["answer"], rivals.get(r.get("kind", "all"), ())) for a, r in zip(answers, rows,
                                                                                                    strict=True))


@torch.no_grad()
def evaluate(agents, pattern, rows, rounds, m, untrained, trained, max_new: int = 24, text_tokens: int = 64,
             progress=None) -> dict[str, dict]:
    """{setting: {"accuracy", "well_formed", "answer_ce" (latent settings), "rows"}}."""
    final, rivals = agents[pattern.final], rivals_by_kind(rows)
    settings = {
        "single agent": lambda qs: single_prompts(agents, pattern, qs),
        "text MAS": lambda qs: _text_prompts(agents, pattern, qs, rounds, text_tokens),
        "latent MAS, closed-form init": lambda qs: run_latent_batch(agents, untrained, pattern, qs, rounds, m),
        "latent MAS, trained links": lambda qs: run_latent_batch(agents, trained, pattern, qs, rounds, m),
    }
    out = {}
    for name, build in settings.items():
        hits = formed = 0
        ce = 0.0
        for at in range(0, len(rows), BATCH):
            chunk = rows[at:at + BATCH]
            answers = generate_batch(final, build([r["question"] for r in chunk]), max_new)
            hits += count_hits(answers, chunk, rivals)
            formed += sum(well_formed(a, r["answer"]) for a, r in zip(answers, chunk, strict=True))
            if name.startswith("latent"):
                links = untrained if "init" in name else trained
                ce += float(rollout_losses(agents, links, pattern, chunk, rounds, m).sum())
            if progress:
                progress.update(len(chunk))
        n = max(1, len(rows))
        out[name] = {"accuracy": hits / n, "well_formed": formed / n, "rows": len(rows)}
        if name.startswith("latent"):
            out[name]["answer_ce"] = ce / n
    return out


def render(results: dict[str, dict]) -> str:
    lines = [f"{'setting':<30} {'exact match':>12} {'well formed':>12} {'answer CE':>10}"]
    for name, r in results.items():
        ce = f"{r['answer_ce']:>10.4f}" if "answer_ce" in r else f"{'':>10}"
        lines.append(f"{name:<30} {r['accuracy']:>11.1%} {r['well_formed']:>11.1%} {ce}")
    return "\n".join(lines)
