"""Row checks on canonical messages. Each check raises ``RowProblem(field, reason)`` naming the
field as it is called in the source file (``conversations[3].from``, ``output``, ``chosen``), so
the user can find and fix it.

Tool calls come in three spellings, all read into the canonical form (``lab.data.canonical``): OpenAI's
``tool_calls`` on an assistant turn answered by ``tool`` turns (``tool_call_id``), OpenAI's older single
``function_call`` answered by a ``function`` turn, and ShareGPT's ``function_call`` turn (its value the call as JSON,
``{"name", "arguments"}``, or a list of them) answered by ``observation`` turns, as LLaMA-Factory writes glaive's and
xlam's function-calling sets. Calls without ids get ``call_1``, ``call_2``, … (their place in the row)."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Collection
from typing import Any

from lab.data.canonical import ROLES, Message, is_context
from lab.data.readers import Checks, UnusableJSON, json_problem, load_json, value_problem

ROLE_ALIASES = {
    "system": "system", "developer": "system",  # developer: OpenAI's name for the system turn since its o1 models
    "user": "user", "human": "user", "prompter": "user",
    "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant",
    "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "ai": "assistant",
}


TOOL_ROLES = ("tool", "function", "ipython", "observation")  # a tool's result: OpenAI, its older API, Llama 3.1, ShareGPT
CALL_ROLES = ("function_call",)  # ShareGPT's turn holding the assistant's call(s)
TOOL_CALLS = ("a tool call or tool result: tool calls are supported in SFT conversations only (import the file as "
              "sft, or skip these rows)")


# Content parts that hold text: Chat Completions' "text", the Responses API's "input_text" (what the user sent) and
# "output_text" (what the model wrote).
TEXT_PARTS = ("text", "input_text", "output_text")
# Where an assistant message keeps its reasoning apart from its reply: DeepSeek's API and Qwen's templates
# (reasoning_content), OpenRouter and others (reasoning).
REASONING_KEYS = ("reasoning_content", "reasoning")


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
    (OpenAI's ``[{"type": "text", "text": ...}]``) joined as they are, a list of one string as that string. A list of
    several bare strings is refused (:func:`strings_text`)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        raise RowProblem(field, f"expected text, got {'null' if value is None else 'a boolean'}")
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        if any(isinstance(part, str) for part in value):
            return strings_text(value, field)
        parts = []
        for part in value:
            if isinstance(part, dict) and part.get("type", "text") in TEXT_PARTS and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RowProblem(field, f"content part of type '{kind}' is not text; only text is supported")
        # Nothing between the parts, as OpenAI joins them: its Python SDK's Response.output_text is "".join of a
        # message's text parts, and a part carries its own spacing ("Part one. ", "Part two."), so a separator
        # added here would change text the file wrote exactly.
        return "".join(parts)
    raise RowProblem(field, f"expected text, got {type(value).__name__}")


def strings_text(value: list[Any], field: str) -> str:
    """A list holding bare strings: one string is that text. Several are refused rather than joined: files use such
    lists for lines of one text, for alternative answers (ELI5's, TriviaQA's aliases) and for turns (the Arena 55k
    set), and joining them, with "" or with line breaks, would train on a reply that is none of these without a
    word. The row error says how to write what was meant."""
    if len(value) == 1 and isinstance(value[0], str):
        return value[0]
    odd = next((i for i, part in enumerate(value) if not isinstance(part, str)), None)
    if odd is not None:
        raise RowProblem(f"{field}[{odd}]", f"expected text like the list's other items, got "
                                            f"{type(value[odd]).__name__}")
    raise RowProblem(field, f"a list of {len(value)} texts, not one: the lab cannot tell whether they are lines of one "
                            "text, alternative answers or turns; write one text (joined with line breaks if they are "
                            "lines), or the turns as messages [{\"role\": …, \"content\": …}]")


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
        # Role and content are found apart: files mix OpenAI's names and ShareGPT's within one message
        # ({"from": "human", "content": …}, {"role": "user", "value": …}).
        sharegpt = "value" in item and content_key not in item  # names a missing role as ShareGPT would
        role_field = message_key(item, ("from", role_key, "role") if sharegpt else (role_key, "role", "from"))
        content_field = message_key(item, ("value", content_key, "content") if role_field == "from" else
                                    (content_key, "content", "value"))
        if item.get(role_field) is None:
            raise RowProblem(f"{where}.{role_field}", missing_key(item, role_field, "from" if role_field == "role"
                                                                  else "role"))
        raw_role = visible(str(item[role_field])).strip()
        if raw_role.lower() in CALL_ROLES:
            messages.append({"role": "assistant", "content": "",
                             "tool_calls": sharegpt_calls(item.get(content_field), f"{where}.{content_field}")})
            continue
        role = "tool" if raw_role.lower() in TOOL_ROLES else ROLE_ALIASES.get(raw_role.lower())
        if role is None:
            raise RowProblem(f"{where}.{role_field}",
                             f"unknown role '{raw_role}' (expected one of {', '.join(ROLES)} or human/gpt)")
        calls = message_calls(item, role, where)
        if item.get(content_field) is None and not calls:
            raise RowProblem(f"{where}.{content_field}", missing_key(item, content_field, "value" if content_field ==
                                                                     "content" else "content"))
        content = item.get(content_field)
        if role == "tool" and isinstance(content, (dict, list)) and not is_content_parts(content):
            content = json.dumps(content, ensure_ascii=False)  # a result given as JSON, as the model will read it
        message = {"role": role, "content": "" if content is None else text_of(content, f"{where}.{content_field}")}
        if role == "assistant":
            message["content"] = with_reasoning(item, message["content"], where)
        if calls:
            message["tool_calls"] = calls
        if role == "tool":
            message.update(result_link(item, where))
        if (item.get("weight") is not None and reply_weight(item["weight"], role, f"{where}.weight") == 0
                and role == "assistant"):
            message["weight"] = 0  # kept only when 0, so rows without weights stay as they were
        messages.append(message)
    return link_tool_calls(messages, field)


def visible(text: str) -> str:
    """``text`` without invisible format characters (a zero-width space, a byte-order mark), which a role copied from
    a web page or a spreadsheet carries and no message shows."""
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


def is_content_parts(value: Any) -> bool:
    """Whether a list is OpenAI's content parts (``[{"type": "text", "text": …}]``), not a JSON result."""
    return isinstance(value, list) and bool(value) and all(isinstance(p, dict) and "type" in p for p in value)


