"""A varied training set for the nine task families: many wordings per family, template-disjoint validation.

Links trained on the classic templates of train_links.tasks (one or two wordings per family) do poorly on
questions worded differently. Here every family has 12 or more templates: the classic generator ("<family>/v0")
and 11 new ones that change clause order, question form, vocabulary and sentence structure while keeping the
classic difficulty and the classic plan / worked-computation style. Two templates per family (VAL_TEMPLATES)
only ever give validation rows, so checkpoint selection sees wordings that training did not.

A template is a function of `rng: random.Random` returning {question, plan, refined_plan, answer}; most are built
by `make(op, question, plan)`: the op draws the numbers and does the computation (work and answer), the two format
strings give the wording. train_links.tasks_disjoint reuses the ops with its own wordings for the test split.
"""

import random

from . import tasks
from .tasks import _row
from .tasks_varied_facts import CLASSIC_CATEGORIES, FACT_VAL_WORDINGS, FACT_WORDINGS, classic_categories, train_bank
from .tasks_varied_wordings import VAL_WORDINGS, WORDINGS

EXTRA_NAMES = ["Ali", "Bea", "Cleo", "Dev", "Ema", "Finn", "Gia", "Hugo", "Iris", "Jack", "Kira", "Leo", "Maya",
               "Nico", "Olga", "Paul", "Rosa", "Sam", "Tina", "Vera", "Wes", "Yusuf", "Zara"]
EXTRA_ITEMS = [("pear", "pears"), ("egg", "eggs"), ("balloon", "balloons"), ("crayon", "crayons"),
               ("ribbon", "ribbons"), ("bead", "beads"), ("kite", "kites"), ("plate", "plates"),
               ("puzzle", "puzzles"), ("peach", "peaches"), ("muffin", "muffins"), ("brush", "brushes")]
EXTRA_WORDS = ["hat", "boat", "rose", "sand", "wind", "bell", "nest", "ring", "drum", "shoe", "coat", "fork",
               "road", "hill", "lake", "cake"]
EXTRA_UNITS = [("feet", "foot", "inches", 12), ("yards", "yard", "feet", 3), ("tons", "ton", "kilograms", 1000),
               ("centuries", "century", "years", 100), ("meters", "meter", "millimeters", 1000)]
CONTAINERS = [("box", "boxes"), ("bag", "bags"), ("jar", "jars"), ("basket", "baskets"), ("tray", "trays"),
              ("pack", "packs")]
STATS = ["points", "goals", "stars", "votes", "tickets"]

NAMES = tasks.NAMES + EXTRA_NAMES
ITEMS = [(i, i + "s") for i in tasks.ITEMS] + EXTRA_ITEMS
WORDS = tasks.WORDS + EXTRA_WORDS
# (big, one big, small, factor); the classic list's singulars as tasks.units() forms them
UNITS = [(b, {"dozens": "dozen", "centimeters": "centimeter"}.get(b, b[:-1]), s, f) for b, s, f in tasks._UNITS]
UNITS += EXTRA_UNITS
DAYS = tasks.DAYS
FAMILIES = (*tasks.FAMILIES, "facts")  # the fixed family order


def article(word: str) -> str:
    return f"{'an' if word[0].lower() in 'aeiou' else 'a'} {word}"


def _and(words: list[str]) -> str:
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else words[0]


def _context(rng: random.Random) -> dict:
    """The content words every wording may use."""
    n1, n2, n3 = rng.sample(NAMES, 3)
    item, items = rng.choice(ITEMS)
    box, boxes = rng.choice(CONTAINERS)
    return {"name": n1, "name2": n2, "name3": n3, "item": item, "items": items, "box": box, "boxes": boxes}


def make(op, question: str, plan: str):
    """A template: op(rng, ctx) -> (values, work, answer); question and plan are format strings over ctx+values."""
    def template(rng: random.Random) -> dict:
        ctx = _context(rng)
        values, work, answer = op(rng, ctx)
        ctx.update(values)
        return _row(question.format(**ctx), plan.format(**ctx), work, answer)
    return template


