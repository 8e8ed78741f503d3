"""Checks on canonical rows of every data kind (``lab.data.kinds``), and the readings of the new kinds' values.

An ``unpaired`` row is a prompt that ends with the user's turn, one assistant completion that is not empty, and a
boolean label (desirable or not). A ``prompts`` row is a prompt that ends with the user's turn, a reference answer
(text, "" when there is none) and ``meta``: the file's other columns as a JSON object, in text (``"{}"`` when there
are none), which reward functions receive as they are. Each check raises ``RowProblem(field, reason)``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from lab.data.canonical import Kind, Message
from lab.data.kinds import kind_of
from lab.data.readers import json_problem
from lab.data.validate import (RowProblem, check_conversation, check_preference, check_reply, check_sft, normalise_messages,
                               require, text_of)

# How people write a label, lowercased: TRL's booleans, 1/0 (and 1.0/0.0/-1.0, as pandas writes a label column that
# held a missing value, so became float), yes/no, thumbs (words and emoji), KTO's own words, and the words feedback
# exports use for a good or bad reply.
LABELS = {
    True: ("true", "1", "1.0", "yes", "desirable", "up", "thumbs_up", "👍", "+1", "good", "positive", "pos",
           "accepted", "chosen", "correct", "like", "liked", "helpful"),
    False: ("false", "0", "0.0", "no", "undesirable", "down", "thumbs_down", "👎", "-1", "-1.0", "bad", "negative",
            "neg", "rejected", "incorrect", "wrong", "dislike", "disliked", "unhelpful"),
}
LABEL_OF = {word: value for value, words in LABELS.items() for word in words}
LABEL_WORDS = "true/false, 1/0 (or -1), yes/no, good/bad, up/down, 👍/👎 or desirable/undesirable"
# Emoji variants that mean the same thumb: skin tones and the emoji-presentation selector.
EMOJI_VARIANTS = re.compile("[\U0001F3FB-\U0001F3FF\uFE0F]")


def parse_label(value: Any, field: str = "label") -> bool:
    """A desirable (True) or undesirable (False) label from the ways files write one; anything else is a problem
    naming the value and what is accepted."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (-1, 0, 1):
        return value == 1
    if isinstance(value, str):
        word = EMOJI_VARIANTS.sub("", value).strip().lower()
        if word in LABEL_OF:
            return LABEL_OF[word]
    shown = "an empty value" if value in ("", None) else repr(value)
    raise RowProblem(field, f"{shown} is not a label: use {LABEL_WORDS}")


def answer_text(value: Any, field: str = "answer") -> str:
    """A reference answer as text: a string as it is, a number as written, nothing as ""."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        raise RowProblem(field, f"expected the reference answer as text or a number, got a "
                                f"{'list' if isinstance(value, list) else 'JSON object'}")
    return text_of(value, field).strip()


def meta_text(meta: dict[str, Any]) -> str:
    """A row's metadata as the JSON object text ``prompts`` rows keep (keys in the file's order): strict JSON, so NaN
    is null, and binary values (an image's bytes) are left out, as reward functions read text, and their Python
    repr would add kilobytes to every row."""
    return json.dumps(json_safe(meta), ensure_ascii=False, default=str)


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as None and bytes (at any depth) dropped."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items() if not isinstance(v, (bytes, bytearray))}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value if not isinstance(v, (bytes, bytearray))]
    return value


def meta_object(value: Any, field: str = "meta") -> dict[str, Any]:
    """A metadata value (a JSON object, or its text) as a dict; "" and null read as no metadata."""
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise RowProblem(field, f"not JSON: {json_problem(err)} at column {err.colno}") from None
    if not isinstance(value, dict):
        raise RowProblem(field, f"expected a JSON object of metadata, got {type(value).__name__}")
    return value


def check_unpaired(prompt: list[Message], completion: list[Message], label: Any,
                   fields: tuple[str, str, str] = ("prompt", "completion", "label")) -> None:
    check_conversation(prompt, fields[0], ends_with="user")
    check_reply(completion, fields[1])
    if not isinstance(label, bool):
        raise RowProblem(fields[2], f"expected true or false, got {label!r}")


def check_prompts(prompt: list[Message], answer: Any, meta: Any) -> None:
    check_conversation(prompt, "prompt", ends_with="user")
    if not isinstance(answer, str):
        raise RowProblem("answer", f"expected text (\"\" for no reference answer), got {type(answer).__name__}")
    if not isinstance(meta, str):
        raise RowProblem("meta", f"expected a JSON object as text, got {type(meta).__name__}")
    meta_object(meta)


def messages(data: dict[str, Any], field: str) -> list[Message]:
    return normalise_messages(require(data, field), field)


# Each kind's check of a canonical row, by kind name (a test holds it to the registry: every kind has one).
CHECKS: dict[Kind, Callable[[dict[str, Any]], None]] = {
    "sft": lambda d: check_sft(messages(d, "messages"), "messages", d.get("tools")),
    "preference": lambda d: check_preference(*(messages(d, f) for f in ("prompt", "chosen", "rejected"))),
    "unpaired": lambda d: check_unpaired(messages(d, "prompt"), messages(d, "completion"), require(d, "label")),
    "prompts": lambda d: check_prompts(messages(d, "prompt"), d.get("answer"), d.get("meta")),
}


def check_row(data: dict[str, Any], kind: Kind | None = None) -> None:
    """Check a row already in canonical form (one built from votes, one read back) as imports check theirs; the
    kind is told by the row's fields when not given."""
    CHECKS[kind or kind_of(data).name](data)