def with_reasoning(item: dict[str, Any], content: str, where: str) -> str:
    """An assistant reply with the reasoning its message keeps apart put before it, in the <think> tags that
    reasoning models (DeepSeek-R1, Qwen3) write and their chat templates expect: dropping it would train a reasoning
    set's answers without their reasoning, without a word."""
    key = next((k for k in REASONING_KEYS if item.get(k) not in (None, "")), None)
    if key is None:
        return content
    reasoning = text_of(item[key], f"{where}.{key}").strip()
    if not reasoning or content.lstrip().startswith("<think>"):
        return content
    return f"<think>\n{reasoning}\n</think>\n\n{content.lstrip()}"


def message_key(item: dict[str, Any], names: tuple[str, ...]) -> str:
    """Which of ``names`` a message uses: the first that holds a value, else the first present (null), else the first
    (the one a "missing field" names)."""
    present = [name for name in names if name in item]
    held = [name for name in present if item[name] is not None]
    return (held or present or names)[0]


def missing_key(item: dict[str, Any], name: str, other: str) -> str:
    """'missing field', naming the keys the message has when it has others than the one found beside this (an
    unknown spelling, ``text`` for ``content``), so the user sees what the lab read."""
    known = {"role", "from", "content", "value", "weight", "name", "tool_calls", "function_call", "tool_call_id",
             *REASONING_KEYS}
    if not set(item) - known:
        return "missing field"
    keys = ", ".join(repr(str(k)) for k in item)
    return f"missing field: expected '{name}' (or '{other}'); the message has {keys}"


def message_calls(item: dict[str, Any], role: str, where: str) -> list[dict[str, Any]]:
    """The calls an OpenAI-style message makes: ``tool_calls``, or the older single ``function_call``."""
    if item.get("tool_calls") is not None and item.get("tool_calls") != []:
        key, value = "tool_calls", item["tool_calls"]
    elif item.get("function_call") is not None:
        key, value = "function_call", [item["function_call"]]
    else:
        return []
    if role != "assistant":
        raise RowProblem(f"{where}.{key}", f"a {role} turn with tool calls: only the assistant calls tools")
    if not isinstance(value, list):
        raise RowProblem(f"{where}.{key}", f"expected a list of tool calls, got {type(value).__name__}")
    return [tool_call(call, f"{where}.{key}" + (f"[{j}]" if key == "tool_calls" else ""))
            for j, call in enumerate(value)]


