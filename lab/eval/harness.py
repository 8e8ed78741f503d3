"""Forgetting checks with lm-evaluation-harness: score a model (base, or a run's output) on multiple-choice
benchmarks before and after fine-tuning, to see what the tuning cost elsewhere.

    python -m lab.eval.harness --model tiny --task lab_mc --limit 20
    python -m lab.eval.harness --model run:<id> --task lab_mc --task arc_easy --json   # arc_easy needs the Hub

The model is loaded the lab's way (``'tiny'``, ``run:<id>`` with LoRA adapters on their base, paths, hub
ids) and handed to lm-eval's ``HFLM`` as an instance. ``OFFLINE_TASKS`` ship in ``lab/eval/tasks/`` with
their data and never touch the network; ``STANDARD_TASKS`` are lm-eval's own, whose datasets come from the
Hugging Face Hub. Tasks are zero-shot, without a chat template, so base and tuned models see the same prompts.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.home import Home, lab_home

TASKS_DIR = Path(__file__).with_name("tasks")

_OFFLINE = {
    "lab_mc": "60 four-choice questions written for the lab (general knowledge, arithmetic, words); runs offline",
}
OFFLINE_TASKS: list[str] = list(_OFFLINE)
"""Tasks shipped in ``lab/eval/tasks/`` with their data: they run with no network."""

STANDARD_TASKS: dict[str, str] = {
    "mmlu": "57 subjects of exam questions, from school to professional level (14k questions)",
    "hellaswag": "pick the sensible continuation of an everyday scene (commonsense)",
    "arc_easy": "grade-school science questions, the easy set",
    "arc_challenge": "grade-school science questions that simple retrieval gets wrong",
    "truthfulqa_mc2": "questions where popular misconceptions tempt a false answer",
    "winogrande": "fill in the blank by resolving who or what a pronoun means",
    "piqa": "choose the physically sensible way to reach a goal",
    "boolq": "yes/no questions about a Wikipedia passage",
    "openbookqa": "science questions needing a fact plus common knowledge",
    "lambada_openai": "predict the last word of a passage (long-range context)",
}
"""lm-eval's well-known tasks, for users with network: their datasets come from the Hugging Face Hub."""

PROGRESS_EVERY_S = 0.5  # the worker writes each report to the store; twice a second is enough for a bar


def list_tasks() -> dict[str, str]:
    """Task name → one-line description: the offline tasks first, then the standard ones (need the Hub).
    Any other task lm-eval knows (e.g. ``mmlu_astronomy``) is accepted by ``evaluate`` too."""
    return {**_OFFLINE, **{name: f"{text} (needs the Hub)" for name, text in STANDARD_TASKS.items()}}


def check_tasks(tasks: list[str]) -> list[str]:
    """The task names without repeats, or a LabError naming the ones lm-eval does not know. Instant for offline
    and standard names; any other name costs one scan of lm-eval's task folders (about 10 s)."""
    names = list(dict.fromkeys(t.strip() for t in tasks if t.strip()))
    if not names:
        raise LabError(f"Name at least one lm-eval task, e.g. {OFFLINE_TASKS[0]} (offline) or mmlu.")
    others = [n for n in names if n not in _OFFLINE and n not in STANDARD_TASKS]
    if others:
        known = set(task_manager(standard=True).all_tasks)
        unknown = [n for n in others if n not in known]
        if unknown:
            raise LabError(f"Unknown lm-eval task {', '.join(repr(n) for n in unknown)}. Offline tasks shipped "
                           f"with the lab: {', '.join(OFFLINE_TASKS)}. Standard lm-eval tasks "
                           f"({', '.join(list(STANDARD_TASKS)[:5])}, ...) need network access to the Hugging "
                           "Face Hub for their data.")
    return names


