"""Checkpoints side by side: answers to the same prompts with the same settings and seed, training curves
overlaid, the config fields that differ, and each run's final and best numbers; saved comparisons export as
Markdown.

Generation happens in the calling process (the app's, for the Compare tab) through a small cache of loaded
models, so comparing again does not reload a model already in memory.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.home import Home, lab_home

CACHE_SIZE = 2  # models kept loaded; a third evicts the least recently used
_cache: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
_cache_lock = threading.Lock()


def cached_model(source: str, home: Home) -> tuple[Any, Any]:
    from lab.models import load_for_generation
    from lab.train.loading import resolve_model_path

    path = resolve_model_path(source, home)
    with _cache_lock:
        if path in _cache:
            _cache.move_to_end(path)
            return _cache[path]
        loaded = load_for_generation(path, home)
        _cache[path] = loaded
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return loaded


@dataclass
class SourceAnswers:
    source: str
    answers: list[str] = field(default_factory=list)
    new_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return round(self.new_tokens / self.seconds, 1) if self.seconds else 0.0


def side_by_side(sources: list[str], prompts: list[list[dict[str, str]]], *, max_new_tokens: int = 128,
                 temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
                 home: Home | None = None) -> Iterator[SourceAnswers]:
    """Each source's answers to the same prompts (batched, left-padded), one source at a time as it finishes."""
    from lab.models import generate_with

    home = home or lab_home()
    if not 1 <= len(sources) <= 4:
        raise LabError(f"Compare 1 to 4 sources at a time (got {len(sources)}).")
    if not prompts:
        raise LabError("Give at least one prompt.")
    for source in sources:
        model, tokenizer = cached_model(source, home)
        started = time.perf_counter()
        answers = generate_with(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                                top_p=top_p, seed=seed)
        seconds = time.perf_counter() - started
        new_tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
        yield SourceAnswers(source, answers, new_tokens, seconds)


def run_ids(sources: list[str]) -> list[str]:
    return [s.removeprefix("run:") for s in sources if s.startswith("run:")]


def config_diff(ids: list[str], home: Home | None = None) -> list[dict[str, Any]]:
    """The config fields whose values differ between the runs: ``{"field", <run id>: value, ...}``."""
    from lab.train.runner import get_run

    configs = {run_id: get_run(run_id, home).config for run_id in ids}
    fields = sorted({k for c in configs.values() for k in c} - {"name"})  # the name labels a run; it is no setting
    return [{"field": f, **{run_id: c.get(f) for run_id, c in configs.items()}} for f in fields
            if len({json.dumps(c.get(f), sort_keys=True) for c in configs.values()}) > 1]


def run_numbers(ids: list[str], home: Home | None = None) -> list[dict[str, Any]]:
    """Final and best numbers of each run, from its metrics."""
    from lab.train.runner import get_run, read_metrics

    out = []
    for run_id in ids:
        run = get_run(run_id, home)
        rows = read_metrics(run.id, home)
        train = [r["loss"] for r in rows if r.get("split") == "train" and "loss" in r]
        evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
        summary = next((r for r in rows if r.get("split") == "summary"), {})
        out.append({"run": run.id, "method": run.method, "status": run.status,
                    "steps": rows[-1]["step"] if rows else 0, "final_train_loss": train[-1] if train else None,
                    "best_train_loss": min(train) if train else None, "final_eval_loss": evals[-1] if evals else None,
                    "best_eval_loss": min(evals) if evals else None, "runtime_s": summary.get("train_runtime")})
    return out


def save_comparison(document: dict[str, Any], home: Home | None = None) -> Path:
    """Keep a comparison (settings, prompts, answers, numbers) to look at later."""
    home = home or lab_home()
    folder = home.root / "comparisons"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = folder / f"{stamp}.json"
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False))
    return path


def to_markdown(document: dict[str, Any]) -> str:
    """A comparison as Markdown: settings, then each prompt with every source's answer, then the run numbers."""
    lines = [f"# Comparison {document.get('created_at', '')}", "",
             "Settings: " + ", ".join(f"{k} {v}" for k, v in document["settings"].items()), ""]
    for i, prompt in enumerate(document["prompts"]):
        lines += [f"## Prompt {i + 1}", "", f"> {prompt[-1]['content']}", ""]
        for source in document["answers"]:
            lines += [f"**{source['source']}** ({source['tokens_per_second']} tokens/s)", "",
                      source["answers"][i] or "*(empty)*", ""]
    if document.get("runs"):
        keys = list(document["runs"][0])
        lines += ["## Runs", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in document["runs"]]
    if document.get("config_diff"):
        ids = [k for k in document["config_diff"][0] if k != "field"]
        lines += ["", "## Config fields that differ", "", "| field | " + " | ".join(ids) + " |",
                  "|" + "---|" * (len(ids) + 1)]
        lines += ["| " + " | ".join([d["field"], *(str(d[i]) for i in ids)]) + " |" for d in document["config_diff"]]
    return "\n".join(lines) + "\n"