# ops: the computation of each kind of question, in tasks.py's ranges and worked style -----------------------

def add(rng, ctx):
    a, b = rng.randint(1, 20), rng.randint(1, 12)
    return {"a": a, "b": b}, f"{a} + {b} = {a + b}", a + b


def sub(rng, ctx):
    a = rng.randint(3, 20)
    b = rng.randint(1, a - 1)
    return {"a": a, "b": b}, f"{a} - {b} = {a - b}", a - b


def mul(rng, ctx):
    a, b = rng.randint(2, 6), rng.randint(2, 5)
    return {"a": a, "b": b}, f"{a} * {b} = {a * b}", a * b


def div(rng, ctx):
    a, b = rng.randint(1, 6), rng.randint(2, 4)
    return {"t": a * b, "b": b}, f"{a * b} / {b} = {a}", a


def _two_steps(a, op1, b, op2, c):
    calc = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}
    mid = calc[op1](a, b)
    end = calc[op2](mid, c)
    return {"a": a, "b": b, "c": c}, f"{a} {op1} {b} = {mid}, then {mid} {op2} {c} = {end}", end


def add_sub(rng, ctx):
    a, b = rng.randint(2, 10), rng.randint(1, 6)
    return _two_steps(a, "+", b, "-", rng.randint(1, a + b - 1))


def mul_add(rng, ctx):
    return _two_steps(rng.randint(2, 4), "*", rng.randint(2, 5), "+", rng.randint(1, 5))


def mul_sub(rng, ctx):
    a, b = rng.randint(2, 4), rng.randint(2, 5)
    return _two_steps(a, "*", b, "-", rng.randint(1, a * b - 1))


def sub_add(rng, ctx):
    a = rng.randint(3, 12)
    return _two_steps(a, "-", rng.randint(1, a - 1), "+", rng.randint(1, 6))


def add_add(rng, ctx):
    return _two_steps(rng.randint(2, 10), "+", rng.randint(1, 6), "+", rng.randint(1, 5))


def _pair(rng):
    a, b = rng.sample(range(1, 21), 2)
    return {"a": a, "b": b, "hi": max(a, b), "lo": min(a, b)}


def larger(rng, ctx):
    v = _pair(rng)
    return v, f"{v['hi']} > {v['lo']}, so the larger is {v['hi']}", v["hi"]


def smaller(rng, ctx):
    v = _pair(rng)
    return v, f"{v['lo']} < {v['hi']}, so the smaller is {v['lo']}", v["lo"]


def diff(rng, ctx):
    v = _pair(rng)
    return v, f"{v['hi']} - {v['lo']} = {v['hi'] - v['lo']}", v["hi"] - v["lo"]


def more_name(rng, ctx):
    v = _pair(rng)
    who = ctx["name"] if v["a"] > v["b"] else ctx["name2"]
    return v, f"{v['hi']} > {v['lo']}, so {who} has more", who


def fewer_name(rng, ctx):
    v = _pair(rng)
    who = ctx["name"] if v["a"] < v["b"] else ctx["name2"]
    return v, f"{v['lo']} < {v['hi']}, so {who} has fewer", who


def _listing(words: list[str]) -> dict:
    return {"list": ", ".join(words), "list_and": _and(words), "list_semi": "; ".join(words),
            "list_a": _and([article(w) for w in words])}


def _length(pool):
    def op(rng, ctx):
        words = rng.sample(pool, rng.randint(2, 6))
        return _listing(words), " ".join(f"{w} ({i + 1})" for i, w in enumerate(words)), len(words)
    return op


def _occurs(pool):
    def op(rng, ctx):
        target, k = rng.choice(pool), rng.randint(1, 3)
        others = [w for w in pool if w != target]
        words = [target] * k + [rng.choice(others) for _ in range(rng.randint(1, 3))]
        rng.shuffle(words)
        marks = ", ".join(str(i + 1) for i, w in enumerate(words) if w == target)
        return {**_listing(words), "target": target}, f"{target} is at positions {marks}, that is {k} in all", k
    return op