def evaluate(model_ref: str, tasks: list[str], *, limit: int | None = None, home: Home | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Scores of ``model_ref`` on lm-eval ``tasks``, at most ``limit`` samples per task (the first ones, so
    runs with the same limit compare). Returns ``{"model", "tasks": {task: {"metric", "value", "stderr",
    "samples", "metrics"}}, "limit", "lm_eval_version"}``; ``progress(done, total)`` counts model requests
    (a four-choice question is four)."""
    from importlib.metadata import version

    from lm_eval.evaluator import evaluate as run_harness

    from lab.models import load_for_generation
    from lab.train.loading import resolve_model_path

    home = home or lab_home()
    if limit is not None and limit < 1:
        raise LabError(f"limit must be a positive number of samples per task, not {limit}.")
    names = check_tasks(tasks)
    path = resolve_model_path(model_ref, home)  # a bad model fails before any dataset is fetched
    loaded, leaves = load_tasks(names)  # and a task with no data fails before a large model is loaded
    model, tokenizer = load_for_generation(path, home)
    tracker = Progress(progress)
    lm = harness_model(model, tokenizer, tracker)
    results = run_harness(lm=lm, task_dict=loaded, limit=limit, log_samples=False)
    tracker.finish()
    return {"model": model_ref, "tasks": summarise(results["results"], names, leaves), "limit": limit,
            "lm_eval_version": version("lm_eval")}


@functools.lru_cache(maxsize=2)
def task_manager(standard: bool):
    """lm-eval's task index over the lab's folder, and over its own ~15k task configs when ``standard``
    (about 10 s to scan, hence cached). Offline runs skip that scan."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=standard)


def load_tasks(names: list[str]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """lm-eval's TaskDict for ``names`` (datasets loaded, zero-shot unless a task fixes its shots) and each
    name's leaf tasks. Loaded one name at a time so a dataset that cannot be fetched is named in the error."""
    from lm_eval.defaults import DEFAULT_OTHER_SEED

    manager = task_manager(standard=any(n not in _OFFLINE for n in names))
    merged: dict[str, Any] = {"tasks": {}, "groups": {}, "group_map": {}}
    leaves: dict[str, list[str]] = {}
    for name in names:
        try:
            loaded = manager.load([name])
        except OSError as err:  # datasets raises ConnectionError offline, DatasetNotFoundError when gated/missing
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise LabError(f"lm-eval task '{name}' needs its dataset from the Hugging Face Hub, which could not "
                           f"provide it ({first}). Standard tasks need network access (or the dataset already in "
                           f"the local Hugging Face cache); offline tasks: {', '.join(OFFLINE_TASKS)}.") from None
        for key in merged:
            merged[key].update(loaded.get(key, {}))
        leaves[name] = list(loaded["tasks"])
    for task in merged["tasks"].values():
        if task.get_config("num_fewshot") is None:  # what lm-eval's simple_evaluate does when no shots are asked
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=DEFAULT_OTHER_SEED)
    return merged, leaves


def harness_model(model: Any, tokenizer: Any, tracker: Progress):
    """lm-eval's HFLM around a model already in memory, reporting every answered request to ``tracker``."""
    import torch
    from lm_eval.models.huggingface import HFLM

    # lm-eval picks a batch size by trying forward passes on a GPU; on a CPU a fixed small batch is faster.
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size="auto" if torch.cuda.is_available() else 8)
    lm.set_cache_hook(tracker)  # lm-eval's response-cache hook sees each request as it is answered
    for kind in ("loglikelihood", "loglikelihood_rolling", "generate_until"):
        setattr(lm, kind, tracker.counting(getattr(lm, kind)))
    return lm


class Progress:
    """``(done, total)`` over the requests lm-eval sends to the model, reported at most every
    ``PROGRESS_EVERY_S``. ``total`` grows as each request method (one call per request type) is entered;
    ``done`` counts answers through lm-eval's response-cache hook, which HFLM calls once per answered request."""

    def __init__(self, report: Callable[[int, int], None] | None) -> None:
        self.report, self.done, self.total = report, 0, 0
        self.last, self.sent = 0.0, (-1, -1)

    def counting(self, method: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
        def run(requests: list[Any], *args: Any, **kwargs: Any) -> list[Any]:
            self.total += len(requests)
            self.send(force=True)
            answers = method(requests, *args, **kwargs)
            self.done = self.total  # request types run one after another: all of this one are answered
            self.send(force=True)
            return answers

        return run

    def add_partial(self, attr: str, req: Any, res: Any) -> None:
        self.done = min(self.done + 1, self.total)
        self.send()

    def finish(self) -> None:
        self.done = self.total
        self.send(force=True)

    def send(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.report and (self.done, self.total) != self.sent and (force or now - self.last >= PROGRESS_EVERY_S):
            self.last, self.sent = now, (self.done, self.total)
            self.report(self.done, self.total)


def summarise(results: dict[str, dict[str, Any]], names: list[str],
              leaves: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """One entry per requested task; a tag or a group without an aggregate score gives one per leaf task.
    The headline metric is the task's first (lm-eval keeps ``metric_list`` order); ``metrics`` holds all."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        for shown in [name] if metrics_of(results.get(name, {})) else leaves[name]:
            if metrics_of(results.get(shown, {})):  # a task that scores nothing numeric has no headline
                out[shown] = entry(results[shown])
    return out


def metrics_of(row: dict[str, Any]) -> dict[str, tuple[float, float | None]]:
    """``{"acc": (value, stderr)}`` from lm-eval's ``{"acc,none": v, "acc_stderr,none": s}``; a filter other
    than ``none`` stays in the name (``exact_match,strict-match``)."""
    found: dict[str, tuple[float, float | None]] = {}
    for key, value in row.items():
        metric, sep, kind = key.partition(",")
        if not sep or "_stderr" in metric or not number(value):
            continue
        stderr = row.get(f"{metric}_stderr,{kind}")
        name = metric if kind == "none" else key
        found[name] = (float(value), float(stderr) if number(stderr) else None)
    return found


def number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)  # lm-eval writes "N/A" for no stderr


def entry(row: dict[str, Any]) -> dict[str, Any]:
    found = metrics_of(row)
    metric = next(iter(found))
    value, stderr = found[metric]
    return {"metric": metric, "value": value, "stderr": stderr, "samples": int(row.get("sample_len", 0)),
            "metrics": {k: v for k, (v, _) in found.items()}}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m lab.eval.harness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="tiny, run:<id>, a path or a hub id (default: tiny)")
    parser.add_argument("--task", action="append", help=f"an lm-eval task, repeatable (default: {OFFLINE_TASKS[0]}); "
                        f"offline: {', '.join(OFFLINE_TASKS)}; with network: {', '.join(STANDARD_TASKS)}, ...")
    parser.add_argument("--limit", type=int, help="samples per task at most (default: all)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        result = evaluate(args.model, args.task or OFFLINE_TASKS[:1], limit=args.limit)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for task, score in result["tasks"].items():
        stderr = f" ± {score['stderr']:.3f}" if score["stderr"] is not None else ""
        print(f"{task:<20} {score['metric']} {score['value']:.3f}{stderr}  ({score['samples']} samples)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
