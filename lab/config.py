"""Config dataclasses: the single source of defaults and help text.

The CLI builds its flags from these fields (``add_arguments``), the YAML recipes load into them
(``from_dict``), and the web forms are built from the same fields (``lab.ui.forms``). A field's
help lives in its ``metadata`` and nowhere else.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lab.errors import LabError

T = TypeVar("T")


def option(default: Any, help: str, *, choices: tuple | None = None, cli: bool = True) -> Any:
    """A config field with its help text (and optional choices) kept beside its default."""
    metadata = {"help": help, "cli": cli}
    if choices:
        metadata["choices"] = choices
    return field(default=default, metadata=metadata)


@dataclass
class DataConfig:
    """How a file becomes a dataset version: what it holds, how it is cleaned and split."""

    name: str = option("", "Name of the dataset; each save adds an immutable version under it.")
    kind: str = option("auto", "What the rows are: instruction/chat (sft) or preference pairs; auto detects.",
                       choices=("auto", "sft", "preference"))
    skip_invalid: bool = option(False, "Leave out rows that fail validation (otherwise saving is refused).")
    dedup_exact: bool = option(True, "Remove rows identical to an earlier row (whitespace-normalised).")
    dedup_near: bool = option(True, "Remove near-duplicates found by MinHash/LSH.")
    near_threshold: float = option(0.8, "Estimated Jaccard similarity of word 5-grams above which rows are near-duplicates.")
    tokenizer: str = option("tiny", "Tokenizer for token-length filters and statistics: 'tiny', a local path or a hub id.")
    template: str = option("model", "Chat template: the tokenizer's own ('model'), or 'chatml' / 'alpaca'.",
                           choices=("model", "chatml", "alpaca"))
    min_tokens: int = option(0, "Drop rows shorter than this many tokens (0 = no limit).")
    max_tokens: int = option(0, "Drop rows longer than this many tokens (0 = no limit).")
    min_turns: int = option(0, "Drop conversations with fewer user turns (0 = no limit).")
    max_turns: int = option(0, "Drop conversations with more user turns (0 = no limit).")
    val_fraction: float = option(0.1, "Fraction of rows held out as the validation split.")
    seed: int = option(0, "Seed for the train/validation split.")

    def validate(self) -> None:
        if self.kind not in ("auto", "sft", "preference"):
            raise LabError(f"kind must be auto, sft or preference, not '{self.kind}'.")
        if not 0.0 < self.near_threshold <= 1.0:
            raise LabError(f"near_threshold must be in (0, 1], got {self.near_threshold}.")
        if not 0.0 <= self.val_fraction < 1.0:
            raise LabError(f"val_fraction must be in [0, 1), got {self.val_fraction}.")
        for low, high in (("min_tokens", "max_tokens"), ("min_turns", "max_turns")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo < 0 or hi < 0:
                raise LabError(f"{low} and {high} must be 0 (no limit) or positive.")
            if hi and lo > hi:
                raise LabError(f"{low} ({lo}) is larger than {high} ({hi}).")

    @property
    def kind_or_none(self) -> str | None:
        return None if self.kind == "auto" else self.kind


def fields_of(cls: type) -> list[dataclasses.Field]:
    return list(dataclasses.fields(cls))


def from_dict(cls: type[T], values: dict[str, Any], *, where: str = "config") -> T:
    """Build a config from a mapping, naming unknown keys and badly typed values."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise LabError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}.")
    converted = {name: coerce(known[name], value, where=where) for name, value in values.items()}
    return cls(**converted)


def coerce(f: dataclasses.Field, value: Any, *, where: str = "config") -> Any:
    """Convert ``value`` (possibly a string from the command line) to the field's type."""
    kind = type(f.default) if f.default is not dataclasses.MISSING else str
    try:
        if kind is bool and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            value = lowered in ("true", "1", "yes")
        elif kind in (int, float) and not isinstance(value, bool):
            value = kind(float(value)) if kind is int and isinstance(value, str) and "." in value else kind(value)
        elif kind is str and value is not None:
            value = str(value)
    except (TypeError, ValueError):
        raise LabError(f"{where}: {f.name} must be {kind.__name__}, got {value!r}.") from None
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise LabError(f"{where}: {f.name} must be one of {', '.join(map(str, choices))}, got {value!r}.")
    return value


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--flag`` per config field, with the field's help and default."""
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.metadata.get("cli", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} (default: {f.default})"
        if isinstance(f.default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, default=None, choices=f.metadata.get("choices"),
                                type=type(f.default), help=help_text)


def from_arguments(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """The config with every flag the user gave applied over the defaults."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if getattr(args, f.name, None) is not None}
    values.update(overrides)
    return from_dict(cls, values, where="command line")