def sharegpt_calls(value: Any, field: str) -> list[dict[str, Any]]:
    """A ShareGPT ``function_call`` turn's value: ``{"name", "arguments"}`` or a list of them, as JSON or JSON text."""
    if value is None:
        raise RowProblem(field, "missing field")
    if isinstance(value, str):
        value = json_text(value, field, what='the call as JSON, {"name": …, "arguments": {…}}')
    calls = value if isinstance(value, list) else [value]
    if not calls:
        raise RowProblem(field, "a function_call turn with no call in it")
    return [tool_call(call, f"{field}[{j}]" if isinstance(value, list) else field) for j, call in enumerate(calls)]


def tool_call(call: Any, field: str) -> dict[str, Any]:
    """One call in canonical form: ``{"id", "type": "function", "function": {"name", "arguments": dict}}``; the id is
    None until :func:`link_tool_calls` numbers the calls that came without one."""
    if not isinstance(call, dict):
        raise RowProblem(field, f"expected a tool call object, got {type(call).__name__}")
    kind = call.get("type", "function")
    if kind != "function":
        raise RowProblem(f"{field}.type", f"'{kind}': only function calls are supported")
    nested = "function" in call
    function = call["function"] if nested else call  # ShareGPT's and the older API's calls have no "function" level
    at = f"{field}.function" if nested else field
    if not isinstance(function, dict):
        raise RowProblem(at, f"expected an object with name and arguments, got {type(function).__name__}")
    call_id = call.get("id")
    if call_id is not None and (not isinstance(call_id, str) or not call_id.strip()):
        raise RowProblem(f"{field}.id", f"expected the call's id as text, got {call_id!r}")
    return {"id": call_id, "type": "function",
            "function": {"name": function_name(function.get("name"), f"{at}.name"),
                         "arguments": arguments(function, f"{at}.arguments")}}


def function_name(value: Any, field: str) -> str:
    if value is None:
        raise RowProblem(field, "missing field: every tool call names its function")
    if not isinstance(value, str) or not value.strip():
        raise RowProblem(field, f"expected the function's name as text, got {value!r}")
    return value


def arguments(function: dict[str, Any], field: str) -> dict[str, Any]:
    """A call's arguments as a dict: OpenAI writes them as JSON text, others as an object; either way a JSON object
    (``{}`` for a call without arguments)."""
    if "arguments" not in function or function["arguments"] is None:
        raise RowProblem(field, 'missing field (write {} for a call without arguments)')
    value = function["arguments"]
    if isinstance(value, str):
        value = json_text(value, field, what="the arguments as a JSON object")
    if not isinstance(value, dict):
        shown = "a list" if isinstance(value, list) else json.dumps(value, ensure_ascii=False)[:40]
        raise RowProblem(field, f"expected a JSON object of arguments, got {shown}")
    return value


def json_text(text: str, field: str, *, what: str) -> Any:
    """JSON kept as text inside a row, parsed and checked as the readers check records (nesting, text)."""
    try:
        value = load_json(text)
    except json.JSONDecodeError as err:
        raise RowProblem(field, f"not valid JSON ({json_problem(err)} at column {err.colno}); expected {what}") from None
    except UnusableJSON as err:
        raise RowProblem(field, err.reason) from None
    problem = value_problem(value, Checks.of_json(text))
    if problem:
        raise RowProblem(field, problem)
    return value


def result_link(item: dict[str, Any], where: str) -> dict[str, str]:
    """The call a tool result names: ``tool_call_id`` and ``name`` where given (checked against the call later)."""
    link = {}
    for key in ("tool_call_id", "name"):
        value = item.get(key)
        if value is not None:
            if not isinstance(value, str) or not value.strip():
                raise RowProblem(f"{where}.{key}", f"expected text, got {value!r}")
            link[key] = value
    return link