count_words, count_names, count_things = _length(WORDS), _length(NAMES), _length([i for i, _ in ITEMS])
occ_words, occ_names = _occurs(WORDS), _occurs(NAMES)


def _sequence(rng, double: bool):
    if double:
        start = rng.randint(1, 3)
        seq = [start * 2 ** i for i in range(5)]
        work, rule = f"{seq[3]} * 2 = {seq[4]}", "Each number doubles the one before it."
    else:
        start, step = rng.randint(1, 20), rng.choice([1, 2, 3, 5, 10, -1, -2])
        seq = [(start if step > 0 else start + 10) + i * step for i in range(5)]
        sign = "+" if step > 0 else "-"
        work = f"each step is {sign}{abs(step)}, so {seq[3]} {sign} {abs(step)} = {seq[4]}"
        rule = "Find the step between neighbours and apply it to the last number."
    shown = [str(x) for x in seq[:4]]
    return ({"seq": ", ".join(shown), "seq_then": ", then ".join(shown), "seq_and": _and(shown), "last": seq[3],
             "rule": rule}, work, seq[4])


def seq_mix(rng, ctx):
    return _sequence(rng, rng.random() >= 0.7)  # the classic share: 70% steps, 30% doubling


def seq_double(rng, ctx):
    return _sequence(rng, True)


def _units(rng):
    big, one, small, f = rng.choice(UNITS)
    n = rng.randint(2, 8)
    return {"big": big, "one": one, "small": small, "f": f, "n": n, "t": n * f}


def to_small(rng, ctx):
    v = _units(rng)
    return v, f"{v['n']} * {v['f']} = {v['t']}", v["t"]


def to_big(rng, ctx):
    v = _units(rng)
    return v, f"{v['t']} / {v['f']} = {v['n']}", v["n"]


def _board(rng):
    names, scores, stat = rng.sample(NAMES, 3), rng.sample(range(1, 16), 3), rng.choice(STATS)
    pairs = list(zip(names, scores, strict=True))
    v = {"stat": stat, "tab": ", ".join(f"{n} {s}" for n, s in pairs),
         "tab_colon": ", ".join(f"{n}: {s}" for n, s in pairs),
         "tab_paren": ", ".join(f"{n} ({s})" for n, s in pairs),
         "tab_arrow": ", ".join(f"{n} -> {s}" for n, s in pairs),
         "tab_scored": _and([f"{n} scored {s}" for n, s in pairs]),
         "tab_got": _and([f"{n} got {s} {stat}" for n, s in pairs])}
    return v, names, scores


def lookup(rng, ctx):
    v, names, scores = _board(rng)
    i = rng.randrange(3)
    return {**v, "x": names[i]}, f"{names[i]} has {scores[i]} {v['stat']}", scores[i]


def top(rng, ctx):
    v, names, scores = _board(rng)
    best = names[scores.index(max(scores))]
    return v, f"{max(scores)} is the most, {best}", best


def bottom(rng, ctx):
    v, names, scores = _board(rng)
    worst = names[scores.index(min(scores))]
    return v, f"{min(scores)} is the least, {worst}", worst


def total(rng, ctx):
    v, _, scores = _board(rng)
    return v, f"{' + '.join(map(str, scores))} = {sum(scores)}", sum(scores)


def _walk(rng, step: int, k: int):
    d = rng.randrange(7)
    chain = " -> ".join(DAYS[(d + step * i) % 7] for i in range(k + 1))
    return {"day": DAYS[d], "k": k, "kdays": "day" if k == 1 else "days"}, chain, DAYS[(d + step * k) % 7]


def fwd(rng, ctx):
    return _walk(rng, 1, rng.randint(1, 3))


def back(rng, ctx):
    return _walk(rng, -1, rng.randint(1, 3))


def fwd1(rng, ctx):
    return _walk(rng, 1, 1)


def hours(rng, ctx):
    a = rng.randint(6, 12)
    b = rng.randint(a + 1, min(a + 8, 20))
    return {"a": a, "b": b}, f"{b} - {a} = {b - a}", b - a


