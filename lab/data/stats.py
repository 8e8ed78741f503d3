"""The numbers behind the dataset statistics panel: lengths, turns and roles. Plotting is
``lab.ui.plots``'s business; this module only counts.

Lengths are counted on message text alone (no chat template, no special tokens), in tokens
when a tokenizer is given and in whitespace-separated words otherwise.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from lab.data.canonical import Kind, Message, Row, prompt_messages
from lab.data.quality import turn_count

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TOKEN_BATCH = 1024


@dataclass
class DatasetStats:
    """Per-row lengths (prompt, response and, for preference rows, rejected) and counts."""

    n_rows: int
    kind: Kind
    unit: Literal["tokens", "words"]
    prompt_tokens: list[int] = field(default_factory=list)  # everything before the final reply
    response_tokens: list[int] = field(default_factory=list)  # the last assistant reply; preference: chosen
    rejected_tokens: list[int] = field(default_factory=list)  # preference rows only
    turns: list[int] = field(default_factory=list)  # user turns per row
    role_counts: dict[str, int] = field(default_factory=dict)  # messages per role; 'chosen'/'rejected' sides

    def summary(self) -> dict[str, dict[str, float]]:
        """``{list name: {mean, median, p95, max}}`` for every non-empty length list and turns."""
        lists = {"prompt_tokens": self.prompt_tokens, "response_tokens": self.response_tokens,
                 "rejected_tokens": self.rejected_tokens, "turns": self.turns}
        return {name: describe(values) for name, values in lists.items() if values}


def describe(values: list[int]) -> dict[str, float]:
    array = np.asarray(values, dtype=float)
    return {"mean": round(float(array.mean()), 2), "median": float(np.median(array)),
            "p95": round(float(np.percentile(array, 95)), 2), "max": float(array.max())}


def dataset_stats(rows: list[Row], tokenizer: PreTrainedTokenizerBase | None = None) -> DatasetStats:
    """Lengths, turns and role counts of canonical rows (all SFT or all preference)."""
    kind: Kind = "preference" if rows and "chosen" in rows[0].data else "sft"
    prompts, responses, rejected = zip(*(row_sides(row) for row in rows)) if rows else ((), (), ())
    return DatasetStats(
        n_rows=len(rows),
        kind=kind,
        unit="words" if tokenizer is None else "tokens",
        prompt_tokens=total_lengths(list(prompts), tokenizer),
        response_tokens=total_lengths(list(responses), tokenizer),
        rejected_tokens=total_lengths(list(rejected), tokenizer) if kind == "preference" else [],
        turns=[turn_count(row) for row in rows],
        role_counts=role_counts(rows),
    )


def row_sides(row: Row) -> tuple[list[Message], list[Message], list[Message]]:
    """(prompt, response, rejected) messages; rejected is empty for SFT rows."""
    data = row.data
    if "messages" in data:
        return prompt_messages(data), data["messages"][-1:], []
    return data["prompt"], data["chosen"], data["rejected"]


def total_lengths(groups: list[list[Message]], tokenizer: PreTrainedTokenizerBase | None) -> list[int]:
    """The summed length of each group's messages, all texts measured in one batched pass."""
    lengths = text_lengths([m["content"] for group in groups for m in group], tokenizer)
    totals, position = [], 0
    for group in groups:
        totals.append(sum(lengths[position:position + len(group)]))
        position += len(group)
    return totals


def text_lengths(texts: list[str], tokenizer: PreTrainedTokenizerBase | None) -> list[int]:
    if tokenizer is None:
        return [len(text.split()) for text in texts]
    lengths: list[int] = []
    for start in range(0, len(texts), TOKEN_BATCH):
        ids = tokenizer(texts[start:start + TOKEN_BATCH], add_special_tokens=False)["input_ids"]
        lengths.extend(len(tokens) for tokens in ids)
    return lengths


def role_counts(rows: list[Row]) -> dict[str, int]:
    """Messages per role; a preference row's replies count under 'chosen' and 'rejected'."""
    counts: Counter[str] = Counter()
    for row in rows:
        data = row.data
        counts.update(message["role"] for message in data.get("messages") or data.get("prompt") or [])
        if "chosen" in data:
            counts["chosen"] += len(data["chosen"])
            counts["rejected"] += len(data["rejected"])
    return dict(counts)
