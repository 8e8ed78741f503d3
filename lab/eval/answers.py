"""What generation-based evaluations share: prompts with their reference replies from a dataset version, and a
model's batched answers to them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lab.errors import LabError
from lab.home import Home

Progress = Callable[[int, int], None]


def reference_rows(dataset_ref: str, split: str, max_rows: int, home: Home) -> list[dict[str, Any]]:
    """``{"prompt": messages before the final reply, "reference": that reply, "line"}`` for the first
    ``max_rows`` rows (0 = all) of an SFT version's split that end with an assistant reply."""
    from lab.data.versions import read_rows
    from lab.train.datasets import resolve_version

    version = resolve_version(dataset_ref, home)
    if version.kind != "sft":
        raise LabError(f"{version.ref} holds preference pairs; this evaluation needs an SFT dataset version "
                       "(conversations ending with the reference reply).")
    out = []
    for row in read_rows(version, split, home):
        messages = row["messages"]
        if len(messages) >= 2 and messages[-1]["role"] == "assistant":
            out.append({"prompt": messages[:-1], "reference": messages[-1]["content"], "line": row.get("line")})
        if max_rows and len(out) == max_rows:
            break
    if not out:
        raise LabError(f"{version.ref} has no {split} rows ending with an assistant reply to evaluate on.")
    return out


def generate_answers(model_ref: str, prompts: list[list[dict[str, str]]], *, max_new_tokens: int,
                     batch_size: int = 8, temperature: float = 0.0, seed: int = 0, home: Home,
                     progress: Progress | None = None) -> list[str]:
    """The model's answers, batch by batch (progress after each); the model is freed before returning, so the
    next model (or the judge) has the memory."""
    from lab.models import generate_with, load_for_generation
    from lab.train.loading import resolve_model_path

    model, tokenizer = load_for_generation(resolve_model_path(model_ref, home), home)
    answers: list[str] = []
    for start in range(0, len(prompts), batch_size):
        answers += generate_with(model, tokenizer, prompts[start:start + batch_size], max_new_tokens=max_new_tokens,
                                 temperature=temperature, seed=seed + start)
        if progress:
            progress(len(answers), len(prompts))
    del model, tokenizer
    free_memory()
    return answers


def free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
