"""Held-out loss and perplexity of a model on a dataset version's replies, per example and overall.

The loss is the mean negative log-likelihood of the final assistant reply (the last one trained on, where
OpenAI weights keep later replies as context) given everything before it, as the chat template renders it:
the same tokens SFT trains on for a single-turn row. Perplexity is ``exp`` of the token-weighted mean loss.
Per-example losses let the Eval tab show the examples the model fits best and worst.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from lab.data.canonical import is_context
from lab.home import Home, lab_home


def reply_labels(messages: list[dict[str, str]], tokenizer: Any, max_length: int) -> tuple[list[int], list[int]]:
    """Input ids of the conversation up to its last trained reply (a final reply of OpenAI weight 0 is context,
    not scored) and labels that are -100 except on that reply's tokens."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant" and not is_context(m))
    messages = [{"role": m["role"], "content": m["content"]} for m in messages[:last + 1]]
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True,
                                           return_dict=False)
    full = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    if full[:len(prompt)] != prompt:  # a template that does not render the prompt as a prefix of the whole
        prompt = prompt[:max(0, len(prompt) - 1)]
    ids = full[:max_length]
    labels = [-100] * min(len(prompt), len(ids)) + ids[len(prompt):]
    return ids, labels


def example_losses(model: Any, tokenizer: Any, rows: list[dict[str, Any]], *, max_length: int = 1024,
                   batch_size: int = 8, progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """``{"loss", "tokens"}`` per row (rows without reply tokens after truncation get ``loss`` None)."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[dict[str, Any]] = []
    for start in range(0, len(rows), batch_size):
        batch = [reply_labels(r["messages"], tokenizer, max_length) for r in rows[start:start + batch_size]]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in batch], device=device)
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch], device=device)
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch], device=device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(shift_logits.transpose(1, 2), shift_labels, ignore_index=-100,
                                                reduction="none")
        counted = (shift_labels != -100).sum(dim=1)
        for row_nll, n in zip(nll.sum(dim=1).tolist(), counted.tolist()):
            out.append({"loss": row_nll / n if n else None, "tokens": n})
        if progress:
            progress(min(start + batch_size, len(rows)), len(rows))
    return out


def evaluate(model_ref: str, dataset_ref: str, *, split: str = "validation", max_rows: int = 200,
             max_length: int = 1024, examples: int = 3, home: Home | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Loss and perplexity of ``model_ref`` on the replies of ``dataset_ref``'s ``split``, with the best and
    worst fitted examples."""
    from lab.data.versions import read_rows
    from lab.errors import LabError
    from lab.models import load_for_generation
    from lab.train.datasets import resolve_version
    from lab.train.loading import resolve_model_path

    home = home or lab_home()
    version = resolve_version(dataset_ref, home)
    if version.kind != "sft":
        raise LabError(f"{version.ref} holds preference pairs; perplexity needs an SFT dataset version.")
    rows = read_rows(version, split, home)[:max_rows or None]
    if not rows:
        raise LabError(f"{version.ref} has no {split} rows to evaluate on.")
    model, tokenizer = load_for_generation(resolve_model_path(model_ref, home), home)
    per_row = example_losses(model, tokenizer, rows, max_length=max_length, progress=progress)
    scored = [(r, s) for r, s in zip(rows, per_row) if s["loss"] is not None]
    tokens = sum(s["tokens"] for _, s in scored)
    if not tokens:
        raise LabError(f"No reply tokens left in {version.ref} at max_length {max_length}.")
    loss = sum(s["loss"] * s["tokens"] for _, s in scored) / tokens
    ranked = sorted(scored, key=lambda pair: pair[1]["loss"])

    def shown(pair: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
        return {"messages": pair[0]["messages"], "loss": round(pair[1]["loss"], 4), "line": pair[0].get("line")}

    return {"model": model_ref, "dataset": version.ref, "split": split, "rows": len(scored), "tokens": tokens,
            "loss": round(loss, 4), "perplexity": round(math.exp(min(loss, 50)), 3),
            "best": [shown(p) for p in ranked[:examples]], "worst": [shown(p) for p in ranked[::-1][:examples]]}
