"""The built-in task families: seeded generators of {question, plan, refined_plan, answer, kind} rows.

Every row is worked (refined_plan carries the computation) and checkable (answer is a number, a word or a
name, scored by train_links.data.exact_match). The plan says what to do without doing it; the refined plan
does it. Families that draw from a fixed bank (facts) split the bank itself, so no held-out question is ever
a training question.

Difficulty is set for the small models this project ships with (SmolLM2-135M): small numbers, short lists,
one or two steps. Measured on SmolLM2-135M-Instruct, two-digit operands put every family near 0% for every
method (nothing to compare); with these ranges a single agent is right on some rows and wrong on others.
"""

import random

NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jin", "Kai", "Lena", "Mo", "Nia",
         "Omar", "Pia", "Raj", "Sara", "Tom", "Uma", "Vic", "Wen", "Yara", "Zoe"]
ITEMS = ["apple", "book", "coin", "marble", "pencil", "shell", "stamp", "sticker", "card", "cookie", "ball",
         "candle", "button", "flower", "toy car", "shirt", "cup", "stone"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
WORDS = ["red", "blue", "green", "cat", "dog", "bird", "sun", "moon", "tree", "fish", "star", "rain", "lamp",
         "door", "milk", "bread"]


def _pick(rng, n=2):
    return rng.sample(NAMES, n), rng.choice(ITEMS)


def arithmetic(rng: random.Random) -> dict:
    """One operation on a short story: add, take away, groups of, share equally."""
    (name, _), item = _pick(rng)
    op = rng.randrange(4)
    if op == 0:
        a, b = rng.randint(1, 20), rng.randint(1, 12)
        q = f"{name} has {a} {item}s and gets {b} more. How many {item}s does {name} have now?"
        return _row(q, f"Add the {item}s {name} gets to the {item}s {name} had.", f"{a} + {b} = {a + b}", a + b)
    if op == 1:
        a = rng.randint(3, 20)
        b = rng.randint(1, a - 1)
        q = f"{name} has {a} {item}s and gives away {b}. How many {item}s are left?"
        return _row(q, f"Subtract the {item}s given away from the {item}s {name} had.", f"{a} - {b} = {a - b}", a - b)
    if op == 2:
        a, b = rng.randint(2, 6), rng.randint(2, 5)
        q = f"{name} buys {a} boxes with {b} {item}s in each box. How many {item}s does {name} buy?"
        return _row(q, f"Multiply the number of boxes by the {item}s in each box.", f"{a} * {b} = {a * b}", a * b)
    a, b = rng.randint(1, 6), rng.randint(2, 4)
    q = f"{name} shares {a * b} {item}s equally among {b} friends. How many {item}s does each friend get?"
    return _row(q, f"Divide the {item}s by the number of friends.", f"{a * b} / {b} = {a}", a)


def multi_step(rng: random.Random) -> dict:
    """Two operations in a row."""
    (name, _), item = _pick(rng)
    kind = rng.randrange(3)
    if kind == 0:
        a, b = rng.randint(2, 10), rng.randint(1, 6)
        c = rng.randint(1, a + b - 1)
        q = f"{name} has {a} {item}s, buys {b} more, then gives {c} to a friend. How many {item}s does {name} have?"
        return _row(q, "Add the bought ones, then subtract the ones given away.",
                    f"{a} + {b} = {a + b}, then {a + b} - {c} = {a + b - c}", a + b - c)
    if kind == 1:
        a, b, c = rng.randint(2, 4), rng.randint(2, 5), rng.randint(1, 5)
        q = f"{name} buys {a} packs of {b} {item}s and {c} single {item}s. How many {item}s is that in total?"
        return _row(q, "Multiply packs by the size of a pack, then add the single ones.",
                    f"{a} * {b} = {a * b}, then {a * b} + {c} = {a * b + c}", a * b + c)
    a, b = rng.randint(2, 4), rng.randint(2, 5)
    c = rng.randint(1, a * b - 1)
    q = (f"{name} has {a} bags with {b} {item}s each and loses {c} {item}s. "
         f"How many {item}s does {name} have left?")
    return _row(q, "Multiply bags by the number in each bag, then subtract the lost ones.",
                f"{a} * {b} = {a * b}, then {a * b} - {c} = {a * b - c}", a * b - c)


def comparison(rng: random.Random) -> dict:
    """Which is larger, how many more."""
    (n1, n2), item = _pick(rng)
    a, b = rng.sample(range(1, 21), 2)
    kind = rng.randrange(3)
    if kind == 0:
        q = f"Which number is larger, {a} or {b}?"
        return _row(q, "Compare the two numbers.", f"{max(a, b)} > {min(a, b)}, so the larger is {max(a, b)}",
                    max(a, b))
    if kind == 1:
        q = f"Which number is smaller, {a} or {b}?"
        return _row(q, "Compare the two numbers.", f"{min(a, b)} < {max(a, b)}, so the smaller is {min(a, b)}",
                    min(a, b))
    hi, lo = max(a, b), min(a, b)
    q = f"{n1} has {a} {item}s and {n2} has {b} {item}s. How many more {item}s does the one with more have?"
    return _row(q, "Subtract the smaller count from the larger count.", f"{hi} - {lo} = {hi - lo}", hi - lo)


def counting(rng: random.Random) -> dict:
    """Count the items of a list, or how often one word occurs in it."""
    if rng.random() < 0.5:
        n = rng.randint(2, 6)
        words = rng.sample(WORDS, n)
        q = f"How many words are in this list: {', '.join(words)}?"
        return _row(q, "Count the words one by one.", " ".join(f"{w} ({i + 1})" for i, w in enumerate(words)), n)
    target = rng.choice(WORDS)
    k = rng.randint(1, 3)
    others = [w for w in WORDS if w != target]
    words = [target] * k + [rng.choice(others) for _ in range(rng.randint(1, 3))]
    rng.shuffle(words)
    q = f"How many times does the word {target} appear in this list: {', '.join(words)}?"
    marks = [i + 1 for i, w in enumerate(words) if w == target]
    return _row(q, f"Go through the list and count each {target}.",
                f"{target} is at positions {', '.join(map(str, marks))}, that is {k} in all", k)


def pattern(rng: random.Random) -> dict:
    """The next number of an arithmetic or doubling sequence."""
    if rng.random() < 0.7:
        start, step = rng.randint(1, 20), rng.choice([1, 2, 3, 5, 10, -1, -2])
        start = start if step > 0 else start + 10
        seq = [start + i * step for i in range(5)]
        q = f"What number comes next: {', '.join(map(str, seq[:4]))}, ...?"
        sign = "+" if step > 0 else "-"
        return _row(q, "Find the difference between neighbours and apply it once more.",
                    f"each step is {sign}{abs(step)}, so {seq[3]} {sign} {abs(step)} = {seq[4]}", seq[4])
    start = rng.randint(1, 3)
    seq = [start * 2 ** i for i in range(5)]
    q = f"What number comes next: {', '.join(map(str, seq[:4]))}, ...?"
    return _row(q, "Each number doubles the one before it.", f"{seq[3]} * 2 = {seq[4]}", seq[4])


_UNITS = [("hours", "minutes", 60), ("minutes", "seconds", 60), ("days", "hours", 24), ("weeks", "days", 7),
          ("meters", "centimeters", 100), ("kilograms", "grams", 1000), ("years", "months", 12),
          ("kilometers", "meters", 1000), ("dozens", "items", 12), ("liters", "milliliters", 1000),
          ("centimeters", "millimeters", 10), ("pairs", "socks", 2), ("decades", "years", 10)]


def units(rng: random.Random) -> dict:
    """Convert a whole number of big units into small ones."""
    big, small, f = rng.choice(_UNITS)
    n = rng.randint(1, 8)
    q = f"How many {small} are in {n} {big}?"
    one = {"dozens": "dozen", "centimeters": "centimeter"}.get(big, big[:-1])
    return _row(q, f"One {one} is {f} {small}; multiply.", f"{n} * {f} = {n * f}", n * f)


def table(rng: random.Random) -> dict:
    """Read a small table of scores: one value, the top scorer, or the total."""
    names = rng.sample(NAMES, 3)
    scores = rng.sample(range(1, 16), len(names))
    tab = ", ".join(f"{n} {s}" for n, s in zip(names, scores, strict=True))
    kind = rng.randrange(3)
    if kind == 0:
        i = rng.randrange(len(names))
        q = f"Points table: {tab}. How many points does {names[i]} have?"
        return _row(q, f"Find the row for {names[i]}.", f"{names[i]} has {scores[i]} points", scores[i])
    if kind == 1:
        best = names[scores.index(max(scores))]
        q = f"Points table: {tab}. Who has the most points?"
        return _row(q, "Find the largest number in the table and its name.", f"{max(scores)} is the most, {best}", best)
    q = f"Points table: {tab}. How many points do they have in total?"
    return _row(q, "Add all the points.", f"{' + '.join(map(str, scores))} = {sum(scores)}", sum(scores))


def dates(rng: random.Random) -> dict:
    """Days of the week and hours on a 24-hour clock."""
    kind = rng.randrange(3)
    if kind < 2:
        d, k = rng.randrange(7), rng.randint(1, 3)
        ahead = kind == 0
        q = (f"Today is {DAYS[d]}. What day of the week will it be in {k} days?" if ahead else
             f"Today is {DAYS[d]}. What day of the week was it {k} days ago?")
        step = 1 if ahead else -1
        return _row(q, f"Count {k} days {'forward' if ahead else 'back'} from {DAYS[d]}.",
                    f"{' -> '.join(DAYS[(d + step * i) % 7] for i in range(k + 1))}", DAYS[(d + step * k) % 7])
    a = rng.randint(6, 12)
    b = rng.randint(a + 1, min(a + 8, 20))
    q = f"A shop opens at {a}:00 and closes at {b}:00. How many hours is it open?"
    return _row(q, "Subtract the opening hour from the closing hour.", f"{b} - {a} = {b - a}", b - a)


# short facts a small instruct model should know; split by item, so held-out facts are never trained on
_FACTS = [
    ("What is the capital of {}?", [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"),
                                    ("Germany", "Berlin"), ("Japan", "Tokyo"), ("Egypt", "Cairo"),
                                    ("Russia", "Moscow"), ("England", "London"), ("Greece", "Athens"),
                                    ("Portugal", "Lisbon"), ("Austria", "Vienna"), ("Ireland", "Dublin"),
                                    ("Norway", "Oslo"), ("Poland", "Warsaw"), ("China", "Beijing"),
                                    ("Canada", "Ottawa"), ("Sweden", "Stockholm"), ("Kenya", "Nairobi")]),
    ("What is the opposite of {}?", [("hot", "cold"), ("up", "down"), ("big", "small"), ("fast", "slow"),
                                      ("day", "night"), ("open", "closed"), ("happy", "sad"), ("left", "right"),
                                      ("wet", "dry"), ("old", "new"), ("light", "dark"), ("full", "empty"),
                                      ("early", "late"), ("hard", "soft"), ("yes", "no"), ("in", "out")]),
    ("How many legs does a {} have?", [("dog", 4), ("spider", 8), ("bird", 2), ("cat", 4), ("ant", 6),
                                       ("horse", 4), ("chicken", 2), ("bee", 6), ("cow", 4), ("duck", 2)]),
    ("What color is {}?", [("the sky on a clear day", "blue"), ("grass", "green"), ("snow", "white"),
                            ("a ripe banana", "yellow"), ("coal", "black"), ("a ripe tomato", "red"),
                            ("an orange", "orange"), ("milk", "white")]),
]


def _fact_bank() -> list[dict]:
    rows = []
    for template, items in _FACTS:
        for subject, ans in items:
            q = template.format(subject)
            rows.append(_row(q, "Recall the fact.", f"the answer is {ans}", ans))
    return rows


def _row(question: str, plan: str, work: str, answer) -> dict:
    refined = f"{plan} {work[0].upper()}{work[1:]}."
    return {"question": question, "plan": plan, "refined_plan": refined, "answer": str(answer)}


FAMILIES = {"arithmetic": arithmetic, "multi_step": multi_step, "comparison": comparison, "counting": counting,
            "pattern": pattern, "units": units, "table": table, "dates": dates}


def _pool(gen, n: int, rng: random.Random) -> list[dict]:
    """Up to n rows with distinct questions (fewer when the family has fewer)."""
    rows, seen, misses = [], set(), 0
    while len(rows) < n and misses < 2000:
        row = gen(rng)
        if row["question"] in seen:
            misses += 1
            continue
        seen.add(row["question"])
        rows.append(row)
    return rows


def generate(n_train: int, n_held: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held_out). Each family draws a pool of distinct questions; its first rows are held out,
    `n_held // (families + 1)` of them but never more than a third of a small family's pool (facts count as a
    family); training rows come from the rest of the pools, up to n_train in all. Seeded: the same sets every
    time, and no held-out question is a training question."""
    rng = random.Random(seed)
    per = n_held // (len(FAMILIES) + 1)
    per_train = n_train // len(FAMILIES)
    facts = _fact_bank()
    random.Random(seed + 1).shuffle(facts)
    pools = {kind: _pool(gen, per + per_train, rng) for kind, gen in FAMILIES.items()}
    pools["facts"] = facts
    held, train = [], []
    for kind, pool in pools.items():
        k = min(per, len(pool) // 3)
        held += [{**r, "kind": kind} for r in pool[:k]]
        train += [{**r, "kind": kind} for r in pool[k:k + per_train]]
    random.Random(seed + 2).shuffle(train)
    return train, held
