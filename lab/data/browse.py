"""The row browser's engine: search, a filter and pages over canonical rows, for the Data tab's Rows view and
``python -m lab data show``.

Rows keep their number in the whole list (1-based) whatever the search or filter, so "row 17" names the
same row in the browser, the loss-mask view and the CLI. Rows of every kind (``lab.data.kinds``) are searched
in all their text, a prompts row's reference answer and metadata included.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from lab.config import DataConfig
from lab.data.canonical import Row, is_context
from lab.data.kinds import MESSAGES, flags, kind_of, search_text
from lab.errors import LabError

PAGE_SIZES = (5, 10, 25, 50)
PAGE_SIZE = 10
MAX_PAGE_SIZE = 500


def each(test: Callable[[Row], bool]) -> Callable[[list[Row]], list[bool]]:
    return lambda rows: [test(row) for row in rows]


def turns(row: Row) -> int:
    from lab.data.quality import turn_count  # numpy: only when a filter runs, not when the CLI starts

    return turn_count(row)


def messages_of(row: Row) -> list[dict]:
    data = row.data
    return [m for field, how in kind_of(data).fields.items() if how == MESSAGES for m in data.get(field) or []]


def labelled(value: bool) -> Callable[[Row], bool]:
    """Rows whose flag (an unpaired reply's label) is ``value``; rows of a kind without flags never are."""
    return lambda row: flags(row.data)[:1] == (value,)


def duplicates(rows: list[Row]) -> list[bool]:
    """Rows that cleaning at its default settings removes: exact, then near duplicates of an earlier row."""
    from lab.data.quality import exact_duplicates, near_duplicates

    exact = {p.drop for p in exact_duplicates(rows)}
    rest = [i for i in range(len(rows)) if i not in exact]
    near = {rest[p.drop] for p in near_duplicates([rows[i] for i in rest], threshold=DataConfig().near_threshold)}
    return [i in exact or i in near for i in range(len(rows))]


@dataclass(frozen=True)
class Where:
    """A filter: its label in pickers and help, and which rows it keeps."""
    label: str
    keep: Callable[[list[Row]], list[bool]]


WHERE: dict[str, Where] = {
    "all": Where("all rows", lambda rows: [True] * len(rows)),
    "multi-turn": Where("more than one user turn", each(lambda row: turns(row) > 1)),
    "system": Where("with a system prompt", each(lambda row: any(m["role"] == "system" for m in messages_of(row)))),
    "context": Where("with context turns (replies of weight 0, SFT)", each(lambda row: any(map(is_context,
                                                                                                messages_of(row))))),
    "duplicate": Where("duplicates cleaning would remove", duplicates),
    "desirable": Where("labelled 👍 desirable (unpaired)", each(labelled(True))),
    "undesirable": Where("labelled 👎 undesirable (unpaired)", each(labelled(False))),
    "answered": Where("with a reference answer (prompts)", each(lambda row: bool(row.data.get("answer")))),
}


@dataclass
class Page:
    """One page of the rows that match: ``rows`` are ``(number in the whole list, row)``."""
    rows: list[tuple[int, Row]]
    page: int
    pages: int
    matched: int
    total: int


def matching(rows: list[Row], *, search: str = "", where: str = "all") -> list[tuple[int, Row]]:
    """The rows whose text holds ``search`` (case-insensitive) and that ``where`` keeps, numbered from 1."""
    if where not in WHERE:
        raise LabError(f"Unknown row filter '{where}': use one of {', '.join(WHERE)}.")
    needle = (search or "").strip().casefold()
    kept = WHERE[where].keep(rows)
    return [(i + 1, row) for i, (row, keep) in enumerate(zip(rows, kept))
            if keep and (not needle or needle in search_text(row.data).casefold())]


def page_of(rows: list[Row], *, page: int = 1, per_page: int = PAGE_SIZE, search: str = "",
            where: str = "all") -> Page:
    """Page ``page`` (1-based, clamped to the pages there are) of the matching rows, ``per_page`` a page."""
    per_page = int(per_page or PAGE_SIZE)
    if not 1 <= per_page <= MAX_PAGE_SIZE:
        raise LabError(f"Rows per page must be between 1 and {MAX_PAGE_SIZE}, not {per_page}.")
    found = matching(rows, search=search, where=where)
    pages = max(1, math.ceil(len(found) / per_page))
    page = min(max(1, int(page or 1)), pages)
    start = (page - 1) * per_page
    return Page(found[start:start + per_page], page, pages, len(found), len(rows))