def link_tool_calls(messages: list[Message], field: str) -> list[Message]:
    """Number the calls that came without an id (``call_<n>``: the n-th call of the row) and pair each tool result
    with the call it answers: the calls of an assistant turn are answered by the tool turns right after it, one each.
    A result with a ``tool_call_id`` answers the waiting call of that id, in whatever order (OpenAI links parallel
    calls' results by id, not by place); one without answers the first call still waiting. A result's ``name``, when
    given, must be its call's. Each result then carries both."""
    pending: list[tuple[dict[str, Any], bool]] = []  # (call, came with an id) not answered yet
    seen: dict[str, str] = {}  # id -> where it was made
    made = 0
    for i, message in enumerate(messages):
        where = f"{field}[{i}]"
        if message["role"] == "tool":
            if not pending:
                raise RowProblem(where, "a tool result that answers no call: every tool turn follows the assistant "
                                        "turn that calls the tool (more results than calls?)")
            call, had_id = pending.pop(answered_by(message, pending))
            check_answer(message, call, had_id, where, pending)
            message["tool_call_id"], message["name"] = call["id"], call["function"]["name"]
            continue
        if pending:
            open_ids = show_calls([c for c, _ in pending])
            raise RowProblem(where, f"tool call {open_ids} not answered: a tool turn with its result comes right "
                                    "after the assistant turn that makes the call")
        for j, call in enumerate(message.get("tool_calls") or []):
            made += 1
            had_id = call["id"] is not None
            call["id"] = call["id"] if had_id else f"call_{made}"
            if call["id"] in seen:
                raise RowProblem(f"{where}.tool_calls[{j}].id",
                                 f"duplicate tool call id '{call['id']}' (also at {seen[call['id']]}): ids are unique "
                                 "within a conversation")
            seen[call["id"]] = f"{where}.tool_calls[{j}]"
            pending.append((call, had_id))
    if pending:
        open_ids = show_calls([c for c, _ in pending])
        raise RowProblem(f"{field}[{len(messages) - 1}]", f"tool call {open_ids} not answered: the conversation ends "
                                                          "before its tool result")
    return messages


def show_calls(calls: list[dict[str, Any]]) -> str:
    """Calls as an error names them: ``'c1' (get_weather), 'c2' (get_time)``."""
    return ", ".join(f"'{c['id']}' ({c['function']['name']})" for c in calls)


def answered_by(result: Message, pending: list[tuple[dict[str, Any], bool]]) -> int:
    """Which waiting call a result answers: the one its ``tool_call_id`` names, else the first (in order)."""
    given = result.get("tool_call_id")
    return next((i for i, (call, _) in enumerate(pending) if given is not None and call["id"] == given), 0)


def check_answer(result: Message, call: dict[str, Any], had_id: bool, where: str,
                 others: list[tuple[dict[str, Any], bool]] | None = None) -> None:
    """A result's ``tool_call_id`` and ``name`` against the call it answers (:func:`answered_by`: an id that differs
    from that call's is no waiting call's id); ``others`` are the calls still waiting besides it."""
    given, name = result.get("tool_call_id"), call["function"]["name"]
    if given is not None and given != call["id"]:
        if had_id:
            waiting = show_calls([call, *(c for c, _ in others or [])])
            expected = f"no call waiting for its result has this id (waiting: {waiting})"
        else:
            expected = f"results without ids answer the calls in order, and this one answers a call to {name} that " \
                       "has no id"
        raise RowProblem(f"{where}.tool_call_id", f"'{given}' does not match the call this result answers: "
                                                   f"{expected}")
    if result.get("name") is not None and result["name"] != name:
        raise RowProblem(f"{where}.name", f"'{result['name']}', but the call this result answers is to {name}")


