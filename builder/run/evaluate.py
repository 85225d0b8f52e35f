"""`mlcbuild eval`: exact-match accuracy of one agent, a text MAS and the latent MAS on held-out rows, run on the
builds' CPU libraries through builder.latent (the code path `mlcbuild run` uses), greedy.

Numeric answers are scored by the last number in the output, other answers by whole words, case- and
accent-insensitive (train_links.data.exact_match). Besides accuracy, per mode: accuracy per task family (rows
that carry a `kind`), the share of well-formed answers (a number where the answer is numeric), the share of
the most frequent answer (a constant answer would score by luck), tokens and seconds.
"""

import time
from collections import Counter

MODES = ("single", "text", "latent", "shuffled")
LABELS = {"single": "single agent", "text": "text MAS", "latent": "latent MAS", "shuffled": "shuffled (ctl)"}
# "shuffled" is a control, not a system: the latent MAS whose senders work on another row's question (the row half
# the data away), so the final agent gets hand-offs of the right form with the wrong content. Latent above it means
# the hand-off's content is used, not only its presence (a learned prompt).


def evaluate(mas, rows: list[dict], modes=MODES, max_new_tokens: int = 40, text_tokens: int = 64,
             progress=None) -> dict:
    """{"modes": {mode: summary}, "rows": [{question, answer, kind, outputs: {mode: text}}]}; rows run one after
    another with every mode on each, so the modes see the same machine load."""
    from train_links.data import exact_match, well_formed

    stats = {m: {"correct": 0, "well_formed": 0, "prompt_tokens": 0, "reused_tokens": 0, "generated_tokens": 0,
                 "latent_steps": 0, "seconds": 0.0, "answers": Counter(), "kinds": Counter(), "kind_ok": Counter()}
             for m in modes}
    per_row = []
    for i, row in enumerate(rows):
        outputs = {}
        for mode in modes:
            t0 = time.perf_counter()
            other = rows[(i + len(rows) // 2) % len(rows)]["question"] if mode == "shuffled" else None
            res = mas.run(row["question"], "latent" if other else mode, max_new_tokens=max_new_tokens,
                          text_tokens=text_tokens, senders_question=other)
            s, met, out = stats[mode], res["metrics"], res["answer"].strip()
            s["seconds"] += time.perf_counter() - t0
            ok = exact_match(out, row["answer"])
            s["correct"] += ok
            s["well_formed"] += well_formed(out, row["answer"])
            s["answers"][out] += 1
            for k in ("prompt_tokens", "reused_tokens", "generated_tokens", "latent_steps"):
                s[k] += met[k]
            kind = row.get("kind", "all")
            s["kinds"][kind] += 1
            s["kind_ok"][kind] += ok
            outputs[mode] = {"output": out, "correct": ok}
            if progress:
                progress.update(1)
        per_row.append({"question": row["question"], "answer": row["answer"], "kind": row.get("kind"),
                        "outputs": outputs})
    n = max(1, len(rows))
    summary = {}
    for mode, s in stats.items():
        summary[mode] = {
            "rows": len(rows), "correct": s["correct"], "accuracy": s["correct"] / n,
            "well_formed": s["well_formed"] / n,
            "top_answer": s["answers"].most_common(1)[0][0] if rows else None,
            "top_answer_share": s["answers"].most_common(1)[0][1] / n if rows else 0.0,
            "by_kind": {k: {"rows": c, "correct": s["kind_ok"][k], "accuracy": s["kind_ok"][k] / c}
                        for k, c in sorted(s["kinds"].items())},
            **{k: s[k] for k in ("prompt_tokens", "reused_tokens", "generated_tokens", "latent_steps")},
            "seconds": round(s["seconds"], 2),
        }
    return {"modes": summary, "rows": per_row}


def render(result: dict) -> str:
    """The accuracy table: one column per mode, a row per task family, then tokens and time."""
    summ = result["modes"]
    modes = [m for m in MODES if m in summ]
    head = f"{'':<16}" + "".join(f"{LABELS.get(m, m):>15}" for m in modes)
    lines = [head]

    def pct(x):
        return f"{x:>14.1%} "

    lines.append(f"{'exact match':<16}" + "".join(pct(summ[m]["accuracy"]) for m in modes))
    kinds = sorted({k for m in modes for k in summ[m]["by_kind"]})
    if len(kinds) > 1:
        for k in kinds:
            cells = "".join(pct(summ[m]["by_kind"][k]["accuracy"]) for m in modes)
            lines.append(f"  {k:<14}" + cells + f"  ({summ[modes[0]]['by_kind'][k]['rows']} rows)")
    lines.append(f"{'well formed':<16}" + "".join(pct(summ[m]["well_formed"]) for m in modes))
    lines.append(f"{'top answer':<16}" + "".join(pct(summ[m]["top_answer_share"]) for m in modes))
    for key, label in (("prompt_tokens", "prompt tokens"), ("generated_tokens", "generated tok"),
                       ("latent_steps", "latent steps")):
        lines.append(f"{label:<16}" + "".join(f"{summ[m][key]:>15}" for m in modes))
    lines.append(f"{'seconds':<16}" + "".join(f"{summ[m]['seconds']:>15.1f}" for m in modes))
    lines.append(f"({summ[modes[0]]['rows']} rows, greedy, CPU libraries)")
    return "\n".join(lines)
