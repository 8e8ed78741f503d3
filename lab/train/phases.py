"""Where a run's whole wait goes, from pressing Start (or ``python -m lab train``) to ``final/`` saved.

Each process of a run appends a line to ``RUN_DIR/phases.jsonl`` when a phase ends: ``create_run`` the start, the
runner the launch, the worker the rest (imports, model, data, tokenising, the reference pass, training, saving,
the closing samples). A phase's seconds are the time since the line before. Only the main process writes, so
a run of several ranks has one timeline. The worker prints the table at the end and ``summary.json`` keeps it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

PHASES_FILE = "phases.jsonl"
START = "start"  # the first line: when the run was created (or resumed)

# What each phase covers, for the log and the Train tab's outcome.
MEANING = {
    "queue": "checks before launch, and waiting for a GPU",
    "launch": "starting the run's processes",
    "imports": "importing torch, transformers and TRL",
    "model": "loading the model (and quantising it)",
    "data": "reading the dataset version",
    "samples before": "answering the fixed prompts before training",
    "tokenising": "the trainer's tokenising, masking and packing",
    "reference": "DPO's reference log-probabilities, once",
    "training": "the training loop",
    "saving": "writing final/",
    "samples after": "the closing report: the tuned model's answers",
}


def begin(run_dir: Path, at: float | None = None) -> None:
    """Start the run's timeline afresh (a new run, or a resumed one), at ``at`` (a ``time.time()``) or now."""
    (Path(run_dir) / PHASES_FILE).write_text(json.dumps({"phase": START, "at": at or time.time()}) + "\n")


def mark(run_dir: Path, phase: str) -> None:
    """``phase`` ended now."""
    path = Path(run_dir) / PHASES_FILE
    if path.exists():  # a worker started by hand from launch.sh has no start line: nothing to measure against
        with path.open("a") as out:
            out.write(json.dumps({"phase": phase, "at": time.time()}) + "\n")


def durations(run_dir: Path) -> dict[str, float]:
    """Seconds per phase in the order they happened (a phase seen twice adds up)."""
    path = Path(run_dir) / PHASES_FILE
    if not path.exists():
        return {}
    marks = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out: dict[str, float] = {}
    for before, after in zip(marks, marks[1:]):
        out[after["phase"]] = round(out.get(after["phase"], 0.0) + after["at"] - before["at"], 2)
    return out


def describe(phases: dict[str, float]) -> str:
    """One line for the log: ``whole wait 31.2 s: launch 1.1 s · imports 4.0 s · ...``."""
    total = sum(phases.values())
    return f"whole wait {total:.1f} s: " + " · ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items())
