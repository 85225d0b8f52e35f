"""Training rows {question, plan?, refined_plan?, answer, kind?}: the built-in task set (train_links.tasks, generated
with a seeded generator, answers checkable) and user JSONL files."""

import hashlib
import json
import random
import re
import unicodedata
from pathlib import Path

from mlcbuild_common.errors import MlcbuildError

FIELDS = ("question", "plan", "refined_plan", "answer", "kind")  # kind: the task family, for per-family scores
MAX_FILE_BYTES = 512 << 20
HELD_OUT_ROWS = 360  # the fixed held-out split of the built-in set (>= 300 rows over every family)
TRAIN_ROWS = 4000


def builtin(n: int = TRAIN_ROWS, seed: int = 1234, n_held: int = HELD_OUT_ROWS) -> tuple[list[dict], list[dict]]:
    """The built-in task set (train_links.tasks): (train, held_out), seeded, with no held-out question in train.
    Rows carry a `kind` (the task family), which `mlcbuild eval` reports accuracy by."""
    from .tasks import generate

    return generate(n, n_held, seed)


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
_WORD = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    """Lower-case words with accents removed ("Bogotá" -> "bogota")."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return _WORD.findall(plain.casefold())


def worked_answer(row: dict) -> str:
    """The final agent's worked target: the refined plan's computation (the text after the plan), then "The answer
    is X." A small solver trained to answer bare numbers collapses to the most frequent ones (measured on
    SmolLM2-135M: "1" on 44% of rows); writing the computation first gives it something to compute with.
    Rows without a refined plan fall back to the answer."""
    answer, refined, plan = row["answer"], row.get("refined_plan") or "", row.get("plan") or ""
    work = refined[len(plan):].strip() if plan and refined.startswith(plan) else refined.strip()
    if not work:
        return answer
    return work if "answer is" in work.casefold() else f"{work} The answer is {answer}."


TARGETS = ("answer", "worked")


def with_targets(rows: list[dict], target: str) -> list[dict]:
    """Rows with the final agent's training text in "target": the bare answer, or the worked answer."""
    if target == "answer":
        return rows
    return [{**r, "target": worked_answer(r)} for r in rows]


def is_numeric(answer: str) -> bool:
    return bool(_NUM.fullmatch(answer.strip().replace(",", "")))


_FINAL_CUE = re.compile(r"answer\s+is\b|answer\s*:", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def final_answer(generated: str) -> str:
    """The part of an output that states the answer: the text after the LAST "answer is" / "Answer:" when there is
    one, else the last sentence. Scoring only this part means that listing candidates ("Monday, Tuesday, ...")
    or echoing the question (its names and numbers) cannot score."""
    cues = list(_FINAL_CUE.finditer(generated))
    if cues:
        return generated[cues[-1].end():].strip()
    sentences = [s for s in _SENTENCE_END.split(generated.strip()) if s.strip()]
    return sentences[-1] if sentences else ""


def _has(words: list[str], phrase: str) -> bool:
    need = _words(phrase)
    n = len(need)  # a whole-word run, so "Parisian" never matches "Paris"
    return n > 0 and any(words[i:i + n] == need for i in range(len(words) - n + 1))


def exact_match(generated: str, answer: str, rivals=()) -> bool:
    """Scored on final_answer(generated). Numeric answers compare with its LAST number ("3 + 4 = 7" -> 7). Other
    answers match as whole words, case- and accent-insensitive ("The capital is Paris." matches "paris"), and
    only when no rival answer (another word answer of the same task family, see rivals_by_kind) is there too:
    "Monday, Tuesday, Wednesday" names every day, so it answers none."""
    final = final_answer(generated)
    want = _NUM.fullmatch(answer.strip().replace(",", ""))
    if want:
        got = _NUM.findall(final.replace(",", ""))
        return bool(got) and float(got[-1]) == float(want.group())
    have, need = _words(final), _words(answer)
    if not _has(have, answer):
        return False
    rest, i = [], 0  # the final answer's words outside every occurrence of the answer
    while i < len(have):
        if have[i:i + len(need)] == need:
            rest.append("")
            i += len(need)
        else:
            rest.append(have[i])
            i += 1
    return not any(_has(rest, r) for r in rivals if _words(r) != need)


def rivals_by_kind(rows: list[dict]) -> dict:
    """{kind: the word answers of that family's rows}: the candidates a listing answer would name."""
    out: dict = {}
    for r in rows:
        if not is_numeric(r["answer"]):
            out.setdefault(r.get("kind", "all"), set()).add(r["answer"])
    return out


def well_formed(generated: str, answer: str) -> bool:
    """A number where the answer is numeric; some words otherwise."""
    return bool(_NUM.search(generated.replace(",", ""))) if is_numeric(answer) else bool(_words(generated))
