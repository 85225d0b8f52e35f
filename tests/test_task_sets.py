"""The varied training set and the template-disjoint test split (no models): template counts, template-disjoint
skeletons, correct worked answers, item-split facts, determinism."""

import random
import re

import pytest

from train_links import tasks
from train_links.data import load_jsonl, worked_answer
from train_links.skeleton import skeleton
from train_links.tasks_disjoint import TEST_TEMPLATES, disjoint_test, fact_bank, write_jsonl
from train_links.tasks_varied import FAMILIES, NAMES, TEMPLATES, VAL_TEMPLATES, varied
from train_links.tasks_varied_facts import classic_categories, classic_held_out, train_bank

DAYS = tasks.DAYS
SAMPLES = 200  # draws per template for the skeleton sets


@pytest.fixture(scope="module")
def sets():
    return varied()


@pytest.fixture(scope="module")
def test_rows():
    return disjoint_test()


def _sample(template, n, seed):
    rng = random.Random(seed)
    return [template(rng) for _ in range(n)]


@pytest.fixture(scope="module")
def skeletons():
    """Skeleton sets: classic + varied training templates, varied validation templates, test templates."""
    train = {skeleton(r["question"]) for r in tasks._fact_bank()}
    for i, gen in enumerate(tasks.FAMILIES.values()):
        train |= {skeleton(r["question"]) for r in _sample(gen, 400, i)}
    val, count = set(), len(train)
    for family, templates in TEMPLATES.items():
        for i, (tid, template) in enumerate(templates):
            rows = _sample(template, SAMPLES, i)
            count += len(rows)
            (val if tid in VAL_TEMPLATES[family] else train).update(skeleton(r["question"]) for r in rows)
    test = set()
    for i, templates in enumerate(TEST_TEMPLATES.values()):
        for _, template in templates:
            test |= {skeleton(r["question"]) for r in _sample(template, SAMPLES, 100 + i)}
    return train, val, test, count + 400 * len(tasks.FAMILIES)


# counts ------------------------------------------------------------------------------------------------------

def test_template_counts():
    assert list(TEMPLATES) == list(FAMILIES) == list(TEST_TEMPLATES)
    assert len(FAMILIES) == 9
    for family in FAMILIES:
        ids = [tid for tid, _ in TEMPLATES[family]]
        assert len(ids) >= 10 and len(set(ids)) == len(ids), family
        assert len(VAL_TEMPLATES[family]) >= 2 and VAL_TEMPLATES[family] < set(ids), family
        assert len(ids) - len(VAL_TEMPLATES[family]) >= 8, family
        assert len(TEST_TEMPLATES[family]) >= 4, family
    for family, gen in tasks.FAMILIES.items():
        assert TEMPLATES[family][0] == (f"{family}/v0", gen)  # the classic generator is one template


def test_varied_rows(sets):
    train, val = sets
    assert len(train) >= 3600 and len(val) >= 150
    for rows, val_side in ((train, False), (val, True)):
        kinds = {r["kind"] for r in rows}
        assert kinds == set(FAMILIES)
        for r in rows:
            assert (r["template"] in VAL_TEMPLATES[r["kind"]]) == val_side, r
            assert r["template"].startswith(r["kind"] + "/")
    per = {f: sum(r["kind"] == f for r in train) for f in FAMILIES}
    assert all(v >= 400 for f, v in per.items() if f != "facts"), per  # balanced; facts has a small bank
    assert per["facts"] >= 150, per
    questions = [r["question"] for r in train + val]
    assert len(set(questions)) == len(questions)
    classic_held = {r["question"] for r in tasks.generate(4000, 360, 1234)[1]}
    assert not classic_held & set(questions)


def test_disjoint_rows(test_rows, sets):
    assert len(test_rows) >= 300
    kinds = [r["kind"] for r in test_rows]
    blocks = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]
    assert blocks == list(FAMILIES)  # one block per family, in the fixed order
    for family in FAMILIES:
        n = kinds.count(family)
        assert n >= (20 if family == "facts" else 40), (family, n)
        assert {r["template"] for r in test_rows if r["kind"] == family} == {t for t, _ in TEST_TEMPLATES[family]}
    questions = [r["question"] for r in test_rows]
    assert len(set(questions)) == len(questions)
    train, val = sets
    assert not set(questions) & {r["question"] for r in train + val}


def test_deterministic_and_exclude():
    a, b = varied(300, 45, seed=7), varied(300, 45, seed=7)
    assert a == b and a != varied(300, 45, seed=8)
    assert disjoint_test(10, 5) == disjoint_test(10, 5) != disjoint_test(10, 6)
    train, val = varied(300, 45, seed=7, exclude=("facts", "dates"))
    assert {r["kind"] for r in train} == {r["kind"] for r in val} == set(FAMILIES) - {"facts", "dates"}
    with pytest.raises(ValueError):
        varied(10, 10, exclude=("nope",))


def test_write_jsonl(tmp_path):
    path = tmp_path / "disjoint.jsonl"
    n = write_jsonl(path, n_per_family=5)
    rows = load_jsonl(path)
    assert len(rows) == n == len(disjoint_test(5))
    assert all(set(r) == {"question", "plan", "refined_plan", "answer", "kind"} for r in rows)


# template-disjoint skeletons ------------------------------------------------------------------------------

