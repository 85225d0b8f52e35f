"""`mlcbuild eval`: exact-match accuracy of one agent, a text MAS and the latent MAS on held-out rows, run on the
builds' CPU libraries through builder.latent (the code path `mlcbuild run` uses), greedy.

Only the final answer scores (train_links.data.exact_match): the text after the last "answer is" / "Answer:", else
the last sentence; numeric answers by its last number, word answers by whole words (case- and accent-insensitive)
with no rival answer of the same family beside them. Besides accuracy and its 95 % interval, per mode: accuracy
per task family (rows that carry a `kind`), the share of well-formed answers (a number where the answer is
numeric), the share of the most frequent answer (a constant answer would score by luck), tokens and seconds; and
the latent MAS against every other mode on the same rows (paired counts, exact McNemar p).
"""

import time
from collections import Counter

MODES = ("single", "prompt-tuned", "text", "latent", "shuffled", "shuffled-cross", "zero")
LABELS = {"single": "single agent", "prompt-tuned": "prompt-tuned", "text": "text MAS", "latent": "latent MAS",
          "shuffled": "shuffled (ctl)", "shuffled-cross": "cross-fam (ctl)", "zero": "zeroed (ctl)"}
# The controls are not systems; each asks what the latent MAS's gain is made of:
# - shuffled: the senders work on the next question of the SAME task family, so the final agent gets hand-offs of
#   the right form and task type with the wrong content. Latent above it means per-question content is used.
# - shuffled-cross: the senders work on a question of another family (the row half the data away): it shows that
#   the solver follows the hand-off's task type, not that it uses per-question content.
# - zero: every hand-off is replaced by zeros: the final agent's prompt with empty latent rows.
# prompt-tuned is the baseline any links must beat: the final agent alone with trained slot vectors
# (train_links.prompt_tuning), trained on the same rows, steps and selection as the links.


