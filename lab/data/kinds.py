"""The data-kind registry: what a dataset version can hold, one entry per kind.

Everything that lists a kind's fields derives them from here: saving and reading versions (the Parquet
columns), the store's check on ``datasets.kind``, import (the fields a column can be mapped to), the CLI's
``--kind``, and the columns a trainer takes (``lab.train.datasets.training_rows``). Adding a kind is an entry
here plus, where its rows need them, its checks (``lab.data.validate``) and its formats (``lab.data.formats``).

Beside the fields, an entry says what identifies a row (``dedup``: exact dedup's key, near dedup's text) and
which replies the statistics measure (``replies``); the functions below read a row by its kind (``kind_of``
tells it from the row's fields) for dedup, search, statistics and display. A row's checks are in
``lab.data.kind_checks``.

This module is a leaf: it imports nothing from the lab but ``lab.errors`` and ``lab.data.canonical`` (a leaf),
so ``lab.config`` can take its names for the ``kind`` choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.data.canonical import message_text
from lab.errors import LabError

# How a field is stored: a list of chat messages, a string, a boolean, or an optional number (null where a row has
# none: a preference pair's margin exists only where graded votes gave it).
MESSAGES, TEXT, FLAG, NUMBER = "messages", "text", "flag", "number"
RESPONSE = "response"  # an SFT conversation's last reply, as the statistics name it
# How a label (a FLAG) reads to people, in the row browser, the CLI and the statistics.
LABEL_WORDS = {True: "👍 desirable", False: "👎 undesirable"}


@dataclass(frozen=True)
class DataKind:
    name: str
    words: str  # the kind in a sentence: "SFT data (conversations)"
    fields: dict[str, str]  # canonical field -> MESSAGES | TEXT | FLAG, in stored order
    trainer_fields: tuple[str, ...]  # the columns TRL's trainers for this kind take (TRL's conversational layout)
    mapping_fields: tuple[str, ...]  # the fields a file's column can be mapped to by hand (--map COLUMN=FIELD)
    required: tuple[str, ...]  # of mapping_fields: what a hand mapping must give
    rows: str = ""  # its rows in a few words, plural, for messages: "preference pairs"
    # The fields whose content identifies a row: equal in all of them (whitespace aside), rows are exact duplicates;
    # their text is what near dedup compares (rows whose flags differ are never near duplicates of each other).
    dedup: tuple[str, ...] = ()
    # The replies the statistics measure beside the prompt, in order (the first is the reply, a second the
    # rejected one). RESPONSE names a conversation's last reply (a kind with no prompt field keeps the whole
    # conversation in one field); a text field is measured where it is not empty.
    replies: tuple[str, ...] = ()


KINDS: dict[str, DataKind] = {
    "sft": DataKind(
        "sft", "SFT data (conversations)", {"messages": MESSAGES, "tools": TEXT}, ("messages", "tools"),
        ("prompt", "response", "system", "context", "messages", "text", "tools"), ("prompt", "response"),
        rows="SFT conversations", dedup=("messages",), replies=(RESPONSE,)),
    "preference": DataKind(
        "preference", "preference data (chosen/rejected pairs)",
        {"prompt": MESSAGES, "chosen": MESSAGES, "rejected": MESSAGES, "margin": NUMBER},
        ("prompt", "chosen", "rejected"),
        ("prompt", "chosen", "rejected", "system"), ("chosen", "rejected"),
        rows="preference pairs", dedup=("prompt", "chosen", "rejected"), replies=("chosen", "rejected")),
    "unpaired": DataKind(
        "unpaired", "unpaired preference data (one completion, labelled desirable or not)",
        {"prompt": MESSAGES, "completion": MESSAGES, "label": FLAG}, ("prompt", "completion", "label"),
        ("prompt", "completion", "label", "system"), ("prompt", "completion", "label"),
        rows="unpaired replies (each labelled desirable or not)", dedup=("prompt", "completion", "label"),
        replies=("completion",)),
    "prompts": DataKind(
        "prompts", "prompts (for online RL: optional reference answers and metadata)",
        {"prompt": MESSAGES, "answer": TEXT, "meta": TEXT}, ("prompt", "answer", "meta"),
        ("prompt", "answer", "system", "meta"), ("prompt",),
        rows="prompts for online RL", dedup=("prompt", "answer"), replies=("answer",)),
}
NAMES = tuple(KINDS)


def kind(name: str) -> DataKind:
    try:
        return KINDS[name]
    except KeyError:
        raise LabError(f"Unknown data kind '{name}'; kinds: {', '.join(NAMES)}.") from None


FIELD_TYPES = {f: how for k in KINDS.values() for f, how in k.fields.items()}  # a field has one type in every kind
# Every field that identifies a row of some kind, in the registry's order: the order content keys hash them in.
KEY_FIELDS = tuple(dict.fromkeys(f for k in KINDS.values() for f in k.dedup))


def kind_of(data: dict[str, Any]) -> DataKind:
    """The kind of a canonical row, told by its fields: all it has are the kind's, and it has those that identify a
    row (an SFT row built before ``tools`` existed is SFT still)."""
    found = next((k for k in KINDS.values() if set(k.dedup) <= set(data) <= set(k.fields)), None)
    if found is None:
        raise LabError(f"A row with fields {', '.join(sorted(data)) or '(none)'} is of no data kind; kinds: "
                       + "; ".join(f"{k.name}: {', '.join(k.fields)}" for k in KINDS.values()) + ".")
    return found


def field_texts(data: dict[str, Any], field: str) -> list[str]:
    """The texts of one field of a row: its messages' contents, its text (if any), or nothing for a flag."""
    value = data.get(field)
    if isinstance(value, list):
        return [message_text(message) for message in value]
    return [value] if isinstance(value, str) and value else []


