"""The wording skeleton of a question: what is left when the content words and numbers are taken out.

Two questions made by the same template differ only in numbers and in words drawn from the task lists, so they
have the same skeleton; tests compare skeleton sets to show the test templates are not training templates.
Every list word of tasks, tasks_varied and tasks_disjoint becomes a placeholder of its category (a word in two
lists gets the first category's placeholder, the same one everywhere), numbers become "#", case and runs of
whitespace are dropped.
"""

import re
from functools import cache

from . import tasks, tasks_disjoint, tasks_varied
from .tasks_varied_facts import classic_categories, train_bank


def _vocabulary() -> dict[str, str]:
    fact_subjects = [s for _, items in classic_categories().values() for s, _ in items]
    for bank in (train_bank(), tasks_disjoint.fact_bank()):
        fact_subjects += [s for items in bank.values() for s, _ in items]
    units = [w for b, one, s, _ in tasks_varied.UNITS for w in (b, one, s)]
    lists = [
        ("name", tasks.NAMES + tasks_varied.NAMES),
        ("day", tasks.DAYS),
        ("unit", units),
        ("item", [w for i in tasks.ITEMS for w in (i, i + "s")] + [w for pair in tasks_varied.ITEMS for w in pair]),
        ("box", [w for pair in tasks_varied.CONTAINERS for w in pair]),
        ("stat", tasks_varied.STATS),
        ("word", tasks.WORDS + tasks_varied.WORDS),
        ("fact", fact_subjects),
    ]
    vocab: dict[str, str] = {}
    for category, words in lists:
        for w in words:
            vocab.setdefault(w.lower(), f"<{category}>")
    return vocab


@cache
def _pattern() -> tuple[re.Pattern, dict[str, str]]:
    vocab = _vocabulary()
    # longest first, so "toy cars" and "a ripe banana" win over "car" and "banana"
    alternation = "|".join(re.escape(w) for w in sorted(vocab, key=len, reverse=True))
    return re.compile(rf"\b(?:{alternation})\b"), vocab


def skeleton(question: str) -> str:
    pattern, vocab = _pattern()
    text = pattern.sub(lambda m: vocab[m.group(0)], question.lower())
    text = re.sub(r"\d+", "#", text)
    return " ".join(text.split())
