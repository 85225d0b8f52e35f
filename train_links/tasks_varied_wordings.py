"""The wordings of the varied training templates (train_links.tasks_varied), as data.

Each entry is (op, question, plan): op names a computation in tasks_varied (it draws the numbers and does the
work); question and plan are format strings over the op's values and the shared content words ({name}, {name2},
{name3}, {item}, {items}, {box}, {boxes}). VAL_WORDINGS are used for validation rows only.
"""

WORDINGS = {
    "arithmetic": [
        ("add", "{name} had {a} {items}. A friend gave {name} {b} more. What is the total number of {items} {name} "
                "has?", "Add the {items} from the friend to the {items} {name} had."),
        ("add", "Find the total: {a} {items} in one pile and {b} {items} in another.", "Add the two piles together."),
        ("sub", "There were {a} {items} on the table. {name} took {b} of them — how many remain?",
         "Subtract the {items} taken from the {items} on the table."),
        ("sub", "{name} needs {a} {items} and already has {b}. How many more {items} does {name} need?",
         "Subtract the {items} {name} has from the {items} {name} needs."),
        ("mul", "Each of {a} tables has {b} {items} on it. How many {items} are on the tables altogether?",
         "Multiply the number of tables by the {items} on each table."),
        ("mul", "Compute how many {items} {name} has if {name} has {a} rows of {b} {items}.",
         "Multiply the rows by the {items} in each row."),
        ("div", "{t} {items} are packed into {boxes} of {b}. How many {boxes} are filled?",
         "Divide the {items} by the number that fit in one {box}."),
        ("div", "Split {t} {items} evenly between {b} children. How many {items} does each child get?",
         "Divide the {items} by the number of children."),
        ("add", "Put {b} more {items} into a {box} that already holds {a}. How many {items} are in the {box} now?",
         "Add the new {items} to the {items} already in the {box}."),
    ],
    "multi_step": [
        ("add_sub", "{name} starts with {a} {items}, finds {b} more and then loses {c}. How many {items} does {name} "
                    "have at the end?", "Add the found ones, then subtract the lost ones."),
        ("add_sub", "Find the number of {items} left: {a} at first, {b} added, {c} used up.",
         "Add the added ones, then subtract the ones used up."),
        ("mul_add", "What is the total number of {items} in {a} {boxes} of {b} plus {c} loose {items}?",
         "Multiply the {boxes} by the size of a {box}, then add the loose ones."),
        ("mul_add", "{name} gets {c} {items} from {name2} after buying {a} {boxes} of {b} {items} each. How many "
                    "{items} does {name} have now?",
         "Multiply the {boxes} by the {items} in each, then add the ones from {name2}."),
        ("mul_sub", "{name} fills {a} {boxes} with {b} {items} each, then {c} {items} go missing — how many remain?",
         "Multiply the {boxes} by the {items} in each, then subtract the missing ones."),
        ("mul_sub", "Work out how many {items} are left when {c} are taken from {a} rows of {b}.",
         "Multiply the rows by the {items} in each row, then subtract the ones taken."),
        ("sub_add", "{name} has {a} {items}, gives {b} away, then gets {c} back. How many {items} does {name} have?",
         "Subtract the ones given away, then add the ones that came back."),
        ("sub_add", "From {a} {items}, {name} sells {b} and then buys {c}. What is the number of {items} now?",
         "Subtract the sold ones, then add the bought ones."),
        ("add_add", "{name} has {a} {items}. {name2} gives {b} more and {name3} gives {c} more. How many {items} "
                    "does {name} have in total?", "Add the ones from {name2}, then add the ones from {name3}."),
    ],
    "comparison": [
        ("larger", "{a} or {b}: which one is bigger?", "Compare the two numbers."),
        ("smaller", "Find the smaller of the two numbers {a} and {b}.", "Compare the two numbers."),
        ("larger", "Of {a} and {b}, which is the greater number?", "Compare the two numbers and keep the greater."),
        ("diff", "{name} has {hi} {items} and {name2} has {lo}. How many more {items} does {name} have than "
                 "{name2}?", "Subtract {name2}'s count from {name}'s count."),
        ("diff", "{name} scored {a} points and {name2} scored {b} points. What is the difference between their "
                 "scores?", "Subtract the lower score from the higher score."),
        ("smaller", "Which is less: {a} or {b}?", "Compare the two numbers."),
        ("diff", "By how much is {hi} larger than {lo}?", "Subtract the smaller number from the larger one."),
        ("more_name", "{name} has {a} {items} and {name2} has {b} {items}. Who has more {items}?",
         "Compare the two counts and name the one with more."),
        ("diff", "{name} is {a} years old and {name2} is {b} years old. How many years older is the older one?",
         "Subtract the younger age from the older age."),
    ],
    "counting": [
        ("count_words", "Count the words: {list}.", "Count the words one by one."),
        ("count_words", "Here is a list — {list}. How many words does it contain?",
         "Go through the list and number each word."),
        ("occ_words", "Count how often {target} occurs in: {list}.", "Go through the list and count each {target}."),
        ("occ_words", "In the list {list}, how many times is {target} written?",
         "Mark every {target} in the list and count the marks."),
        ("count_names", "{list_and} came to the party. How many people came?", "Count the names one by one."),
        ("count_words", "{list_semi} — how many words is that?", "Count the words one by one."),
        ("occ_words", "The word list is: {list}. Find the number of times {target} shows up.",
         "Go through the list and count each {target}."),
        ("count_things", "{name} packed {list_a}. How many things did {name} pack?", "Count the things one by one."),
        ("occ_names", "Votes: {list}. How many votes did {target} get?", "Count each vote for {target}."),
    ],
    "pattern": [
        ("seq_mix", "Continue the sequence: {seq}, ?", "{rule}"),
        ("seq_mix", "Find the next number in {seq}.", "{rule}"),
        ("seq_mix", "The numbers {seq} follow a rule. What is the next one?", "{rule}"),
        ("seq_mix", "{seq}, __ — fill in the blank.", "{rule}"),
        ("seq_mix", "What is the fifth number of the sequence {seq}?", "{rule}"),
        ("seq_mix", "{name} counts: {seq}. What number does {name} say next?", "{rule}"),
        ("seq_mix", "A pattern starts {seq_then}. Which number follows?", "{rule}"),
        ("seq_mix", "Give the number after {last} in the series {seq}.", "{rule}"),
        ("seq_double", "Each number is twice the one before: {seq}. What comes next?", "Double the last number."),
    ],
    "units": [
        ("to_small", "Convert {n} {big} to {small}.", "One {one} is {f} {small}; multiply."),
        ("to_small", "{n} {big} is how many {small}?", "One {one} is {f} {small}; multiply."),
        ("to_small", "What is {n} {big} in {small}?", "One {one} is {f} {small}; multiply."),
        ("to_big", "How many {big} make {t} {small}?", "One {one} is {f} {small}; divide."),
        ("to_small", "{name} measured {n} {big}. Write that amount in {small}.", "One {one} is {f} {small}; multiply."),
        ("to_small", "Express {n} {big} in {small}.", "One {one} is {f} {small}; multiply."),
        ("to_big", "Convert {t} {small} into {big}.", "One {one} is {f} {small}; divide."),
        ("to_small", "If one {one} equals {f} {small}, how many {small} are in {n} {big}?",
         "Multiply the {big} by {f}."),
        ("to_small", "Find the number of {small} in {n} {big}.", "One {one} is {f} {small}; multiply."),
    ],
    "table": [
        ("lookup", "Scores — {tab_colon}. What did {x} score?", "Find the row for {x}."),
        ("top", "{tab_scored}. Which player has the highest score?", "Find the largest score and its name."),
        ("total", "Find the total of the {stat} in this table: {tab}.", "Add all the {stat}."),
        ("bottom", "Table of {stat}: {tab}. Who has the fewest {stat}?",
         "Find the smallest number in the table and its name."),
        ("lookup", "Look up {x} in this table and give the number of {stat}: {tab_colon}.", "Find the row for {x}."),
        ("total", "{tab_got}. How many {stat} did they get altogether?", "Add all the {stat}."),
        ("top", "Who is first in this table of {stat}: {tab_colon}?",
         "Find the largest number in the table and its name."),
        ("lookup", "In the table {tab}, what number of {stat} is next to {x}?", "Find the row for {x}."),
        ("bottom", "{tab_colon} ({stat}). Whose score is the lowest?", "Find the smallest score and its name."),
    ],
    "dates": [
        ("fwd", "If today is {day}, what day is it {k} {kdays} from now?", "Count {k} {kdays} forward from {day}."),
        ("back", "{k} {kdays} before {day} — which day of the week is that?", "Count {k} {kdays} back from {day}."),
        ("fwd", "It is {day}. Which day comes {k} {kdays} later?", "Count {k} {kdays} forward from {day}."),
        ("back", "What day was it {k} {kdays} before {day}?", "Count {k} {kdays} back from {day}."),
        ("fwd", "{name}'s party is {k} {kdays} after {day}. On what day is the party?",
         "Count {k} {kdays} forward from {day}."),
        ("hours", "A library is open from {a}:00 to {b}:00. For how many hours is it open?",
         "Subtract the opening hour from the closing hour."),
        ("hours", "{name} starts work at {a}:00 and finishes at {b}:00. How many hours does {name} work?",
         "Subtract the start hour from the finish hour."),
        ("fwd1", "What day is tomorrow if today is {day}?", "Count 1 day forward from {day}."),
        ("hours", "Find the number of hours between {a}:00 and {b}:00.",
         "Subtract the earlier hour from the later hour."),
    ],
}

