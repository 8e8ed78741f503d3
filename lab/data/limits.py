"""How much one import may read, so that a gzip bomb or an enormous file is refused with a sentence
instead of taking the machine's memory.

Reading costs several times the text in memory (the bytes, then Python strings, dicts and canonical
rows): about 3 times for JSONL and CSV and 4 for a JSON document, measured on 100 MB of chat rows;
and about 1.2 KiB a row however short the rows are. The defaults, 1 GiB and 2 million rows, keep an
import within 3 to 4 GiB, and are far above the sets people fine-tune on (Alpaca's 52,000 rows,
Dolly's 15,000, HH-RLHF's 161,000). Bigger files are read after setting the environment variables
(LAB_MAX_IMPORT_BYTES, LAB_MAX_IMPORT_ROWS) or, on the command line, the flags higher.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from lab.errors import LabError

GIB = 1024**3
UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": GIB, "t": 1024**4}
SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
# Rows nest a few levels (a list of messages, each an object, maybe a list of content parts). What reads
# them walks values recursively, and Python stops at about 1,000 levels with a RecursionError, so deeper
# values are refused when read. Not a setting: no real dataset comes near it, and Python caps it anyway.
MAX_DEPTH = 100


def parse_size(text: str) -> int:
    """``"4GiB"``, ``"500M"``, ``"1.5g"`` or a plain number of bytes → bytes (units are powers of 1024)."""
    match = SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(text)
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


def parse_count(text: str) -> int:
    return int(text.strip().replace("_", "").replace(",", ""))


def show_size(n: int) -> str:
    """Bytes for people: ``1 GiB``, ``1.5 MiB``, ``900 bytes``."""
    for unit, factor in (("TiB", 1024**4), ("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def show_count(n: int) -> str:
    return f"{n:,}"


def limit(default: int, help: str, *, metavar: str, expects: str, example: str, parse: Callable[[str], int],
          show: Callable[[int], str]) -> Any:
    """A limit's default, with its help, what its text must be, and how to read it and show it to people."""
    return field(default=default, metadata={"help": help, "metavar": metavar, "expects": expects, "example": example,
                                            "parse": parse, "show": show})


@dataclass(frozen=True)
class ReadLimits:
    """What one file (or hub dataset) may hold; each limit is set by ``LAB_<NAME>`` or ``--<name>``."""

    max_import_bytes: int = limit(
        GIB, "The most bytes a file (or a folder's files together) may hold once decompressed (Parquet and Arrow: "
        "their data uncompressed).",
        metavar="SIZE", expects="a size in bytes, or with a unit (K, M, G, T: powers of 1024)", example="4GiB",
        parse=parse_size, show=show_size)
    max_import_rows: int = limit(
        2_000_000, "The most rows a file (or a folder's files together) may hold (JSONL lines, JSON elements, CSV, "
        "Parquet or Arrow rows, valid or not).",
        metavar="N", expects="a whole number of rows", example="5000000", parse=parse_count, show=show_count)
    # One message, prompt or answer: a million characters is about 250,000 tokens, more than any model's context,
    # while one 50 MB answer took the statistics 4.5 minutes and 10 GB of the server's memory to tokenise.
    max_text_chars: int = limit(
        1_000_000, "The most characters one text of a row (a message, a prompt, an answer) may hold; a longer one "
        "makes its row invalid.", metavar="N", expects="a whole number of characters", example="4000000",
        parse=parse_count, show=show_count)

    def exceeded(self, name: str, source: str, found: str) -> LimitExceeded:
        """The sentence for a file over the limit ``name``: ``found`` says what it holds, ending in a comparison
        ("inflates to more than", "has 3,000,000 rows, more than")."""
        shown = LIMITS[name].metadata["show"](getattr(self, name))
        return LimitExceeded(f"{source} {found} the import limit of {shown}; set {env_name(name)} "
                             f"(or pass --{flag_name(name)}) higher if the file is meant to be that large.", name)


class LimitExceeded(LabError):
    """A file over one of the limits, ``limit`` naming which: a folder read a file at a time (each within what the
    files before it left) says it again of the whole folder, with the limit as set."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


LIMITS = {f.name: f for f in fields(ReadLimits)}


def env_name(name: str) -> str:
    return f"LAB_{name.upper()}"


def flag_name(name: str) -> str:
    return name.replace("_", "-")


def read_limits(**given: str | None) -> ReadLimits:
    """The limits in force: each one ``given`` (a command-line flag's text) wins over its environment variable,
    which wins over the default."""
    values: dict[str, int] = {}
    for name in LIMITS:
        flag, env = given.get(name), os.environ.get(env_name(name), "").strip()
        if flag is not None:
            values[name] = parse_limit(name, flag, f"--{flag_name(name)}")
        elif env:
            values[name] = parse_limit(name, env, env_name(name))
    return ReadLimits(**values)


def parse_limit(name: str, text: str, where: str) -> int:
    """The limit ``name`` from its text, or a sentence naming ``where`` it was set and what it should be."""
    meta = LIMITS[name].metadata
    try:
        value = meta["parse"](text)
    except ValueError:
        raise LabError(f"{where}={text!r}: expected {meta['expects']}, like {meta['example']}.") from None
    if value < 1:
        raise LabError(f"{where}={text!r}: the limit must be 1 or more.")
    return value