def reply_weight(value: Any, role: str, field: str) -> int:
    """OpenAI's per-message ``weight``: 1 trains on an assistant reply, 0 keeps it as context only. Another turn's
    weight 0 says what the lab does anyway (SlimOrca writes 0.0 on every human turn); its weight 1 asks for a loss on
    text the lab never trains on, and is refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in (0, 1):
        raise RowProblem(field, f"expected 0 or 1, got {value!r}")
    if role != "assistant" and value == 1:
        raise RowProblem(field, f"weight 1 on a {role} turn: the lab trains on assistant replies only (the loss is "
                                "never on other turns); write 0 or leave the weight out")
    return int(value)


def check_conversation(messages: list[Message], field: str, *, ends_with: str = "assistant", calls: bool = False,
                       declared: Collection[str] = ()) -> None:
    """Roles in order (optional system first, then user/assistant alternating, user first), no empty turns, and the
    last turn is ``ends_with``. With ``calls`` (SFT conversations) an assistant turn may call tools, each call answered
    by a tool turn before the assistant goes on (:func:`link_tool_calls` paired them); with ``declared`` (the row's
    tools) only those functions may be called."""
    if not messages:
        raise RowProblem(field, "empty conversation")
    start = 0
    if messages[0]["role"] == "system":
        start = 1
        if len(messages) == 1:
            raise RowProblem(field, "only a system message: no user turn and no assistant reply")
    expected: tuple[str, ...] = ("user",)
    for i in range(start, len(messages)):
        message, where = messages[i], f"{field}[{i}]"
        role = message["role"]
        if role == "system":
            raise RowProblem(where, "wrong role order: a system message may only come first")
        if (role == "tool" or message.get("tool_calls")) and not calls:
            raise RowProblem(where, TOOL_CALLS)
        if role not in expected:
            if i == start:
                raise RowProblem(where, f"wrong role order: the conversation starts with {role}, expected user")
            before = messages[i - 1]["role"]
            raise RowProblem(where, f"wrong role order: two {role} turns in a row" if role == before else
                             f"wrong role order: a {role} turn after a {before} turn (expected "
                             f"{' or '.join(expected)})")
        if not message["content"].strip() and role != "tool" and not message.get("tool_calls"):
            raise RowProblem(where, "empty assistant reply" if role == "assistant" else "empty user message")
        undeclared = [c["function"]["name"] for c in message.get("tool_calls") or []
                      if declared and c["function"]["name"] not in declared]
        if undeclared:
            raise RowProblem(where, f"calls {undeclared[0]}, which the row's tools do not declare (declared: "
                                    f"{', '.join(declared)})")
        expected = NEXT_ROLES["calls" if message.get("tool_calls") else role]
    if ends_with == "assistant" and all(is_context(m) for m in messages if m["role"] == "assistant"):
        raise RowProblem(field, "every assistant reply has weight 0: nothing to train on")
    last = messages[-1]["role"]
    if last != ends_with:
        if ends_with == "assistant":
            raise RowProblem(field, f"conversation does not end with an assistant reply (the last turn is {last})")
        raise RowProblem(field, f"the prompt must end with a user turn (the last turn is {last})")


# Which roles may follow a turn: an assistant turn that calls tools ("calls") is followed by their results, and the
# last result by the assistant (another call, or the reply); link_tool_calls has matched results to calls already.
NEXT_ROLES = {"user": ("assistant",), "assistant": ("user",), "calls": ("tool",), "tool": ("tool", "assistant")}


def tools_of(value: Any, field: str = "tools") -> tuple[str, list[str]]:
    """A row's ``tools`` (function schemas: OpenAI's ``{"type": "function", "function": {...}}`` or the bare
    ``{"name", "description", "parameters"}``; a list, as JSON or JSON text) → the canonical text ("" when none) and
    the names it declares."""
    if isinstance(value, str):
        value = json_text(value, field, what="a list of function schemas") if value.strip() else None
    if value is None or value == []:
        return "", []
    schemas = [value] if isinstance(value, dict) else value
    if not isinstance(schemas, list):
        raise RowProblem(field, f"expected a list of function schemas, got {type(value).__name__}")
    names = []
    for i, schema in enumerate(schemas):
        at = f"{field}[{i}]" if isinstance(value, list) else field
        if not isinstance(schema, dict):
            raise RowProblem(at, f"expected a function schema object, got {type(schema).__name__}")
        nested = isinstance(schema.get("function"), dict)
        names.append(function_name((schema["function"] if nested else schema).get("name"),
                                   f"{at}.function.name" if nested else f"{at}.name"))
    return json.dumps(schemas, ensure_ascii=False), names


def check_sft(messages: list[Message], field: str, tools: Any = None) -> dict[str, Any]:
    """An SFT conversation checked (tool calls allowed, against the row's ``tools`` when it has them): the canonical
    row, with ``tools`` only when the row declares some."""
    text, names = tools_of(tools)
    check_conversation(messages, field, calls=True, declared=names)
    return {"messages": messages, "tools": text} if text else {"messages": messages}


def check_reply(messages: list[Message], field: str) -> None:
    """A chosen/rejected side: one or more assistant messages, not empty."""
    if not messages:
        raise RowProblem(field, "empty assistant reply")
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            raise RowProblem(f"{field}[{i}]", f"expected the assistant's reply, got a {message['role']} turn")
        if message.get("tool_calls"):
            raise RowProblem(f"{field}[{i}]", TOOL_CALLS)
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
    from lab.data.kind_checks import check_row  # which builds on this module's checks

    check_row(data, kind)
