"""The rows a trainer takes, saved once as a dataset under ``LAB_HOME/cache/datasets/<content hash>``.

A dataset built in memory (``Dataset.from_list``) gets a random fingerprint, so nothing TRL derives from it can
be reused. One loaded from files gets a fingerprint from its content, and ``datasets`` then keeps the result of
every ``map`` beside those files, keyed by the function, its arguments (the tokenizer among them) and the input's
fingerprint. So the second run on the same rows with the same tokenizer and settings skips TRL's tokenising,
masking and truncation, and a full-model DPO run also its reference log-probabilities (TRL caches those the same
way, keyed by the reference's weights: ``lab.train.objectives.dpo``). Different settings simply add files.

The folder is pruned to ``LAB_DATA_CACHE_GIB`` (default 20) after each save, the least recently used first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.home import Home

CACHE_GIB_ENV = "LAB_DATA_CACHE_GIB"
CACHE_GIB = 20.0


def tokenizer_keyed(model_path: str, *parts: Any) -> str | None:
    """A cache file's name for ``parts`` measured with the tokenizer in ``model_path``: named also by the tokenizer's
    files (name, size, modification time), so a changed tokenizer is measured again. None for a model that is no
    local folder (a hub id: nothing on disk to name it by)."""
    folder = Path(model_path)
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if p.name.startswith(("tokenizer", "chat_template", "special_tokens")))
    key = "|".join([str(part) for part in parts] +
                   [f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files])
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def cache_root(home: Home) -> Path:
    return home.root / "cache" / "datasets"


def content_key(rows: list[dict[str, Any]]) -> str:
    """The rows' own hash (with the datasets version, whose file format the folder holds)."""
    import datasets

    digest = hashlib.sha256(datasets.__version__.encode())
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:24]


def cached_dataset(rows: list[dict[str, Any]], home: Home) -> Any:
    """``rows`` as a file-backed ``datasets.Dataset``: saved on first use, loaded (memory-mapped) after."""
    from datasets import Dataset, load_from_disk

    folder = cache_root(home) / content_key(rows)
    if not (folder / "dataset_info.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=folder.parent))
        Dataset.from_list(rows).save_to_disk(str(staging))
        try:
            staging.rename(folder)  # atomic: a run beside this one sees the whole dataset or none
        except OSError:  # that run saved the same rows first
            shutil.rmtree(staging, ignore_errors=True)
        prune(home)
    os.utime(folder)  # recently used: pruned last
    return load_from_disk(str(folder))


def prune(home: Home, keep_gib: float | None = None) -> list[str]:
    """Remove the least recently used cached datasets (with everything derived from them) until the folder holds at
    most ``keep_gib``; returns the keys removed. Saves half-written by a killed process are removed too."""
    keep = float(os.environ.get(CACHE_GIB_ENV, CACHE_GIB)) if keep_gib is None else keep_gib
    root = cache_root(home)
    if not root.exists():
        return []
    removed = []
    for stale in root.glob(".saving-*"):
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    entries = [(folder.stat().st_mtime, folder, folder_bytes(folder)) for folder in root.iterdir()
               if folder.is_dir() and not folder.name.startswith(".")]
    total = sum(size for _, _, size in entries)
    for _, folder, size in sorted(entries):
        if total <= keep * 1024**3:
            break
        shutil.rmtree(folder, ignore_errors=True)
        total -= size
        removed.append(folder.name)
    return removed


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
