"""A template-disjoint test split: the nine task families in wordings no training template produces.

train_links.tasks (classic) and train_links.tasks_varied (varied, with its validation templates) are the training
side. The test templates here keep each family's computation, answer type and difficulty (they reuse the ops of
tasks_varied) but change the wording skeleton: story order with the question first, other question forms, other
frame words. Content words (names, items, units, days) may be shared; tests/test_task_sets.py checks with
train_links.skeleton that no test question has the skeleton of any training or validation question. Facts use
items held out of both training sets: the classic held-out items plus TEST_FACTS.

Write the split for `mlcbuild eval --data FILE` with `python -m train_links.tasks_disjoint FILE`.
"""

import argparse
import json
import random
from functools import cache
from pathlib import Path

from . import tasks_varied as tv
from .tasks_varied_facts import classic_held_out

# new fact items, in no training bank
TEST_FACTS = {
    "capital": [("South Korea", "Seoul"), ("Iceland", "Reykjavik"), ("Turkey", "Ankara"), ("India", "New Delhi"),
                ("Vietnam", "Hanoi"), ("Switzerland", "Bern"), ("Wales", "Cardiff"), ("Chile", "Santiago"),
                ("Indonesia", "Jakarta"), ("Iran", "Tehran"), ("Australia", "Canberra")],
    "opposite": [("push", "pull"), ("win", "lose"), ("give", "take"), ("near", "far"), ("true", "false"),
                 ("always", "never"), ("buy", "sell"), ("before", "after"), ("sweet", "sour")],
    "legs": [("sheep", 4), ("penguin", 2), ("frog", 4), ("butterfly", 6), ("tiger", 4), ("zebra", 4), ("eagle", 2),
             ("beetle", 6)],
    "color": [("a lime", "green"), ("a pumpkin", "orange"), ("a polar bear", "white"), ("a cherry", "red"),
              ("an eggplant", "purple")],
    "young": [("sheep", "lamb"), ("duck", "duckling"), ("cow", "calf"), ("frog", "tadpole"), ("tiger", "cub")],
    "plural": [("tooth", "teeth"), ("goose", "geese"), ("ox", "oxen"), ("loaf", "loaves")],
}


@cache
def fact_bank() -> dict[str, tuple]:
    """category -> (subject, answer): the classic held-out fact items plus TEST_FACTS."""
    held = classic_held_out()
    return {key: tuple(held.get(key, ())) + tuple(TEST_FACTS.get(key, ())) for key in {**held, **TEST_FACTS}}


def _fact(category):
    return tv.fact(category, bank=fact_bank)


