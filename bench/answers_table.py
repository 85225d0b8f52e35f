"""Several `mlcbuild eval --json` runs on the same rows as one table: accuracy with its 95 % interval, per family,
and every column against a reference column on the same rows (paired counts, exact McNemar p).

One eval run takes one links file; a comparison of two links files, or of links with a baseline measured once
(the single agent does not depend on the links), joins runs here instead of recomputing the shared modes.

    python3 bench/answers_table.py shipped=shipped.json varied=varied.json --ref varied:latent

Columns are NAME:MODE. Rows must be the same questions in the same order in every file (checked)."""

import argparse
import json
import sys
from pathlib import Path

import common  # noqa: F401 - puts the checkout first on sys.path

from train_links.stats import paired, wilson


def load_columns(specs: list[str]) -> tuple[list[dict], dict[str, list[bool]], dict[str, dict]]:
    """(rows, {column: per-row correct}, {column: the mode's summary})."""
    rows, cols, summ = None, {}, {}
    for spec in specs:
        name, _, path = spec.partition("=")
        if not path:
            sys.exit(f"answers_table: {spec!r} is not NAME=FILE.json (write e.g. shipped=eval.json)")
        try:
            res = json.loads(Path(path).read_text())
            res["rows"], res["modes"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            sys.exit(f"answers_table: {path}: not the output of `mlcbuild eval --json` ({type(e).__name__})")
        questions = [r["question"] for r in res["rows"]]
        if rows is None:
            rows = [{"question": r["question"], "kind": r.get("kind") or "all"} for r in res["rows"]]
        elif questions != [r["question"] for r in rows]:
            sys.exit(f"answers_table: {path} holds other rows than the first file (same --data and --limit?)")
        for mode, s in res["modes"].items():
            cols[f"{name}:{mode}"] = [r["outputs"][mode]["correct"] for r in res["rows"]]
            summ[f"{name}:{mode}"] = s
    return rows or [], cols, summ


def table(rows, cols, ref: str | None) -> tuple[str, dict]:
    n = len(rows)
    kinds = sorted({r["kind"] for r in rows})
    out = {"rows": n, "columns": {}, "reference": ref}
    width = max(len(c) for c in cols) + 2
    lines = [f"{'':<{width}}{'exact match':>12}{'95% interval':>16}" + "".join(f"{k[:10]:>11}" for k in kinds)
             + (f"   vs {ref}" if ref else "")]
    for c, ok in cols.items():
        k = sum(ok)
        lo, hi = wilson(k, n)
        fam = {kd: sum(o for o, r in zip(ok, rows, strict=True) if r["kind"] == kd) for kd in kinds}
        entry = {"correct": k, "accuracy": k / max(1, n), "ci95": [lo, hi], "by_kind": fam}
        cmp = ""
        if ref and c != ref:
            entry["paired"] = p = paired(cols[ref], ok)
            cmp = f"   {p['only_a']:>3} / {p['only_b']:<3} p = {p['p']:.2g}"
        out["columns"][c] = entry
        lines.append(f"{c:<{width}}{k / max(1, n):>11.1%} {lo:>7.1%}-{hi:<7.1%}"
                     + "".join(f"{fam[kd]:>11}" for kd in kinds) + cmp)
    sizes = {kd: sum(r["kind"] == kd for r in rows) for kd in kinds}
    lines.append(f"{'(rows)':<{width}}{n:>11} {'':>15}" + "".join(f"{sizes[kd]:>11}" for kd in kinds))
    if ref:
        lines.append(f"paired: rows right only for {ref} / only for the column, exact McNemar p")
    return "\n".join(lines), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("evals", nargs="+", help="NAME=FILE.json, the output of `mlcbuild eval --json`")
    ap.add_argument("--ref", default=None, help="The column every other one is compared with (default: the first "
                    "column named *:latent)")
    args = ap.parse_args(argv)
    rows, cols, _ = load_columns(args.evals)
    ref = args.ref or next((c for c in cols if c.endswith(":latent")), None)
    if ref and ref not in cols:
        sys.exit(f"answers_table: --ref {ref} is not a column; columns: {', '.join(cols)}")
    text, out = table(rows, cols, ref)
    print(text)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