def row_text(data: dict[str, Any]) -> str:
    """The text that identifies a row, in field order: what near dedup compares (the dedup fields' texts)."""
    return "\n".join(text for field in kind_of(data).dedup for text in field_texts(data, field))


def row_parts(data: dict[str, Any]) -> tuple[str, str]:
    """What near dedup compares, in two parts: what is asked (the prompt's turns) and what is answered (the replies:
    a reply field's text, an assistant's turn). Rows are near duplicates only when both parts are alike, so several
    replies to one prompt (preference comparisons, labelled completions, samples) all stay, and so do different
    questions with one stock answer. System prompts are left out: one long system prompt shared by every row made
    every row look alike when the texts were compared whole."""
    asks: list[str] = []
    replies: list[str] = []
    row_kind = kind_of(data)
    for field in row_kind.dedup:
        value = data.get(field)
        if isinstance(value, list):
            for message in value:
                if message.get("role") != "system":
                    answered = field in row_kind.replies or message.get("role") == "assistant"
                    (replies if answered else asks).append(message_text(message))
        else:
            (replies if field in row_kind.replies else asks).extend(field_texts(data, field))
    return "\n".join(asks), "\n".join(replies)


def search_text(data: dict[str, Any]) -> str:
    """All of a row's text, for searching it: every field's, its metadata included."""
    return "\n".join(text for field in kind_of(data).fields for text in field_texts(data, field))


def flags(data: dict[str, Any]) -> tuple[bool, ...]:
    """A row's flags (an unpaired row's label): rows that differ in them are never near duplicates."""
    return tuple(bool(data[f]) for f, how in kind_of(data).fields.items() if how == FLAG)


def reply_texts(data: dict[str, Any], reply: str) -> list[str] | None:
    """One reply side of a row as the statistics measure it (``DataKind.replies``); None where the row has none
    (an empty reference answer)."""
    if reply == RESPONSE:
        return field_texts({"messages": data["messages"][-1:]}, "messages")
    texts = field_texts(data, reply)
    return texts if texts or FIELD_TYPES[reply] == MESSAGES else None
