"""Row checks on canonical messages. Each check raises ``RowProblem(field, reason)`` naming the
field as it is called in the source file (``conversations[3].from``, ``output``, ``chosen``), so
the user can find and fix it."""

from __future__ import annotations

from typing import Any

from lab.data.canonical import ROLES, Message, is_context

ROLE_ALIASES = {
    "system": "system",
    "user": "user", "human": "user", "prompter": "user",
    "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant",
    "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "ai": "assistant",
}


TOOL_ROLES = ("tool", "function", "ipython", "observation")
TOOL_CALLS = ("a tool call or tool result: conversations with tool calls are not supported yet (write the calls "
              "and results into the conversation's text, or skip these rows)")


class RowProblem(Exception):
    """What is wrong with one row; becomes a ``RowError`` with the row's place."""

    def __init__(self, field: str | None, reason: str):
        super().__init__(reason)
        self.field = field
        self.reason = reason


def require(record: dict[str, Any], key: str) -> Any:
    """The value of ``key``, or a 'missing field' problem when it is absent or null."""
    value = record.get(key)
    if value is None:
        raise RowProblem(key, "missing field")
    return value


def text_of(value: Any, field: str) -> str:
    """A message body as text: strings as they are, numbers as written, lists of content parts
    (OpenAI's ``[{"type": "text", "text": ...}]``) joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        raise RowProblem(field, f"expected text, got {'null' if value is None else 'a boolean'}")
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        parts = []
        for part in value:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RowProblem(field, f"content part of type '{kind}' is not text; only text is supported")
        return "".join(parts)
    raise RowProblem(field, f"expected text, got {type(value).__name__}")


def normalise_messages(value: Any, field: str, *, role_key: str = "role", content_key: str = "content") -> list[Message]:
    """A list of message objects → canonical messages, naming the first bad element."""
    if not isinstance(value, list):
        raise RowProblem(field, f"expected a list of messages, got {type(value).__name__}")
    if value and all(isinstance(item, dict) and {"input", "output"} <= set(item) and role_key not in item
                     and "role" not in item for item in value):  # Capybara: one {input, output} object per exchange
        value = [m for item in value for m in ({"role": "user", "content": item["input"]},
                                               {"role": "assistant", "content": item["output"]})]
    messages: list[Message] = []
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(item, dict):
            raise RowProblem(where, f"expected a message object, got {type(item).__name__}")
        keys = (role_key, content_key)
        if role_key not in item and content_key not in item and {"from", "value"} & set(item):
            keys = ("from", "value")  # a ShareGPT message inside an OpenAI-style column, or the reverse
        elif role_key not in item and {"role", "content"} & set(item):
            keys = ("role", "content")
        role_field, content_field = keys
        if role_field not in item or item[role_field] is None:
            raise RowProblem(f"{where}.{role_field}", "missing field")
        raw_role = str(item[role_field]).strip()
        if item.get("tool_calls") or item.get("function_call") or raw_role.lower() in TOOL_ROLES:
            raise RowProblem(where, TOOL_CALLS)
        role = ROLE_ALIASES.get(raw_role.lower())
        if role is None:
            raise RowProblem(f"{where}.{role_field}",
                             f"unknown role '{raw_role}' (expected one of {', '.join(ROLES)} or human/gpt)")
        if content_field not in item or item[content_field] is None:
            raise RowProblem(f"{where}.{content_field}", "missing field")
        message = {"role": role, "content": text_of(item[content_field], f"{where}.{content_field}")}
        if item.get("weight") is not None and reply_weight(item["weight"], role, f"{where}.weight") == 0:
            message["weight"] = 0  # kept only when 0, so rows without weights stay as they were
        messages.append(message)
    return messages


def reply_weight(value: Any, role: str, field: str) -> int:
    """OpenAI's per-message ``weight``: 1 trains on an assistant reply, 0 keeps it as context only."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in (0, 1):
        raise RowProblem(field, f"expected 0 or 1, got {value!r}")
    if role != "assistant":
        raise RowProblem(field, "only assistant messages take a weight (0: the reply is context, not trained on)")
    return int(value)


def check_conversation(messages: list[Message], field: str, *, ends_with: str = "assistant") -> None:
    """Roles in order (optional system first, then user/assistant alternating, user first),
    no empty turns, and the last turn is ``ends_with``."""
    if not messages:
        raise RowProblem(field, "empty conversation")
    start = 0
    if messages[0]["role"] == "system":
        start = 1
        if len(messages) == 1:
            raise RowProblem(field, "only a system message: no user turn and no assistant reply")
    expected = "user"
    for i in range(start, len(messages)):
        role = messages[i]["role"]
        if role == "system":
            raise RowProblem(f"{field}[{i}]", "wrong role order: a system message may only come first")
        if role != expected:
            if i == start:
                raise RowProblem(f"{field}[{i}]", f"wrong role order: the conversation starts with {role}, expected user")
            raise RowProblem(f"{field}[{i}]", f"wrong role order: two {role} turns in a row")
        if not messages[i]["content"].strip():
            what = "empty assistant reply" if role == "assistant" else "empty user message"
            raise RowProblem(f"{field}[{i}]", what)
        expected = "assistant" if role == "user" else "user"
    if ends_with == "assistant" and all(is_context(m) for m in messages if m["role"] == "assistant"):
        raise RowProblem(field, "every assistant reply has weight 0: nothing to train on")
    last = messages[-1]["role"]
    if last != ends_with:
        if ends_with == "assistant":
            raise RowProblem(field, f"conversation does not end with an assistant reply (the last turn is {last})")
        raise RowProblem(field, f"the prompt must end with a user turn (the last turn is {last})")


def check_reply(messages: list[Message], field: str) -> None:
    """A chosen/rejected side: one or more assistant messages, not empty."""
    if not messages:
        raise RowProblem(field, "empty assistant reply")
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            raise RowProblem(f"{field}[{i}]", f"expected the assistant's reply, got a {message['role']} turn")
        if not message["content"].strip():
            raise RowProblem(field, "empty assistant reply")


def check_preference(prompt: list[Message], chosen: list[Message], rejected: list[Message],
                     fields: tuple[str, str, str] = ("prompt", "chosen", "rejected")) -> None:
    check_conversation(prompt, fields[0], ends_with="user")
    check_reply(chosen, fields[1])
    check_reply(rejected, fields[2])
    if [m["content"].strip() for m in chosen] == [m["content"].strip() for m in rejected]:
        raise RowProblem(fields[2], "chosen is identical to rejected")


def validate_canonical(data: dict[str, Any], kind: str) -> None:
    """Check a row already in canonical form (e.g. one built from votes) the same way imports are."""
    if kind == "sft":
        check_conversation(normalise_messages(require(data, "messages"), "messages"), "messages")
    else:
        check_preference(*(normalise_messages(require(data, k), k) for k in ("prompt", "chosen", "rejected")))