def fact(category: str, bank=train_bank):
    """An op drawing one (subject, answer) of `category` from bank()."""
    def op(rng, ctx):
        s, answer = rng.choice(bank()[category])
        return {"s": s, "a_s": article(s), "A_s": article(s).capitalize()}, f"the answer is {answer}", answer
    return op


def _classic_facts(rng: random.Random) -> dict:
    """tasks.py's fact wordings over this module's bank (the classic held-out items are not in it)."""
    key = rng.choice(CLASSIC_CATEGORIES)
    s, answer = rng.choice(train_bank()[key])
    return _row(classic_categories()[key][0].format(s), "Recall the fact.", f"the answer is {answer}", answer)


# the templates ---------------------------------------------------------------------------------------------------

def _build() -> tuple[dict, dict]:
    """family -> [(id, template)] with the classic generator as v0, and family -> validation ids (the last ones)."""
    ops = globals()
    classic = {**tasks.FAMILIES, "facts": _classic_facts}
    wordings = {**WORDINGS, "facts": [(fact(c), q, p) for c, q, p in FACT_WORDINGS]}
    val_wordings = {**VAL_WORDINGS, "facts": [(fact(c), q, p) for c, q, p in FACT_VAL_WORDINGS]}
    templates, val = {}, {}
    for family in FAMILIES:
        specs = wordings[family] + val_wordings[family]
        made = [make(ops[op] if isinstance(op, str) else op, q, p) for op, q, p in specs]
        templates[family] = [(f"{family}/v{i}", t) for i, t in enumerate([classic[family], *made])]
        val[family] = {tid for tid, _ in templates[family][-len(val_wordings[family]):]}
    return templates, val


TEMPLATES, VAL_TEMPLATES = _build()
MAX_TRIES = 300  # draws of one template before it counts as exhausted (no new distinct question)


def draw(family: str, templates: list, n: int, rng: random.Random, seen: set, banned=frozenset()) -> list[dict]:
    """Up to n rows with questions not in `seen` (updated) nor `banned`, taking the templates in turn so every
    template gives about as many rows; a template that has no new question left drops out."""
    rows, live, i = [], list(templates), 0
    while len(rows) < n and live:
        tid, template = live[i % len(live)]
        for _ in range(MAX_TRIES):
            row = template(rng)
            if row["question"] not in seen and row["question"] not in banned:
                break
        else:
            live.remove((tid, template))
            continue
        seen.add(row["question"])
        rows.append({**row, "kind": family, "template": tid})
        i += 1
    return rows


def _share(n: int, k: int, i: int) -> int:
    return n // k + (1 if i < n % k else 0)


def varied(n_train: int = 4000, n_val: int = 180, seed: int = 4321,
           exclude: tuple[str, ...] = ()) -> tuple[list[dict], list[dict]]:
    """(train, val): rows of the training templates and of the validation templates, balanced over the families
    not in `exclude` and over each family's templates, shuffled, with distinct questions. A family with few
    distinct questions (facts, dates) gives fewer rows. No row repeats a question of the classic held-out split
    (data.builtin()), so scores on it stay clean when links are trained on this set."""
    unknown = set(exclude) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown task families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
    families = [f for f in FAMILIES if f not in exclude]
    banned = frozenset(r["question"] for r in tasks.generate(4000, 360, 1234)[1])
    train, val = [], []
    for i, family in enumerate(families):
        rng = random.Random(f"{seed}:{family}")  # per family: excluding one family leaves the others' draws alone
        seen: set = set()
        held = VAL_TEMPLATES[family]
        val += draw(family, [t for t in TEMPLATES[family] if t[0] in held], _share(n_val, len(families), i),
                    rng, seen, banned)
        train += draw(family, [t for t in TEMPLATES[family] if t[0] not in held], _share(n_train, len(families), i),
                      rng, seen, banned)
    random.Random(seed).shuffle(train)
    random.Random(seed + 1).shuffle(val)
    return train, val
