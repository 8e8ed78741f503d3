"""The one rule for names people give that become file or folder names or identifiers: dataset, recipe,
run, campaign and account names.

Letters, digits, '-', '_' and '.', starting with a letter or digit, at most 64 characters: safe as a
path component on every file system (no '/', no '..', no NUL, no control characters), short enough for
any file-name limit and for a table cell, and plain text wherever a page shows it.
"""

from __future__ import annotations

import re

from lab.errors import LabError

MAX_LENGTH = 64
SHOWN = 40  # characters of a refused name quoted back: enough to recognise it, not a wall of text


def rule(extra: str = "") -> str:
    """The rule in words, naming the ``extra`` characters a kind of name also allows."""
    allowed = ["'-'", "'_'", "'.'", *(f"'{ch}'" for ch in extra)]
    return (f"use letters, digits, {', '.join(allowed[:-1])} and {allowed[-1]}, starting with a letter or digit "
            f"(at most {MAX_LENGTH} characters)")


def pattern(extra: str = "") -> re.Pattern[str]:
    """The rule as a regex, anchored at both ends (``\\Z``, not ``$``, which lets a trailing newline through)."""
    return re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.{re.escape(extra)}-]{{0,{MAX_LENGTH - 1}}}\Z")


def quoted(value: str) -> str:
    """The start of a refused name as people can read it: invisible characters escaped (a NUL shows as \\x00)."""
    head = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in value[:SHOWN])
    return f"'{head}…'" if len(value) > SHOWN else f"'{head}'"


def check_name(value: str | None, what: str, *, extra: str = "") -> str:
    """``value`` without surrounding blanks, or a ``LabError`` saying what is wrong with it.

    ``what`` names the thing in the message ("Dataset name"); ``extra``: characters this kind of name also
    allows (accounts take '@' for e-mail addresses)."""
    text = (value or "").strip()
    if not text:
        raise LabError(f"{what} is missing: {rule(extra)}.")
    if not pattern(extra).match(text):
        raise LabError(f"{what} {quoted(text)} is not allowed: {rule(extra)}.")
    return text


def derived_name(name: str, *, prefix: str = "", suffix: str = "") -> str:
    """``prefix + name + suffix`` for a name the lab makes from an allowed one (``sanity-curve-<run name>``), the
    middle cut so the whole stays within the length limit."""
    return prefix + name[:MAX_LENGTH - len(prefix) - len(suffix)] + suffix