def test_skeleton_replaces_content_words():
    a = skeleton("Ana has 3 toy cars and Ben has 12 toy cars. How many more toy cars does the one with more have?")
    b = skeleton("Yusuf has 7 pears  and Chen has 1 pears. How many more pears does the one with more have?")
    assert a == b == "<name> has # <item> and <name> has # <item>. how many more <item> does the one with more have?"
    assert skeleton("What is the capital of South Korea?") == skeleton("What is the capital of France?")


def test_test_skeletons_never_trained(skeletons, test_rows):
    train, val, test, count = skeletons
    assert count >= 20000
    rows = {skeleton(r["question"]) for r in test_rows}
    assert not rows & (train | val)
    assert not test & (train | val)  # also over many more draws of every test template


def test_validation_skeletons_never_trained(skeletons):
    train, val, _, _ = skeletons
    assert val and not val & train


# facts split by item -------------------------------------------------------------------------------------------

def _subjects(bank):
    return {s.lower() for items in bank.values() for s, _ in items}


def test_fact_items_split():
    held = _subjects(classic_held_out())
    classic_train = _subjects({k: items for k, (_, items) in classic_categories().items()}) - held
    assert len(held) >= 10
    assert not _subjects(train_bank()) & held
    assert not _subjects(fact_bank()) & (_subjects(train_bank()) | classic_train)


# worked answers ---------------------------------------------------------------------------------------------

_INT = re.compile(r"-?\d+")
_EQ = re.compile(r"(\d+(?: [-+*/] \d+)+) = (-?\d+)")


def _ints(text):
    return [int(x) for x in _INT.findall(text)]


def _chain(expr):
    parts = expr.split()
    value = int(parts[0])
    for op, x in zip(parts[1::2], parts[2::2], strict=True):
        x = int(x)
        if op == "/":
            assert value % x == 0, expr
        value = {"+": value + x, "-": value - x, "*": value * x, "/": value // x if x else None}[op]
    return value


def _scores(question):
    """name -> the number written next to it (tables and 'Ana has 5 ...' stories)."""
    out = {}
    for name in NAMES:
        m = re.search(rf"\b{name}\b(?: scored| got| has| owns| with)?[^A-Za-z0-9]*(\d+)", question)
        if m:
            out[name] = int(m.group(1))
    return out


def _check(row, bank):
    q, answer, plan, refined = row["question"], row["answer"], row["plan"], row["refined_plan"]
    assert answer and refined.startswith(plan + " "), row
    worked = worked_answer(row)
    suffix = f"The answer is {answer}."
    assert worked.endswith(suffix), row
    work = worked[: -len(suffix)]
    kind = row["kind"]
    for expr, result in _EQ.findall(work):
        assert _chain(expr) == int(result), row
    for a, op, b in re.findall(r"(\d+) ([<>]) (\d+)", work):
        assert (int(a) > int(b)) if op == ">" else (int(a) < int(b)), row
    if kind == "facts":
        subject = [(s, a) for items in bank.values() for s, a in items if re.search(rf"\b{re.escape(s)}\b", q)]
        assert any(str(a) == answer for _, a in subject), row
        return
    if answer.lstrip("-").isdigit() and kind != "counting":
        assert _ints(work)[-1] == int(answer), row
    if kind in ("arithmetic", "multi_step", "comparison", "units"):
        assert set(_ints(q)) <= set(_ints(work)), row  # the computation uses the question's numbers
    if "the larger is" in work or "the smaller is" in work:
        assert int(answer) == (max if "larger" in work else min)(_ints(q)), row
    if kind == "comparison" and not answer.isdigit():
        counts = _scores(q)
        pick = max if "has more" in work else min
        assert answer == pick(counts, key=counts.get), row
    if kind == "table":
        counts = _scores(q)
        assert len(counts) == 3, row
        if "is the most" in work:
            assert answer == max(counts, key=counts.get), row
        elif "is the least" in work:
            assert answer == min(counts, key=counts.get), row
        elif " + " in work:
            assert int(answer) == sum(counts.values()), row
        else:
            assert int(answer) == counts[work.split()[0]], row
    if kind == "pattern":
        seq = _ints(q)[-4:]
        steps = {b - a for a, b in zip(seq, seq[1:], strict=False)}
        assert int(answer) == (seq[-1] + steps.pop() if len(steps) == 1 else seq[-1] * 2), row
    if kind == "counting":
        if "positions" in work:
            target = work.split()[0].lower()
            assert len(re.findall(rf"\b{target}\b", q.lower())) - 1 == int(answer), row
        else:
            marks = re.findall(r"(\w[\w ]*?) \((\d+)\)", work)
            assert [int(i) for _, i in marks] == list(range(1, int(answer) + 1)), row
            assert all(w.lower() in q.lower() for w, _ in marks), row
    if kind == "dates" and "->" in work:
        chain = [d.strip(" .") for d in work.split("->")]
        step = 1 if DAYS[(DAYS.index(chain[0]) + 1) % 7] == chain[1] else -1
        assert all(DAYS[(DAYS.index(a) + step) % 7] == b for a, b in zip(chain, chain[1:], strict=False)), row
        assert chain[0] in q and chain[-1] == answer, row
        assert len(chain) - 1 == (_ints(q) or [1])[0], row


def test_worked_answers_are_right(sets, test_rows):
    train, val = sets
    for row in train + val:
        _check(row, train_bank())
    for row in test_rows:
        _check(row, fact_bank())
    assert sum(r["kind"] == "facts" for r in test_rows) >= 20
