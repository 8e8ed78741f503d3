"""The types a handler's inputs must have, checked where Gradio hands them over (``lab.ui.common.guarded``).

The page's widgets always send the types the handlers are written for, but anyone can call the app's API with any
JSON: a number where a campaign id goes, a dict for a dataset reference. Without a check those reach the engine and
fail somewhere inside it ("'float' object has no attribute 'strip'", logged with a traceback). Here each input is
held to the handler's annotation (text, numbers, booleans, lists, dicts) and refused with a message naming the
input. Empty (None) is always let through: the handlers take an empty widget as "not chosen". Annotations this
does not know (a request, a DataFrame, ``Any``) are not checked.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

from lab.errors import LabError

# An annotation's type → what a message calls a value of it
KINDS: dict[type, str] = {str: "text", int: "a number", float: "a number", bool: "true or false", list: "a list",
                          dict: "an object"}


def checker(fn: Callable[..., Any]) -> Callable[[tuple, dict], None]:
    """A function that raises ``LabError`` when arguments for ``fn`` (a handler, with any leading arguments already
    bound through ``functools.partial``) do not have the types its annotations ask for."""
    signature = inspect.signature(fn)
    hints = annotations(fn)
    wanted = {name: allowed for name in signature.parameters if (allowed := accepted(hints.get(name))) is not None}

    def check(args: tuple, kwargs: dict) -> None:
        if not wanted:
            return
        try:
            given = signature.bind_partial(*args, **kwargs).arguments
        except TypeError:
            return  # a call Gradio would not make: Python reports it
        for name, value in given.items():
            if name not in wanted:
                continue
            kind = signature.parameters[name].kind
            each = (value.items() if kind is inspect.Parameter.VAR_KEYWORD else  # **columns: str, say
                    ((name, v) for v in value) if kind is inspect.Parameter.VAR_POSITIONAL else [(name, value)])
            for label, item in each:
                if item is not None and not fits(item, wanted[name]):
                    raise LabError(f"{label.replace('_', ' ')} must be {describe(wanted[name])}, not "
                                   f"{KINDS.get(type(item), type(item).__name__)} ({str(item)[:60]!r}).")

    return check


def annotations(fn: Callable[..., Any]) -> dict[str, Any]:
    """``fn``'s resolved annotations (through a partial); none where they cannot be resolved here."""
    target = fn.func if isinstance(fn, functools.partial) else fn
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - names imported only for type checking: leave the handler unchecked
        return {}


def accepted(hint: Any) -> tuple[type, ...] | None:
    """The plain types ``hint`` admits (None dropped, ``list[str]`` as list), or None when it is not all plain."""
    if hint is None:
        return None
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    plain = []
    for option in options:
        if option is type(None):
            continue
        base = typing.get_origin(option) or option
        if base not in KINDS:
            return None
        plain.append(base)
    return tuple(plain) or None


def fits(value: Any, allowed: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # a bool is an int to Python, not to a person
        return bool in allowed
    if isinstance(value, (int, float)) and (int in allowed or float in allowed):
        return True  # a number widget sends 3 or 3.0 alike
    return isinstance(value, allowed)


def describe(allowed: tuple[type, ...]) -> str:
    return " or ".join(dict.fromkeys(KINDS[t] for t in allowed))
