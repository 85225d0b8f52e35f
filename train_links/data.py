"""Training rows {question, plan?, refined_plan?, answer}: a built-in set of short arithmetic word problems
(generated here with a seeded generator, answers checkable) and user JSONL files."""

import hashlib
import json
import random
import re
from pathlib import Path

from builder.errors import MlcbuildError

FIELDS = ("question", "plan", "refined_plan", "answer")
MAX_FILE_BYTES = 512 << 20
_NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jin", "Kai", "Lena", "Mo", "Nia"]
_ITEMS = ["apple", "book", "coin", "marble", "pencil", "shell", "stamp", "sticker", "card", "cookie"]


def _problem(rng: random.Random) -> dict:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    kind = rng.randrange(4)
    if kind == 0:
        a, b = rng.randint(2, 30), rng.randint(2, 30)
        q = f"{name} has {a} {item}s and buys {b} more. How many {item}s does {name} have now?"
        plan, work, ans = f"Add the {item}s bought to the {item}s {name} had.", f"{a} + {b} = {a + b}", a + b
    elif kind == 1:
        a = rng.randint(5, 40)
        b = rng.randint(1, a - 1)
        q = f"{name} has {a} {item}s and gives away {b}. How many {item}s are left?"
        plan, work, ans = f"Subtract the {item}s given away from the {item}s {name} had.", f"{a} - {b} = {a - b}", a - b
    elif kind == 2:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        q = f"{name} buys {a} boxes with {b} {item}s in each box. How many {item}s does {name} buy?"
        plan, work, ans = f"Multiply the number of boxes by the {item}s per box.", f"{a} * {b} = {a * b}", a * b
    else:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        q = f"{name} shares {a * b} {item}s equally among {b} friends. How many {item}s does each friend get?"
        plan, work, ans = f"Divide the {item}s by the number of friends.", f"{a * b} / {b} = {a}", a
    return {"question": q, "plan": plan, "refined_plan": f"{plan} {work}.", "answer": str(ans)}


def builtin(n: int = 200, seed: int = 1234, held_out: float = 0.2) -> tuple[list[dict], list[dict]]:
    """~n distinct problems, split deterministically into (train, held_out)."""
    rng, rows, seen = random.Random(seed), [], set()
    while len(rows) < n:
        row = _problem(rng)
        if row["question"] not in seen:
            seen.add(row["question"])
            rows.append(row)
    k = max(1, int(round(n * held_out)))
    return rows[:-k], rows[-k:]


def load_jsonl(path: str | Path) -> list[dict]:
    """Rows from a JSONL file; any bad row stops with `file:line: what` so it can be fixed."""
    p = Path(path)
    if not p.is_file():
        raise MlcbuildError(f"{p}: no such data file", "pass a JSONL file to --data")
    if p.stat().st_size > MAX_FILE_BYTES:
        raise MlcbuildError(f"{p}: larger than {MAX_FILE_BYTES >> 20} MB", "split the data set")
    rows = []
    with open(p, encoding="utf-8", errors="strict") as f:
        try:
            lines = list(f)
        except UnicodeDecodeError:
            raise MlcbuildError(f"{p}: not UTF-8 text", "save the file as UTF-8 JSONL") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{p}:{i}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise MlcbuildError(f"{where}: not valid JSON ({e.msg})", "write one JSON object per line") from None
        if not isinstance(row, dict):
            raise MlcbuildError(f"{where}: a row must be a JSON object", "write {\"question\": ..., \"answer\": ...}")
        for key in ("question", "answer"):
            if key not in row:
                raise MlcbuildError(f"{where}: missing '{key}'", "every row needs question and answer")
        if isinstance(row["answer"], int | float) and not isinstance(row["answer"], bool):
            row["answer"] = str(row["answer"])
        for key in FIELDS:
            if key in row and row[key] is not None and not isinstance(row[key], str):
                raise MlcbuildError(f"{where}: '{key}' must be a string", "quote the value")
        if not row["question"].strip() or not row["answer"].strip():
            raise MlcbuildError(f"{where}: empty question or answer", "fill both in or drop the row")
        rows.append({k: row[k] for k in FIELDS if row.get(k)})
    if not rows:
        raise MlcbuildError(f"{p}: no rows", "add JSONL rows {\"question\": ..., \"answer\": ...}")
    return rows


def split(rows: list[dict], held_out: float = 0.2, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """A seeded train / held-out split of user rows (at least one row on each side when possible)."""
    idx = list(range(len(rows)))
    random.Random(seed).shuffle(idx)
    k = min(max(1, int(round(len(rows) * held_out))), len(rows) - 1) if len(rows) > 1 else 0
    return [rows[i] for i in idx[k:]], [rows[i] for i in idx[:k]]


def rows_hash(rows: list[dict]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


_NUM = re.compile(r"-?\d+(?:\.\d+)?")


def exact_match(generated: str, answer: str) -> bool:
    """Numeric answers compare with the LAST number generated ("3 + 4 = 7" -> 7); other answers as stripped,
    case-folded text."""
    want = _NUM.fullmatch(answer.strip().replace(",", ""))
    if want:
        got = _NUM.findall(generated.replace(",", ""))
        return bool(got) and float(got[-1]) == float(want.group())
    return generated.strip().casefold() == answer.strip().casefold()