def partners(rows: list[dict], within_family: bool = True) -> list[int]:
    """For each row, the row whose question the control's senders work on: the next row of the same `kind`
    (cyclic; rows without kind form one family), or for the cross-family control the row half the data away.
    A family of one row has no other question of its kind, so it takes the cross-family partner."""
    n = len(rows)
    cross = [(i + n // 2) % n for i in range(n)]
    if not within_family:
        return cross
    fam: dict = {}
    for i, r in enumerate(rows):
        fam.setdefault(r.get("kind", "all"), []).append(i)
    out = list(cross)
    for idx in fam.values():
        if len(idx) > 1:
            for j, i in enumerate(idx):
                out[i] = idx[(j + 1) % len(idx)]
    return out


def evaluate(mas, rows: list[dict], modes=MODES, max_new_tokens: int = 40, text_tokens: int = 64,
             progress=None, slot_prompt=None, batch: int = 1) -> dict:
    """{"modes": {mode: summary}, "rows": [{question, answer, kind, outputs: {mode: text}}], "paired": ...};
    rows run one after another (or `batch` rows together, builder/run/latent_batch.py: the same outputs) with
    every mode on each, so the modes see the same machine load. "prompt-tuned" needs `slot_prompt`
    (train_links.prompt_tuning.SlotPrompt)."""
    from train_links.data import exact_match, rivals_by_kind, well_formed
    from train_links.stats import wilson

    stats = {m: {"correct": 0, "well_formed": 0, "prompt_tokens": 0, "reused_tokens": 0, "generated_tokens": 0,
                 "latent_steps": 0, "seconds": 0.0, "answers": Counter(), "kinds": Counter(), "kind_ok": Counter()}
             for m in modes}
    rivals = rivals_by_kind(rows)
    other = {"shuffled": partners(rows, True), "shuffled-cross": partners(rows, False)}
    per_row = [{"question": row["question"], "answer": row["answer"], "kind": row.get("kind"), "outputs": {}}
               for row in rows]
    runner = None
    if batch > 1:
        from .latent_batch import BatchRunner

        runner = BatchRunner(mas, batch)
    for start in range(0, len(rows), max(1, batch)):
        chunk = list(range(start, min(start + max(1, batch), len(rows))))
        for mode in modes:
            t0 = time.perf_counter()
            run_mode = "single" if mode == "prompt-tuned" else "latent" if mode in ("zero", *other) else mode
            senders = [rows[other[mode][i]]["question"] if mode in other else None for i in chunk]
            kw = dict(max_new_tokens=max_new_tokens, text_tokens=text_tokens, zero_handoffs=mode == "zero",
                      slot_prompt=slot_prompt if mode == "prompt-tuned" else None)
            if runner:
                results = runner.run([rows[i]["question"] for i in chunk], run_mode, senders=senders, **kw)
            else:
                results = [mas.run(rows[chunk[0]]["question"], run_mode, senders_question=senders[0], **kw)]
            elapsed = time.perf_counter() - t0
            for i, res in zip(chunk, results, strict=True):
                row = rows[i]
                s, met, out = stats[mode], res["metrics"], res["answer"].strip()
                s["seconds"] += elapsed / len(chunk)
                kind = row.get("kind", "all")
                ok = exact_match(out, row["answer"], rivals.get(kind, ()))
                s["correct"] += ok
                s["well_formed"] += well_formed(out, row["answer"])
                s["answers"][out] += 1
                for k in ("prompt_tokens", "reused_tokens", "generated_tokens", "latent_steps"):
                    s[k] += met[k]
                s["kinds"][kind] += 1
                s["kind_ok"][kind] += ok
                per_row[i]["outputs"][mode] = {"output": out, "correct": ok}
                if progress:
                    progress.update(1)
    n = max(1, len(rows))
    summary = {}
    for mode, s in stats.items():
        lo, hi = wilson(s["correct"], len(rows))
        summary[mode] = {
            "rows": len(rows), "correct": s["correct"], "accuracy": s["correct"] / n, "ci95": [lo, hi],
            "well_formed": s["well_formed"] / n,
            "top_answer": s["answers"].most_common(1)[0][0] if rows else None,
            "top_answer_share": s["answers"].most_common(1)[0][1] / n if rows else 0.0,
            "by_kind": {k: {"rows": c, "correct": s["kind_ok"][k], "accuracy": s["kind_ok"][k] / c}
                        for k, c in sorted(s["kinds"].items())},
            **{k: s[k] for k in ("prompt_tokens", "reused_tokens", "generated_tokens", "latent_steps")},
            "seconds": round(s["seconds"], 2),
        }
    return {"modes": summary, "rows": per_row, "paired": paired_against(per_row, list(modes))}


def paired_against(per_row: list[dict], modes: list[str]) -> dict:
    """{other mode: {"only_a", "only_b", "p"}} for the latent MAS (else the first mode) against every other mode on
    the same rows: rows right only for it, only for the other, and the exact McNemar p."""
    from train_links.stats import paired

    if len(modes) < 2:
        return {}
    ref = "latent" if "latent" in modes else modes[0]
    mine = [r["outputs"][ref]["correct"] for r in per_row]
    return {"reference": ref, **{m: paired(mine, [r["outputs"][m]["correct"] for r in per_row])
                                 for m in modes if m != ref}}


def render(result: dict) -> str:
    """The accuracy table: one column per mode, a row per task family, then tokens and time."""
    summ = result["modes"]
    modes = [m for m in MODES if m in summ]
    head = f"{'':<16}" + "".join(f"{LABELS.get(m, m):>15}" for m in modes)
    lines = [head]

    def pct(x):
        return f"{x:>14.1%} "

    lines.append(f"{'exact match':<16}" + "".join(pct(summ[m]["accuracy"]) for m in modes))
    lines.append(f"{'  95% interval':<16}" + "".join(f"{summ[m]['ci95'][0]:>8.1%}-{summ[m]['ci95'][1]:.1%}"[-15:]
                                                       .rjust(15) for m in modes))
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
    pair = result.get("paired") or {}
    ref = pair.get("reference")
    for m in modes:
        if m != ref and m in pair:
            c = pair[m]
            lines.append(f"{LABELS.get(ref, ref)} vs {LABELS.get(m, m)}: right only for the first on {c['only_a']} "
                         f"rows, only for the second on {c['only_b']}, exact McNemar p = {c['p']:.2g}")
    return "\n".join(lines)
