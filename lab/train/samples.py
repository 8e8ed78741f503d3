"""Before/after samples and the run's closing summary, written by the worker into the run directory.

``samples.json`` holds a few fixed prompts (the first rows of the eval split, else of the train split)
answered greedily by the model as loaded (before training) and as trained, so a user reads what the run
changed. ``summary.json`` puts the pre-launch memory estimate beside the measured peak. ``completions.jsonl``: an
online objective's (GRPO, RLOO) completions sampled while it trains, with their rewards, a few per logging step."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lab.config import TrainConfig

SAMPLES_FILE = "samples.json"
SUMMARY_FILE = "summary.json"
COMPLETIONS_FILE = "completions.jsonl"  # an online objective's sampled completions and their rewards, per step


def fixed_prompts(rows: list[dict[str, Any]], n: int) -> list[list[dict[str, str]]]:
    """The prompt of the first ``n`` rows: an SFT conversation without its last reply, or a preference prompt."""
    prompts = []
    for row in rows[:n]:
        prompts.append(list(row["prompt"]) if "prompt" in row else list(row["messages"][:-1]))
    return [p for p in prompts if p]


def write_before(run_dir: Path, cfg: TrainConfig, model: Any, tokenizer: Any,
                 prompts: list[list[dict[str, str]]]) -> None:
    """Answer the prompts with the untrained model; kept across a resume (the base does not change)."""
    from lab.models import generate_with

    path = run_dir / SAMPLES_FILE
    if not prompts or path.exists():
        return
    base = generate_with(model, tokenizer, prompts, max_new_tokens=cfg.sample_max_new_tokens, seed=cfg.seed)
    path.write_text(json.dumps({"prompts": prompts, "base": base, "tuned": None}, indent=1))


def write_after(run_dir: Path, cfg: TrainConfig, model: Any, tokenizer: Any) -> None:
    from lab.models import generate_with

    path = run_dir / SAMPLES_FILE
    if not path.exists():
        return
    data = json.loads(path.read_text())
    data["tuned"] = generate_with(model, tokenizer, data["prompts"], max_new_tokens=cfg.sample_max_new_tokens,
                                  seed=cfg.seed)
    path.write_text(json.dumps(data, indent=1))


def read_samples(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / SAMPLES_FILE
    return json.loads(path.read_text()) if path.exists() else None


def write_summary(run_dir: Path, cfg: TrainConfig, *, precision: str, train_rows: int,
                  setup_seconds: float | None = None, loop: dict[str, Any] | None = None) -> None:
    """Estimated memory by component beside the peak the CUDA allocator saw (None on CPU), the seconds from the
    worker's start until training began (loading, tokenising, DPO's precomputed reference), the loop's measured
    rate (``loop``: train_tokens, train_runtime, tokens_per_second) and the whole wait by phase
    (``lab.train.phases``: phases, wall_seconds)."""
    import torch

    from lab.train import phases
    from lab.train.estimate import memory, model_shape

    timeline = phases.durations(run_dir)
    summary: dict[str, Any] = {"precision": precision, "train_rows": train_rows, "device": "cpu",
                               "peak_gpu_memory_gib": None, "setup_seconds": setup_seconds, **(loop or {}),
                               "phases": timeline, "wall_seconds": round(sum(timeline.values()), 2)}
    try:
        summary["estimate_gib"] = memory(cfg, model_shape(cfg.model), bf16=precision != "fp32",
                                         processes=int(os.environ.get("WORLD_SIZE", "1"))).gib()
    except Exception as err:  # noqa: BLE001 - an estimate that cannot be made must not fail a finished run
        summary["estimate_error"] = str(err).splitlines()[0]
    if torch.cuda.is_available():
        summary["device"] = torch.cuda.get_device_name()
        summary["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
        summary["peak_gpu_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 1024**3, 3)
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.exists() else None


def read_completions(run_dir: str | Path, last: int = 50) -> list[dict[str, Any]]:
    """The last ``last`` completions sampled during an online run (GRPO, RLOO), oldest first: {step, prompt, completion,
    rewards: {name: value}, reward}; [] for a run that wrote none."""
    path = Path(run_dir) / COMPLETIONS_FILE
    if not path.exists():
        return []
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for line in lines[-last:] if last > 0 else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written right now
    return rows
