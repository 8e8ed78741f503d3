"""The numbers behind the dataset statistics panel: lengths, turns and roles, and per kind what else matters
(an unpaired dataset's share of desirable replies, how many prompts have a reference answer). Plotting is
``lab.ui.plots``'s business; this module only counts. What is measured comes from the kind (``lab.data.kinds``).

Lengths are counted on message text alone (no chat template, no special tokens), in tokens
when a tokenizer is given and in whitespace-separated words otherwise.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from lab.data.canonical import Kind, Row, prompt_messages
from lab.data.kinds import KINDS, LABEL_WORDS, MESSAGES, RESPONSE, TEXT, field_texts, flags, kind_of, reply_texts
from lab.data.quality import turn_count

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TOKEN_BATCH = 1024


@dataclass
class DatasetStats:
    """Per-row lengths (prompt, the reply and, for preference rows, rejected) and counts."""

    n_rows: int
    kind: Kind
    unit: Literal["tokens", "words"]
    prompt_tokens: list[int] = field(default_factory=list)  # everything before the final reply
    # The reply (its name in ``reply``): SFT's last assistant reply, preference's chosen, an unpaired completion, a
    # prompt's reference answer (rows with one only).
    response_tokens: list[int] = field(default_factory=list)
    rejected_tokens: list[int] = field(default_factory=list)  # preference rows only
    turns: list[int] = field(default_factory=list)  # user turns per row
    # Messages per role; replies by side: 'chosen'/'rejected', an unpaired completion under its label's words.
    role_counts: dict[str, int] = field(default_factory=dict)
    reply: str = "response"
    labels: dict[str, int] = field(default_factory=dict)  # unpaired: replies per label (LABEL_WORDS)
    answered: int | None = None  # prompts: how many have a reference answer

    def summary(self) -> dict[str, dict[str, float]]:
        """``{list name: {mean, median, p95, max}}`` for every non-empty length list and turns."""
        lists = {"prompt_tokens": self.prompt_tokens, "response_tokens": self.response_tokens,
                 "rejected_tokens": self.rejected_tokens, "turns": self.turns}
        return {name: describe(values) for name, values in lists.items() if values}

    def notes(self) -> list[str]:
        """What the kind adds to the lengths, in sentences: the labels' shares, the answered prompts."""
        notes = [f"{count} {words} ({count / self.n_rows:.0%})" for words, count in self.labels.items()]
        if self.answered is not None and self.n_rows:
            notes.append(f"{self.answered} of {self.n_rows} prompts have a reference answer")
        return notes


def describe(values: list[int]) -> dict[str, float]:
    array = np.asarray(values, dtype=float)
    return {"mean": round(float(array.mean()), 2), "median": float(np.median(array)),
            "p95": round(float(np.percentile(array, 95)), 2), "max": float(array.max())}


def dataset_stats(rows: list[Row], tokenizer: PreTrainedTokenizerBase | None = None) -> DatasetStats:
    """Lengths, turns and role counts of canonical rows of one kind (told by their fields), and the kind's counts:
    labels of unpaired replies, prompts with a reference answer."""
    spec = kind_of(rows[0].data) if rows else KINDS["sft"]
    sides = [[reply_texts(row.data, reply) for row in rows] for reply in spec.replies]
    lengths = [total_lengths([texts for texts in side if texts is not None], tokenizer) for side in sides]
    optional = bool(spec.replies) and spec.fields.get(spec.replies[0]) == TEXT  # a reference answer may be ""
    return DatasetStats(
        n_rows=len(rows),
        kind=spec.name,
        unit="words" if tokenizer is None else "tokens",
        prompt_tokens=total_lengths([field_texts({"prompt": prompt_messages(row.data)}, "prompt") for row in rows],
                                    tokenizer),
        response_tokens=lengths[0] if lengths else [],
        rejected_tokens=lengths[1] if len(lengths) > 1 else [],
        turns=[turn_count(row) for row in rows],
        role_counts=role_counts(rows),
        reply=spec.replies[0] if spec.replies else RESPONSE,
        labels=dict(Counter(LABEL_WORDS[flag] for row in rows for flag in flags(row.data))),
        answered=sum(texts is not None for texts in sides[0]) if optional else None,
    )


def total_lengths(groups: list[list[str]], tokenizer: PreTrainedTokenizerBase | None) -> list[int]:
    """The summed length of each group's texts, all texts measured in one batched pass."""
    lengths = text_lengths([text for group in groups for text in group], tokenizer)
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
    """Messages per role in the conversation or prompt; replies kept apart count by side: a preference row's under
    'chosen' and 'rejected', an unpaired completion under its label's words."""
    counts: Counter[str] = Counter()
    for row in rows:
        data = row.data
        counts.update(message["role"] for message in data.get("messages") or data.get("prompt") or [])
        label = [LABEL_WORDS[flag] for flag in flags(data)]
        for name, how in kind_of(data).fields.items():
            if how == MESSAGES and name not in ("messages", "prompt"):
                counts[label[0] if label else name] += len(data[name])
    return dict(counts)
