"""The canonical row shapes every format is converted to, and the report types shared by
readers, converters and validators.

SFT rows are conversations ``{"messages": [{"role", "content"}, ...]}`` with roles
system/user/assistant, and tool: an assistant turn may make calls (``tool_calls``: ``[{"id", "type": "function",
"function": {"name", "arguments"}}]``, the arguments a dict) and each call is answered, in order, by a ``tool`` turn
(``tool_call_id``, ``name``, ``content``: the result). Such a row may declare the functions it can call in
``tools``: their schemas as a JSON list, in text ("" when none).

Preference rows are ``{"prompt": [...], "chosen": [...], "rejected": [...]}``, each a list of messages: ``prompt``
ends with the user's turn, ``chosen`` and ``rejected`` hold the assistant's reply (usually one message).
Every row remembers where it came from (``source`` file name and 1-based ``line``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

Kind = str  # a lab.data.kinds name: sft, preference, unpaired, prompts
ROLES = ("system", "user", "assistant")
Message = dict[str, Any]  # role, content (text); weight, tool_calls, tool_call_id, name only where they apply


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
    notes: list[str] = field(default_factory=list)  # how the file was read (lab.data.readers.RawTable.notes)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rows"] = len(self.rows)
        out["errors"] = [e.to_dict() for e in self.errors]
        return out


def message_text(message: Message) -> str:
    """A message's text with its tool calls, one per line as ``name({"arg": ...})``: what a search or a duplicate
    check compares (two calls with different arguments differ)."""
    calls = [call_text(call) for call in message.get("tool_calls") or []]
    return "\n".join([message["content"], *calls] if message["content"] else calls)


def call_text(call: dict[str, Any]) -> str:
    function = call["function"]
    return f"{function['name']}({json.dumps(function['arguments'], ensure_ascii=False)})"


def tool_list(tools: str | list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """A row's ``tools`` (JSON text, "" when none) as the list a chat template takes, None when there are none."""
    if isinstance(tools, str):
        tools = json.loads(tools) if tools.strip() else None
    return tools or None


def has_tool_calls(messages: list[Message]) -> bool:
    return any(m.get("tool_calls") or m["role"] == "tool" for m in messages)


def prompt_messages(data: dict[str, Any]) -> list[Message]:
    """The prompt side of a row: the conversation up to (not including) the last assistant reply."""
    if "messages" in data:
        return data["messages"][:-1]
    return data["prompt"]