VAL_WORDINGS = {
    "arithmetic": [
        ("sub", "After giving {b} {items} to {name2}, how many {items} does {name} keep out of {a}?",
         "Subtract the {items} given to {name2} from the {items} {name} had."),
        ("mul", "A {box} holds {b} {items}. {name} fills {a} {boxes}. How many {items} is that?",
         "Multiply the {boxes} by the {items} in each {box}."),
    ],
    "multi_step": [
        ("mul_add", "{a} friends each bring {b} {items}, and {name} brings {c} extra. How many {items} are there?",
         "Multiply the friends by the {items} each brings, then add {name}'s extra ones."),
        ("add_sub", "Before giving {c} {items} to {name2}, {name} had {a} and found {b} more. How many {items} does "
                    "{name} have after giving?", "Add the found ones, then subtract the ones given to {name2}."),
    ],
    "comparison": [
        ("smaller", "Pick the smaller number between {a} and {b}.", "Compare the two numbers and keep the smaller."),
        ("fewer_name", "{name} owns {a} {items}; {name2} owns {b}. Who owns fewer {items}?",
         "Compare the two counts and name the one with fewer."),
    ],
    "counting": [
        ("count_words", "What is the number of words in the list {list}?", "Count the words one by one."),
        ("occ_words", "{list}. Among these words, how many are {target}?",
         "Go through the words and count each {target}."),
    ],
    "pattern": [
        ("seq_mix", "Look at {seq}. Predict the next term.", "{rule}"),
        ("seq_mix", "What comes after {seq}?", "{rule}"),
    ],
    "units": [
        ("to_small", "Change {n} {big} into {small}. What number do you get?", "One {one} is {f} {small}; multiply."),
        ("to_big", "{t} {small} — how many {big} is that?", "One {one} is {f} {small}; divide."),
    ],
    "table": [
        ("total", "Here are the {stat}: {tab}. What is their sum?", "Add all the {stat}."),
        ("top", "Player {stat}: {tab_colon}. Name the leader.", "Find the largest number in the table and its name."),
    ],
    "dates": [
        ("back", "Name the day of the week {k} {kdays} earlier than {day}.", "Count {k} {kdays} back from {day}."),
        ("hours", "The pool opens at {a}:00 and shuts at {b}:00. How many hours is that?",
         "Subtract the opening hour from the closing hour."),
    ],
}
