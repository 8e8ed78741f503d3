"""Write the sample datasets: small tasks a few-million-parameter model learns on CPU in a minute.

Regenerate them (byte-identical for the same seed) with:

    python -m lab.data.samples.generate                        # into lab/data/samples/
    python -m lab.data.samples.generate --out-dir /tmp/samples --seed 0

The tasks come from fixed tables in several phrasings each: arithmetic, reversing and sorting
short word lists, capital cities, unit conversions, spelling words backwards and definitions
from a small glossary. Replies are one sentence in a fixed form per task, so the mapping is
learnable from a few hundred rows.

- ``sft.jsonl``: OpenAI ``messages``; a fifth open with a system prompt, ~15% have 2-3 user
  turns (follow-ups such as "What about Spain?"), and a handful are near-duplicates of earlier
  rows (changed case and punctuation, or a two-word preamble) for the dedup panel to find.
  There are no exact duplicates.
- ``preference.jsonl``: TRL explicit-prompt conversational pairs; the chosen reply is correct
  and polite, the rejected one is wrong (half), curt or off-topic.
- ``unpaired.jsonl``: TRL's unpaired conversational layout (prompt, completion, label), as a thumbs
  up/down export gives: half the replies are correct and polite (label true), half wrong, curt or
  off-topic (label false), each to its own question.
- ``prompts.jsonl``: prompts for online RL, "What is 3 + 4?" with the sum in ``ground_truth``
  ("7"): every single-digit sum but a few, a task small enough for the tiny model to learn with a
  numeric-match reward.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.data.quality import content_key
from lab.data.samples import SAMPLE_PROMPTS, SAMPLE_UNPAIRED, SAMPLES_DIR

SFT_ROWS = 400
PREFERENCE_ROWS = 300
UNPAIRED_ROWS = 40
PROMPTS_ROWS = 64
SYSTEM_SHARE = 0.2
TURN_WEIGHTS = {1: 85, 2: 10, 3: 5}  # user turns per SFT conversation
FOLLOW_UP_SHARE = 0.6  # a later turn follows up on the previous answer rather than changing task
CASE_VARIANTS = 3  # near-duplicates: the first question lowercased, its punctuation dropped
PREAMBLE_VARIANTS = 3  # near-duplicates: a two-word preamble before the first question
PREAMBLES = ("Quick question:", "Hey there,", "Please answer:")

Message = dict[str, str]


@dataclass(frozen=True)
class Exchange:
    """One question, its correct reply, a plausible wrong reply, and how a follow-up could go."""

    question: str
    answer: str
    wrong: str
    follow_up: Callable[[random.Random], Exchange] | None = None
    polite_opening: bool = True  # "Sure! " may precede the answer in a chosen reply


SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "You are a concise assistant. Answer in one sentence.",
    "You are a friendly tutor who answers clearly.",
    "Answer accurately and politely.",
)
CURT = ("No.", "Figure it out yourself.", "Not my problem.", "Look it up.", "Why would I know?", "Ask someone else.")
OFF_TOPIC = ("I like turtles.", "The weather is lovely today.", "Bananas are a good source of potassium.",
             "My favourite colour is green.", "Let's talk about football instead.", "I had soup for lunch.")
POLITE_OPENINGS = ("", "", "Sure! ", "Of course. ", "Happy to help. ")

WORDS = ("apple", "river", "stone", "cloud", "garden", "pencil", "rabbit", "window", "candle", "forest", "bridge",
         "tiger", "lemon", "rocket", "violin", "planet", "basket", "mirror", "turtle", "castle", "dragon", "island",
         "jacket", "kettle", "ladder", "meadow", "needle", "orange", "pepper", "puzzle", "saddle", "tomato",
         "wallet", "yogurt", "zebra", "anchor", "button", "carpet", "desert", "engine")
CAPITALS = (("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
            ("Portugal", "Lisbon"), ("Japan", "Tokyo"), ("China", "Beijing"), ("India", "New Delhi"),
            ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Brazil", "Brasilia"), ("Egypt", "Cairo"),
            ("Kenya", "Nairobi"), ("Mexico", "Mexico City"), ("Argentina", "Buenos Aires"), ("Russia", "Moscow"),
            ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("Poland", "Warsaw"),
            ("Greece", "Athens"), ("Turkey", "Ankara"), ("Ireland", "Dublin"), ("Austria", "Vienna"),
            ("Peru", "Lima"), ("Chile", "Santiago"), ("South Korea", "Seoul"), ("Thailand", "Bangkok"),
            ("Vietnam", "Hanoi"), ("Denmark", "Copenhagen"))
UNITS = (("kilometers", "meters", 1000), ("meters", "centimeters", 100), ("kilograms", "grams", 1000),
         ("hours", "minutes", 60), ("minutes", "seconds", 60), ("days", "hours", 24), ("weeks", "days", 7),
         ("feet", "inches", 12), ("liters", "milliliters", 1000), ("years", "months", 12))
GLOSSARY = (
    ("photosynthesis", "Photosynthesis is how plants use sunlight, water and carbon dioxide to make sugar and oxygen."),
    ("gravity", "Gravity is the force that pulls objects with mass toward each other."),
    ("a noun", "A noun is a word that names a person, place, thing or idea."),
    ("a verb", "A verb is a word that describes an action or a state, such as run or be."),
    ("an adjective", "An adjective is a word that describes a noun, such as big or red."),
    ("a prime number", "A prime number is a whole number above 1 that only 1 and itself divide evenly."),
    ("evaporation", "Evaporation is when a liquid turns into a gas, like a puddle drying in the sun."),
    ("a volcano", "A volcano is an opening in the ground where melted rock, ash and gas escape."),
    ("a planet", "A planet is a large round body that orbits a star, like Earth orbits the Sun."),
    ("a mammal", "A mammal is a warm-blooded animal with hair that feeds its young with milk."),
    ("a fraction", "A fraction is a part of a whole, written as one number over another, like 1/2."),
    ("a synonym", "A synonym is a word that means the same as another word, like big and large."),
    ("an antonym", "An antonym is a word that means the opposite of another word, like hot and cold."),
    ("an ecosystem", "An ecosystem is a community of living things and the environment they share."),
    ("an atom", "An atom is the smallest unit of a chemical element."),
    ("an algorithm", "An algorithm is a list of steps that solves a problem."),
    ("an orbit", "An orbit is the curved path an object takes around a star, planet or moon."),
    ("a molecule", "A molecule is a group of atoms held together by chemical bonds."),
    ("a continent", "A continent is one of the seven large land masses on Earth, such as Africa or Asia."),
    ("a peninsula", "A peninsula is land that is surrounded by water on three sides."),
    ("the perimeter", "The perimeter is the total distance around the edge of a shape."),
    ("a habitat", "A habitat is the natural home of an animal or plant."),
)

ADD = ("What is {a} plus {b}?", "What's {a} + {b}?", "Add {a} and {b}.", "Can you add {a} and {b} for me?",
       "Calculate {a} plus {b}.", "What do you get when you add {a} and {b}?")
SUBTRACT = ("What is {a} minus {b}?", "Subtract {b} from {a}.", "What's {a} - {b}?", "Calculate {a} minus {b}.")
MULTIPLY = ("What is {a} times {b}?", "Multiply {a} by {b}.", "What's {a} x {b}?", "Calculate {a} times {b}.")
ADD_MORE = ("Now add {d} to that.", "And if I add {d} more?", "Add {d} to the result.")
REVERSE = ("Reverse this list: {items}.", "Reverse the order of these words: {items}.",
           "Write these words in reverse order: {items}.", "Can you reverse the list {items}?")
SORT = ("Sort these words alphabetically: {items}.", "Put these words in alphabetical order: {items}.",
        "Alphabetize this list: {items}.", "Can you sort {items} in alphabetical order?")
CAPITAL = ("What is the capital of {country}?", "Which city is the capital of {country}?",
           "Name the capital of {country}.", "Tell me the capital city of {country}.",
           "What's the capital city of {country}?")
CAPITAL_MORE = ("What about {country}?", "And the capital of {country}?", "And {country}?")
CONVERT = ("How many {dst} are in {n} {src}?", "Convert {n} {src} to {dst}.", "What is {n} {src} in {dst}?",
           "{n} {src} is how many {dst}?")
CONVERT_MORE = ("And {n} {src}?", "What about {n} {src}?")
BACKWARDS = ("Spell the word '{word}' backwards.", "How do you spell '{word}' backwards?",
             "Write '{word}' in reverse, letter by letter.", "What is '{word}' spelled backwards?")
DEFINE = ("What is {term}?", "Define {bare}.", "What does '{bare}' mean?", "Give me a short definition of {bare}.",
          "Explain what {term} is.")
THANKS = ("Thank you!", "Thanks!", "Great, thanks.")


def wrong_number(rng: random.Random, right: int) -> int:
    """Off by a little or by ten; never equal to ``right`` (which is positive)."""
    return max(0, right + rng.choice((-10, -3, -2, -1, 1, 2, 3, 10)))


def addition(rng: random.Random) -> Exchange:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    return sum_exchange(rng.choice(ADD).format(a=a, b=b), a, b, rng)


def sum_exchange(question: str, a: int, b: int, rng: random.Random) -> Exchange:
    total = a + b
    return Exchange(question, f"{a} plus {b} is {total}.", f"{a} plus {b} is {wrong_number(rng, total)}.",
                    follow_up=lambda r: add_more(r, total))


def add_more(rng: random.Random, total: int) -> Exchange:
    d = rng.randint(2, 20)
    return sum_exchange(rng.choice(ADD_MORE).format(d=d), total, d, rng)


def subtraction(rng: random.Random) -> Exchange:
    a = rng.randint(10, 99)
    b = rng.randint(1, a - 1)
    return Exchange(rng.choice(SUBTRACT).format(a=a, b=b), f"{a} minus {b} is {a - b}.",
                    f"{a} minus {b} is {wrong_number(rng, a - b)}.")


def multiplication(rng: random.Random) -> Exchange:
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    return Exchange(rng.choice(MULTIPLY).format(a=a, b=b), f"{a} times {b} is {a * b}.",
                    f"{a} times {b} is {wrong_number(rng, a * b)}.")


def reverse_list(rng: random.Random) -> Exchange:
    words = rng.sample(WORDS, rng.randint(3, 5))
    return Exchange(rng.choice(REVERSE).format(items=", ".join(words)),
                    f"Here is the list reversed: {', '.join(reversed(words))}.",
                    f"Here is the list reversed: {', '.join(words)}.")


def sort_list(rng: random.Random) -> Exchange:
    words = rng.sample(WORDS, rng.randint(3, 5))
    return Exchange(rng.choice(SORT).format(items=", ".join(words)),
                    f"In alphabetical order: {', '.join(sorted(words))}.",
                    f"In alphabetical order: {', '.join(sorted(words, reverse=True))}.")


def capital(rng: random.Random, phrasings: tuple[str, ...] = CAPITAL) -> Exchange:
    (country, city), (_, other_city) = rng.sample(CAPITALS, 2)
    return Exchange(rng.choice(phrasings).format(country=country), f"The capital of {country} is {city}.",
                    f"The capital of {country} is {other_city}.",
                    follow_up=lambda r: capital(r, CAPITAL_MORE))


def conversion(rng: random.Random, phrasings: tuple[str, ...] = CONVERT,
               unit: tuple[str, str, int] | None = None) -> Exchange:
    src, dst, factor = unit or rng.choice(UNITS)
    n = rng.randint(2, 12)
    return Exchange(rng.choice(phrasings).format(n=n, src=src, dst=dst), f"{n} {src} is {n * factor} {dst}.",
                    f"{n} {src} is {n * factor + rng.choice((-factor, factor, 1, 10))} {dst}.",
                    follow_up=lambda r: conversion(r, CONVERT_MORE, (src, dst, factor)))


def backwards(rng: random.Random) -> Exchange:
    word = rng.choice(WORDS)
    return Exchange(rng.choice(BACKWARDS).format(word=word), f"'{word}' spelled backwards is '{word[::-1]}'.",
                    f"'{word}' spelled backwards is '{word}'.")


def definition(rng: random.Random) -> Exchange:
    (term, meaning), (_, other_meaning) = rng.sample(GLOSSARY, 2)
    bare = term.split(" ", 1)[-1] if term.startswith(("a ", "an ", "the ")) else term
    return Exchange(rng.choice(DEFINE).format(term=term, bare=bare), meaning, other_meaning)


def thanks(rng: random.Random) -> Exchange:
    return Exchange(rng.choice(THANKS), "You're welcome!", rng.choice(CURT), polite_opening=False)


TASKS: tuple[Callable[[random.Random], Exchange], ...] = (
    addition, subtraction, multiplication, reverse_list, sort_list, capital, conversion, backwards, definition)


def next_exchange(rng: random.Random, previous: Exchange) -> Exchange:
    """A later turn: a follow-up on the last answer, a thank-you, or a new task."""
    if previous.follow_up and rng.random() < FOLLOW_UP_SHARE:
        return previous.follow_up(rng)
    if rng.random() < 0.2:
        return thanks(rng)
    return rng.choice(TASKS)(rng)


def opening(rng: random.Random) -> list[Message]:
    return [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}] if rng.random() < SYSTEM_SHARE else []


def conversation(rng: random.Random, turns: int) -> tuple[list[Message], Exchange]:
    """``turns - 1`` answered exchanges, and the exchange whose question comes next."""
    messages = opening(rng)
    exchange = rng.choice(TASKS)(rng)
    for _ in range(turns - 1):
        messages += [{"role": "user", "content": exchange.question}, {"role": "assistant", "content": exchange.answer}]
        exchange = next_exchange(rng, exchange)
    return messages, exchange


def sft_row(rng: random.Random) -> dict[str, Any]:
    turns = rng.choices(list(TURN_WEIGHTS), weights=list(TURN_WEIGHTS.values()))[0]
    messages, last = conversation(rng, turns)
    messages += [{"role": "user", "content": last.question}, {"role": "assistant", "content": last.answer}]
    return {"messages": messages}


def preference_row(rng: random.Random) -> dict[str, Any]:
    messages, last = conversation(rng, 2 if rng.random() < 0.1 else 1)
    draw = rng.random()
    rejected = last.wrong if draw < 0.5 else rng.choice(CURT) if draw < 0.75 else rng.choice(OFF_TOPIC)
    return {"prompt": messages + [{"role": "user", "content": last.question}],
            "chosen": [{"role": "assistant", "content": polite(rng, last)}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def bad_reply(rng: random.Random, exchange: Exchange) -> str:
    """A reply nobody wants: wrong half the time, else curt or off-topic."""
    draw = rng.random()
    return exchange.wrong if draw < 0.5 else rng.choice(CURT) if draw < 0.75 else rng.choice(OFF_TOPIC)


def unpaired_row(rng: random.Random, desirable: bool) -> dict[str, Any]:
    exchange = rng.choice(TASKS)(rng)
    reply = polite(rng, exchange) if desirable else bad_reply(rng, exchange)
    return {"prompt": [{"role": "user", "content": exchange.question}],
            "completion": [{"role": "assistant", "content": reply}], "label": desirable}


def unpaired_rows(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """``n`` rows, half of them desirable, in a shuffled order, no question asked twice."""
    labels = [i < n // 2 for i in range(n)]
    rng.shuffle(labels)
    rows: list[dict[str, Any]] = []
    asked: set[str] = set()
    for desirable in labels:
        row = unpaired_row(rng, desirable)
        while row["prompt"][0]["content"] in asked:
            row = unpaired_row(rng, desirable)
        asked.add(row["prompt"][0]["content"])
        rows.append(row)
    return rows


def prompt_rows(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """``n`` of the 81 sums of two digits from 1 to 9, in a shuffled order, each with its answer."""
    pairs = rng.sample([(a, b) for a in range(1, 10) for b in range(1, 10)], n)
    return [{"prompt": [{"role": "user", "content": f"What is {a} + {b}?"}], "ground_truth": str(a + b)}
            for a, b in pairs]


def polite(rng: random.Random, exchange: Exchange) -> str:
    return (rng.choice(POLITE_OPENINGS) if exchange.polite_opening else "") + exchange.answer


def unique_rows(rng: random.Random, make: Callable[[random.Random], dict[str, Any]], n: int,
                key: Callable[[dict[str, Any]], bytes]) -> list[dict[str, Any]]:
    """``n`` rows from ``make``, skipping any whose key was seen: the tables are small, repeats happen."""
    rows: list[dict[str, Any]] = []
    seen: set[bytes] = set()
    while len(rows) < n:
        row = make(rng)
        if key(row) not in seen:
            seen.add(key(row))
            rows.append(row)
    return rows


def first_user_index(messages: list[Message]) -> int:
    return 1 if messages[0]["role"] == "system" else 0


def case_variant(row: dict[str, Any]) -> dict[str, Any]:
    messages = [dict(m) for m in row["messages"]]
    first = messages[first_user_index(messages)]
    first["content"] = first["content"].lower().rstrip("?.!")
    return {"messages": messages}


def preamble_variant(row: dict[str, Any], preamble: str) -> dict[str, Any]:
    messages = [dict(m) for m in row["messages"]]
    first = messages[first_user_index(messages)]
    first["content"] = f"{preamble} {first['content'][:1].lower()}{first['content'][1:]}"
    return {"messages": messages}


def plant_near_duplicates(rng: random.Random, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert variants of a few rows somewhere after their originals.

    Preambles go on rows of 25+ words with no system prompt: two words added at the very start
    of the text keep the 5-gram Jaccard above 0.9 (in the middle they would break more shingles).
    """
    long_rows = [i for i, row in enumerate(rows) if row["messages"][0]["role"] == "user"
                 and sum(len(m["content"].split()) for m in row["messages"]) >= 25]
    originals = rng.sample(range(len(rows)), CASE_VARIANTS) + rng.sample(long_rows, PREAMBLE_VARIANTS)
    variants = [case_variant(rows[i]) for i in originals[:CASE_VARIANTS]]
    variants += [preamble_variant(rows[i], p) for i, p in zip(originals[CASE_VARIANTS:], PREAMBLES)]
    placed = list(rows)
    for original, variant in sorted(zip(originals, variants), key=lambda pair: -pair[0]):
        placed.insert(rng.randint(original + 1, len(rows)), variant)
    return placed


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_samples(out_dir: Path = SAMPLES_DIR, seed: int = 0) -> tuple[Path, Path]:
    """Write ``sft.jsonl`` and ``preference.jsonl`` into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    planted = CASE_VARIANTS + PREAMBLE_VARIANTS
    sft = plant_near_duplicates(rng, unique_rows(rng, sft_row, SFT_ROWS - planted, content_key))
    preference = unique_rows(rng, preference_row, PREFERENCE_ROWS, lambda row: content_key({"prompt": row["prompt"]}))
    sft_path, preference_path = out_dir / "sft.jsonl", out_dir / "preference.jsonl"
    write_jsonl(sft_path, sft)
    write_jsonl(preference_path, preference)
    return sft_path, preference_path


def write_rl_samples(out_dir: Path = SAMPLES_DIR, seed: int = 0) -> tuple[Path, Path]:
    """Write ``unpaired.jsonl`` (for KTO) and ``prompts.jsonl`` (for GRPO/RLOO) into ``out_dir``; their own random
    stream, so that ``write_samples``'s files stay as they were."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"rl-{seed}")
    unpaired, prompts = out_dir / SAMPLE_UNPAIRED.name, out_dir / SAMPLE_PROMPTS.name
    write_jsonl(unpaired, unpaired_rows(rng, UNPAIRED_ROWS))
    write_jsonl(prompts, prompt_rows(rng, PROMPTS_ROWS))
    return unpaired, prompts


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the lab's sample datasets (SFT, preference, unpaired, "
                                     "prompts).")
    parser.add_argument("--out-dir", type=Path, default=SAMPLES_DIR, help="directory for the JSONL files")
    parser.add_argument("--seed", type=int, default=0, help="seed for every random choice")
    args = parser.parse_args()
    for path in (*write_samples(args.out_dir, args.seed), *write_rl_samples(args.out_dir, args.seed)):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
