"""The lab_mc task's data, read from the JSONL file beside this module.

lm-eval resolves a YAML's ``data_files`` against the working directory, not the YAML's folder, so the
task names this loader (``custom_dataset: !function data.load``) to find its file wherever the lab is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA_FILE = Path(__file__).with_name("lab_mc.jsonl")


def rows() -> list[dict[str, Any]]:
    """The questions: ``{"id", "topic", "question", "choices" (4), "answer" (index into choices)}``."""
    return [json.loads(line) for line in DATA_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]


def load(**_: Any):
    """The task's dataset, one ``test`` split. lm-eval passes the task's metadata as keyword arguments."""
    from datasets import Dataset, DatasetDict

    return DatasetDict({"test": Dataset.from_list(rows())})
