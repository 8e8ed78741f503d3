"""LoRA adapters, and the ones beneath them.

A LoRA run started from another LoRA run's model (DPO or KTO after a LoRA SFT) trains on the parent merged into its
base, so its own adapter is a change to that merged model. PEFT records only the root base in the adapter's
``adapter_config.json``; loaded on that alone, the child's model would lose the parent's training without a word
(its answers, perplexity and export were the untuned base's). So the worker writes, beside the child's adapter, the
adapters beneath it (``BELOW``, root first), and every loader applies the whole stack through :func:`apply`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BELOW = "lab_adapters_below.json"  # in an adapter's folder: the adapters merged into its base before it trained


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def base_of(path: str | Path) -> str:
    """The model an adapter's stack sits on (the root base's name or folder); a model that is no adapter is its
    own base."""
    if not is_adapter(path):
        return str(path)
    return json.loads((Path(path) / "adapter_config.json").read_text())["base_model_name_or_path"]


def stack(path: str | Path) -> list[str]:
    """The adapters to apply to :func:`base_of` ``path``, in order: those beneath it, then its own; none for a model
    that is no adapter."""
    if not is_adapter(path):
        return []
    below = Path(path) / BELOW
    return [*(json.loads(below.read_text()) if below.is_file() else []), str(path)]


def apply(model: Any, path: str | Path) -> Any:
    """``model`` (the base of ``path``) with every adapter of ``path``'s stack merged in, in order."""
    from peft import PeftModel

    for adapter in stack(path):
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return model


def record_below(adapter_dir: str | Path, parent: str | Path) -> None:
    """Write, beside a freshly trained adapter, the stack of the model it was trained on (``parent``: a folder
    holding a model or an adapter). Nothing is written when the parent is a plain model."""
    beneath = stack(parent)
    if beneath and is_adapter(adapter_dir):
        (Path(adapter_dir) / BELOW).write_text(json.dumps(beneath, indent=1) + "\n")
