"""The canonical row shapes every format is converted to, and the report types shared by
readers, converters and validators.

SFT rows are conversations ``{"messages": [{"role", "content"}, ...]}`` with roles
system/user/assistant. Preference rows are ``{"prompt": [...], "chosen": [...],
"rejected": [...]}``, each a list of messages: ``prompt`` ends with the user's turn,
``chosen`` and ``rejected`` hold the assistant's reply (usually one message).
Every row remembers where it came from (``source`` file name and 1-based ``line``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Kind = Literal["sft", "preference"]
ROLES = ("system", "user", "assistant")
Message = dict[str, str]


def is_context(message: Message) -> bool:
    """A reply of OpenAI's per-message weight 0: kept in the conversation, not trained on."""
    return message.get("weight") == 0


@dataclass
class RowError:
    """One problem in one row: where (file, 1-based line/row/element), which field, and why."""

    line: int | None
    field: str | None
    reason: str
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "reason": self.reason}

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source or "file"
        what = f" field '{self.field}'" if self.field else ""
        return f"{where}{what}: {self.reason}"


@dataclass
class Row:
    """A converted, valid row in canonical form, with its origin."""

    data: dict[str, Any]
    line: int
    source: str = ""


@dataclass
class ParsedFile:
    """What a converter made of a file: the valid rows, the row errors, and what it detected."""

    kind: Kind
    format: str
    rows: list[Row] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    source: str = ""
    total: int = 0  # records read, valid or not

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rows"] = len(self.rows)
        out["errors"] = [e.to_dict() for e in self.errors]
        return out


def row_text(data: dict[str, Any]) -> str:
    """All the text of a canonical row, in order: what dedup compares."""
    parts: list[str] = []
    for key in ("messages", "prompt", "chosen", "rejected"):
        for message in data.get(key) or []:
            parts.append(message["content"])
    return "\n".join(parts)


def prompt_messages(data: dict[str, Any]) -> list[Message]:
    """The prompt side of a row: the conversation up to (not including) the last assistant reply."""
    if "messages" in data:
        return data["messages"][:-1]
    return data["prompt"]