# (op, question, plan) per family; ids are "<family>/t1", "<family>/t2", ...
TEST_WORDINGS = {
    "arithmetic": [
        (tv.add, "How many {items} does {name} own at the end? {name} started with {a} {items}. Later, {name} "
                 "received {b} more.", "Add the {items} {name} received to the {items} {name} started with."),
        (tv.sub, "Starting from {a} {items}, {name} loses {b} of them on a walk. What number of {items} is still "
                 "with {name}?", "Subtract the lost {items} from the starting {items}."),
        (tv.mul, "There are {a} shelves, and every shelf carries {b} {items}. Work out the number of {items} on all "
                 "the shelves together.", "Multiply the shelves by the {items} on each shelf."),
        (tv.div, "A teacher hands out {t} {items} so that {b} students get the same amount. What does one student "
                 "receive?", "Divide the {items} by the number of students."),
        (tv.add, "{name}'s collection holds {a} {items}. {name2} adds {b} {items} to it. What size is the "
                 "collection now?", "Add the {items} from {name2} to the collection."),
    ],
    "multi_step": [
        (tv.add_sub, "How many {items} are in {name}'s {box} now? The {box} held {a} {items}. {name} put in {b} "
                     "more and later took out {c}.", "Add the ones put in, then subtract the ones taken out."),
        (tv.mul_add, "Picture {a} {boxes}, each with {b} {items}, and {c} extra {items} lying beside them. Tell me "
                     "the grand total of {items}.", "Multiply the {boxes} by the {items} in each, then add the "
                                                    "extra ones."),
        (tv.mul_sub, "{name} prepared {a} {boxes} of {b} {items}. Sadly, {c} {items} fell on the floor. Number of "
                     "{items} still in the {boxes}?", "Multiply the {boxes} by the {items} in each, then subtract "
                                                      "the fallen ones."),
        (tv.sub_add, "A shelf had {a} {items}. Someone removed {b}, and afterwards {name} placed {c} new ones "
                     "there. Count the {items} on the shelf.", "Subtract the removed ones, then add the new ones."),
        (tv.add_add, "Three children pool their {items}: {name} brings {a}, {name2} brings {b}, {name3} brings {c}. "
                     "How big is the pile?", "Add the first two amounts, then add the third."),
    ],
    "comparison": [
        (tv.larger, "Two numbers are written on a board: {a} and {b}. Which of them has the higher value?",
         "Compare the two numbers."),
        (tv.smaller, "Between {a} and {b}, tell me which number is the lesser one.", "Compare the two numbers."),
        (tv.diff, "{name}'s tower is {a} blocks tall and {name2}'s tower is {b} blocks tall. What is the gap in "
                  "height, in blocks?", "Subtract the shorter height from the taller height."),
        (tv.more_name, "Who collected the larger number of {items}: {name} with {a}, or {name2} with {b}?",
         "Compare the two counts and name the one with more."),
        (tv.diff, "{hi} {items} versus {lo} {items} — how big is the difference?",
         "Subtract the smaller count from the larger count."),
    ],
    "counting": [
        (tv.count_words, "Words on the card: {list}. Tell me the word count.", "Count the words one by one."),
        (tv.occ_words, "Someone wrote {list} on the board. Count only the {target} words — how many?",
         "Go through the list and count each {target}."),
        (tv.count_names, "The team is {list_and}. How many players are on the team?", "Count the names one by one."),
        (tv.occ_words, "Scan {list} for {target} and say how many you find.",
         "Go through the list and count each {target}."),
        (tv.count_things, "In {name}'s {box}: {list_a}. How many objects are in the {box}?",
         "Count the things one by one."),
    ],
    "pattern": [
        (tv.seq_mix, "Stepping stones are numbered {seq}. What number is on the next stone?", "{rule}"),
        (tv.seq_mix, "A robot prints {seq_and}. If it keeps the same rule, what does it print next?", "{rule}"),
        (tv.seq_mix, "Next in line after {seq} would be which number?", "{rule}"),
        (tv.seq_mix, "Rule puzzle: the row reads {seq}. Extend it by one number.", "{rule}"),
        (tv.seq_double, "{name} keeps doubling: {seq}. Which number does {name} write down next?",
         "Double the last number."),
    ],
    "units": [
        (tv.to_small, "How many {small} would you count in {n} whole {big}?", "One {one} is {f} {small}; multiply."),
        (tv.to_small, "{name} says there are {n} {big}. Rewrite that amount for {name} in {small}.",
         "One {one} is {f} {small}; multiply."),
        (tv.to_big, "Starting from {t} {small}, regroup them into {big}. How many {big} do you get?",
         "One {one} is {f} {small}; divide."),
        (tv.to_small, "On a worksheet: {n} {big} = ? {small}. What goes in place of the question mark?",
         "One {one} is {f} {small}; multiply."),
        (tv.to_small, "Knowing there are {f} {small} in one {one}, work out the {small} in {n} {big}.",
         "Multiply the {big} by {f}."),
    ],
    "table": [
        (tv.lookup, "{x} is one of the players listed here: {tab_paren}. Report {x}'s {stat}.",
         "Find the row for {x}."),
        (tv.top, "Results board: {tab_paren}. Which person earned the largest number of {stat}?",
         "Find the largest number in the table and its name."),
        (tv.total, "Combined, how many {stat} did the group earn? Board: {tab_paren}.", "Add all the {stat}."),
        (tv.bottom, "Of the players {tab_paren}, who came last with the smallest number of {stat}?",
         "Find the smallest number in the table and its name."),
        (tv.lookup, "What number of {stat} sits beside {x}'s name on this list: {tab_arrow}?",
         "Find the row for {x}."),
    ],
    "dates": [
        (tv.fwd, "{name} will visit in {k} {kdays}. Today being {day}, on which weekday is the visit?",
         "Count {k} {kdays} forward from {day}."),
        (tv.back, "Going back {k} {kdays} from {day}, which weekday do you land on?",
         "Count {k} {kdays} back from {day}."),
        (tv.hours, "Between {a}:00 and {b}:00 a bakery stays open. Count those hours.",
         "Subtract the opening hour from the closing hour."),
        (tv.fwd, "Which weekday follows {day} once {k} {kdays} have passed?", "Count {k} {kdays} forward from {day}."),
        (tv.hours, "The train left at {a}:00 and arrived at {b}:00. How many hours did the trip take?",
         "Subtract the departure hour from the arrival hour."),
    ],
    "facts": [
        (_fact("capital"), "Travellers to {s} often visit its capital. Which city is that?", "Recall the capital."),
        (_fact("capital"), "{s} — what city serves as its capital?", "Recall the fact."),
        (_fact("opposite"), "Think of the word {s}. Which word has the reverse meaning?", "Recall the opposite word."),
        (_fact("legs"), "If you counted every leg of one {s}, what number would you reach?",
         "Recall how many legs the animal has."),
        (_fact("color"), "Picture {s} in your mind. Which color is it?", "Recall the color."),
        (_fact("young"), "A young {s} has a special name. What is that name?",
         "Recall the name of the young animal."),
        (_fact("plural"), "When there is more than one {s}, what word do we use?", "Recall the plural form."),
    ],
}

TEST_TEMPLATES = {family: [(f"{family}/t{i}", tv.make(op, q, p)) for i, (op, q, p) in enumerate(specs, 1)]
                  for family, specs in TEST_WORDINGS.items()}


def disjoint_test(n_per_family: int = 40, seed: int = 9876) -> list[dict]:
    """n_per_family rows per family (fewer only where a family runs out of distinct questions), in family
    blocks in tasks_varied.FAMILIES order, balanced over each family's templates, distinct questions."""
    rows: list[dict] = []
    for family in tv.FAMILIES:
        rows += tv.draw(family, TEST_TEMPLATES[family], n_per_family, random.Random(f"{seed}:{family}"), set())
    return rows


EXPORT_FIELDS = ("question", "plan", "refined_plan", "answer", "kind")


def write_jsonl(path: str | Path, n_per_family: int = 40, seed: int = 9876) -> int:
    """Write the split as JSONL rows {question, plan, refined_plan, answer, kind}; returns the number of rows."""
    rows = disjoint_test(n_per_family, seed)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({k: row[k] for k in EXPORT_FIELDS}, ensure_ascii=False) + "\n")
    return len(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write the template-disjoint test split as JSONL.")
    ap.add_argument("path", help="output JSONL file (read it with: mlcbuild eval --data FILE)")
    ap.add_argument("--per-family", type=int, default=40)
    ap.add_argument("--seed", type=int, default=9876)
    args = ap.parse_args(argv)
    print(f"wrote {write_jsonl(args.path, args.per_family, args.seed)} rows to {args.path}")


if __name__ == "__main__":
    main()
