"""The fact bank of the varied training set (train_links.tasks_varied), split by item.

tasks.py holds four fact categories and generate(4000, 360, 1234) holds some of their items out. Those items
never enter this bank, so the classic held-out facts stay unseen; the new items added here are kept apart from
the items of the template-disjoint test (train_links.tasks_disjoint), which tests check.
"""

from functools import cache

from . import tasks

# the categories of tasks._FACTS, in its order
CLASSIC_CATEGORIES = ("capital", "opposite", "legs", "color")
CLASSIC_SEED = (4000, 360, 1234)  # data.builtin(): the classic split whose held-out facts stay unseen

# new items for training only; every answer is a word (or a small number for legs and sides)
EXTRA_FACTS = {
    "capital": [("Peru", "Lima"), ("Cuba", "Havana"), ("Thailand", "Bangkok"), ("Belgium", "Brussels"),
                ("Denmark", "Copenhagen"), ("Finland", "Helsinki"), ("Hungary", "Budapest"),
                ("Scotland", "Edinburgh"), ("Mexico", "Mexico City"), ("Argentina", "Buenos Aires")],
    "opposite": [("tall", "short"), ("rich", "poor"), ("loud", "quiet"), ("thick", "thin"), ("strong", "weak"),
                 ("clean", "dirty"), ("high", "low"), ("first", "last")],
    "legs": [("goat", 4), ("pig", 4), ("lion", 4), ("owl", 2), ("mouse", 4), ("rabbit", 4), ("elephant", 4)],
    "color": [("a lemon", "yellow"), ("a strawberry", "red"), ("chocolate", "brown"), ("a crow", "black"),
              ("blood", "red")],
    "young": [("cat", "kitten"), ("dog", "puppy"), ("horse", "foal"), ("goat", "kid"), ("pig", "piglet"),
              ("bear", "cub"), ("hen", "chick"), ("kangaroo", "joey"), ("deer", "fawn")],
    "plural": [("mouse", "mice"), ("child", "children"), ("foot", "feet"), ("man", "men"), ("woman", "women"),
               ("person", "people"), ("knife", "knives"), ("wolf", "wolves")],
    "sides": [("triangle", 3), ("square", 4), ("pentagon", 5), ("hexagon", 6), ("octagon", 8)],
}

# (category, question, plan) wordings; {s} is the subject, {a_s} the subject with "a"/"an"
FACT_WORDINGS = [
    ("capital", "Which city is the capital of {s}?", "Recall the capital."),
    ("capital", "Name the capital city of {s}.", "Recall the fact."),
    ("opposite", "What word means the opposite of {s}?", "Recall the opposite word."),
    ("opposite", 'Give the opposite of the word "{s}".', "Recall the fact."),
    ("legs", "{A_s} has how many legs?", "Recall how many legs the animal has."),
    ("legs", "Find the number of legs on {a_s}.", "Recall the fact."),
    ("color", "What is the color of {s}?", "Recall the color."),
    ("color", "Name the color of {s}.", "Recall the fact."),
    ("young", "What is a baby {s} called?", "Recall the name of the young animal."),
    ("plural", "What is the plural of the word {s}?", "Recall the plural form."),
    ("sides", "How many sides does {a_s} have?", "Recall the number of sides of the shape."),
]
# validation only (template-disjoint from the wordings above)
FACT_VAL_WORDINGS = [
    ("capital", "The capital of {s} is which city?", "Recall the capital."),
    ("opposite", "Complete the sentence: the opposite of {s} is ___.", "Recall the opposite word."),
]


def classic_categories() -> dict[str, tuple[str, list]]:
    """category -> (classic question template, items) from tasks.py."""
    return {key: (template, items) for key, (template, items) in zip(CLASSIC_CATEGORIES, tasks._FACTS, strict=True)}


@cache
def classic_held_out() -> dict[str, tuple]:
    """category -> the classic items that tasks.generate(*CLASSIC_SEED) holds out (found by their question)."""
    held = {r["question"] for r in tasks.generate(*CLASSIC_SEED)[1] if r["kind"] == "facts"}
    return {key: tuple(it for it in items if template.format(it[0]) in held)
            for key, (template, items) in classic_categories().items()}


@cache
def train_bank() -> dict[str, tuple]:
    """category -> (subject, answer) items the varied training set may use: the classic training items plus
    EXTRA_FACTS."""
    held = classic_held_out()
    bank = {key: tuple(it for it in items if it not in held[key]) for key, (_, items) in classic_categories().items()}
    return {key: bank.get(key, ()) + tuple(EXTRA_FACTS.get(key, ())) for key in {**bank, **EXTRA_FACTS}}
