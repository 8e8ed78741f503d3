"""Reward functions for GRPO and RLOO: presets that check a reply against the row, a reward model from the lab,
and a user's own Python function; chosen and weighted by the ``rewards`` setting ("numeric_answer:1, format:0.5").

TRL calls each reward as ``f(prompts, completions, completion_ids, **columns)`` with one value per completion
(None = not scored) and logs ``rewards/<name>/mean`` and ``/std``; the run's total is the weighted sum. The
columns are the row's ``answer`` and the keys of its ``meta`` JSON object (what a prompts file held besides the
prompt), so a user's function reads ``answer=[...]``, ``difficulty=[...]`` as keyword arguments.

A user's function is code from a file: before launch (``check_reward_file``) the file must lie where the lab
reads files from (``lab.paths``), parse, define the function with a signature TRL can call, and return one
number per completion on two rows of the run's dataset, called in a separate process; in the worker an
exception inside it fails the run with the file and line.

A leaf at import: ``lab.config`` takes ``described()`` for the ``rewards`` help.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.errors import LabError

if TYPE_CHECKING:
    from lab.config import TrainConfig
    from lab.home import Home

# name -> what it scores (1 = right, 0 = wrong; None where the row cannot be scored, e.g. no reference answer)
PRESETS: dict[str, str] = {
    "exact_answer": "the reply's final answer (after '####', 'answer:', \\boxed{}, else its last line) equals the "
                    "row's (read the same way: GSM8K's and MATH's answers are whole solutions), ignoring case, spaces "
                    "and end punctuation, or as numbers",
    "numeric_answer": "the last number in the reply's final answer equals the number in the row's answer",
    "format": "the stripped reply matches the regular expression reward_pattern",
    "json": "the reply (or its ```json block) parses as JSON",
    "length": "1 at length_target characters, falling linearly to 0 at twice (or zero times) that",
    "reward_model": "the score of the reward model in reward_model (a lab reward run or a path)",
    "custom": "a function of yours: reward_file PATH.py:FUNCTION",
}
CHECK_TIMEOUT_S = 60  # for importing and calling a user's function on two rows before launch


def described() -> str:
    return "; ".join(f"{name} = {words}" for name, words in PRESETS.items())


def table() -> str:
    """The presets as a Markdown table (the Train tab shows it under the rewards field)."""
    escaped = {name: words.replace("|", "\\|") for name, words in PRESETS.items()}
    return "e.g. `exact_answer:1, format:0.2`\n\n| reward | what it scores |\n|---|---|\n" + "\n".join(
        f"| `{name}` | {words} |" for name, words in escaped.items())


def parse(text: str) -> list[tuple[str, float]]:
    """``"numeric_answer:1, format:0.5"`` → ``[("numeric_answer", 1.0), ("format", 0.5)]`` (weight 1 if left out)."""
    chosen: list[tuple[str, float]] = []
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        name, _, weight = (s.strip() for s in part.partition(":"))
        if name not in PRESETS:
            raise LabError(f"rewards: unknown reward '{name}'; choose from {', '.join(PRESETS)} "
                           "(written as 'name:weight, name:weight').")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise LabError(f"rewards: the weight of '{name}' must be a number, not '{weight}'.") from None
        if not math.isfinite(value):
            raise LabError(f"rewards: the weight of '{name}' must be a finite number, not '{weight}'.")
        if name in (n for n, _ in chosen):
            raise LabError(f"rewards: '{name}' is listed twice; give it one weight.")
        chosen.append((name, value))
    if not chosen:
        raise LabError("rewards: choose at least one reward function, e.g. 'numeric_answer:1' "
                       f"(presets: {', '.join(PRESETS)}).")
    return chosen


# --------------------------------------------------------------------------- the presets

FINAL_MARKERS = (re.compile(r"####\s*(.+)"), re.compile(r"\\boxed\{([^{}]*)\}"),
                 re.compile(r"answer\s*(?:is|:)\s*(.+)", re.IGNORECASE))
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def text_of(completion: Any) -> str:
    """A completion as text: TRL passes a conversational one as a list of messages (the reply last)."""
    if isinstance(completion, list):
        return str(completion[-1].get("content") or "") if completion else ""
    return str(completion)


def final_answer(text: str) -> str:
    """What a reply gives as its answer: after the last '####', inside the last \\boxed{}, after 'answer:' /
    'answer is', else its last non-empty line."""
    for marker in FINAL_MARKERS:
        found = marker.findall(text)
        if found:
            return found[-1].strip()
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def normalised(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .!?;:'\"`*$")


def last_number(text: str) -> float | None:
    found = NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def exact_answer(texts: list[str], answers: list[str], cfg: TrainConfig) -> list[float | None]:
    return [None if not normalised(a) else float(same_answer(final_answer(t), final_answer(a)))
            for t, a in zip(texts, answers, strict=True)]


def same_answer(got: str, want: str) -> bool:
    """Two final answers alike as text, or as numbers when both are one ("1,000" and "1000.0")."""
    if normalised(got) == normalised(want):
        return True
    numbers = [number_of(normalised(x)) for x in (got, want)]
    return None not in numbers and math.isclose(numbers[0], numbers[1], rel_tol=1e-9, abs_tol=1e-12)


def number_of(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def numeric_answer(texts: list[str], answers: list[str], cfg: TrainConfig) -> list[float | None]:
    out: list[float | None] = []
    for text, answer in zip(texts, answers, strict=True):
        want = last_number(answer)
        got = last_number(final_answer(text))
        out.append(None if want is None else float(got is not None and math.isclose(got, want, rel_tol=1e-6,
                                                                                        abs_tol=1e-9)))
    return out


def format_match(texts: list[str], answers: list[str], cfg: TrainConfig) -> list[float | None]:
    pattern = re.compile(cfg.reward_pattern)
    return [float(pattern.search(t.strip()) is not None) for t in texts]


def json_valid(texts: list[str], answers: list[str], cfg: TrainConfig) -> list[float | None]:
    fenced = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)

    def parses(text: str) -> bool:
        block = fenced.search(text)
        try:
            json.loads(block.group(1) if block else text)
        except ValueError:
            return False
        return True

    return [float(parses(t)) for t in texts]


def length_near(texts: list[str], answers: list[str], cfg: TrainConfig) -> list[float | None]:
    target = cfg.length_target
    return [max(0.0, 1.0 - abs(len(t.strip()) - target) / target) for t in texts]


TextReward = Callable[[list[str], list[str], "TrainConfig"], list[float | None]]
TEXT_REWARDS: dict[str, TextReward] = {"exact_answer": exact_answer, "numeric_answer": numeric_answer,
                                       "format": format_match, "json": json_valid, "length": length_near}


# --------------------------------------------------------------------------- what TRL calls

# What the trainer passes itself: a meta key of the same name is left out rather than shadow it.
RESERVED = {"prompts", "completions", "completion_ids", "answer", "meta", "trainer_state", "log_extra",
            "log_metric", "environments"}


def meta_columns(metas: list[str] | None, n: int) -> dict[str, list[Any]]:
    """The rows' ``meta`` JSON objects as columns: every key any row has, None where a row lacks it."""
    parsed = [json.loads(m) if m else {} for m in (metas or [""] * n)]
    keys = sorted({k for p in parsed for k in p} - RESERVED)
    return {k: [p.get(k) for p in parsed] for k in keys}


class Reward:
    """One reward function as TRL calls it, named for TRL's metrics (``rewards/<__name__>/mean``)."""

    def __init__(self, name: str, score: Callable[..., list[float | None]]):
        self.__name__ = name
        self.score = score  # (prompts, completions, completion_ids, answer, **columns) -> one value per completion

    def __call__(self, prompts: list[Any], completions: list[Any], completion_ids: list[Any] | None = None,
                 answer: list[str] | None = None, meta: list[str] | None = None, **trl: Any) -> list[float | None]:
        n = len(completions)
        columns = {**meta_columns(meta, n), **trl}  # TRL's own keywords (trainer_state, log_extra, …) pass through
        return self.score(prompts, completions, completion_ids, answer if answer is not None else [""] * n,
                          **columns)


def text_reward(name: str, cfg: TrainConfig) -> Reward:
    fn = TEXT_REWARDS[name]

    def score(prompts, completions, completion_ids, answer, **columns):
        return fn([text_of(c) for c in completions], [a or "" for a in answer], cfg)

    return Reward(name, score)


def model_reward(cfg: TrainConfig, home: Home) -> Reward:
    from lab.train.reward_model import load_scorer

    scorer = load_scorer(cfg.reward_model, home)

    def score(prompts, completions, completion_ids, answer, **columns):
        return scorer.score(prompts, [text_of(c) for c in completions])

    return Reward("reward_model", score)


def split_spec(spec: str) -> tuple[str, str]:
    """``PATH.py:FUNCTION`` → (path, function)."""
    path, _, function = spec.strip().rpartition(":")
    if not path or not function.isidentifier():
        raise LabError(f"reward_file '{spec}' must be PATH.py:FUNCTION, e.g. imports/rewards.py:my_reward.")
    return path, function


def user_line(err: BaseException, path: Path) -> int | None:
    """The last line of the user's file in the exception's traceback."""
    lines = [frame.lineno for frame in traceback.extract_tb(err.__traceback__) if Path(frame.filename) == path]
    return lines[-1] if lines else None


def load_function(path: Path, function: str) -> Callable[..., Any]:
    """Import the user's file (by path, as its own module) and take the function; errors name the file and line."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"lab_user_reward_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise LabError(f"{path} cannot be imported as a Python file.")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise LabError(f"{path}, line {err.lineno}: syntax error: {err.msg}.") from err
    except Exception as err:  # the user's code: whatever it raises is reported with its line
        raise LabError(f"{path}, line {user_line(err, path)}: importing it raised {type(err).__name__}: "
                       f"{err}") from err
    fn = getattr(module, function, None)
    if not callable(fn):
        raise LabError(f"{path} defines no function '{function}'.")
    return fn


def custom_reward(path: Path, function: str) -> Reward:
    fn = load_function(path, function)

    def score(prompts, completions, completion_ids, answer, **columns):
        try:
            result = fn(prompts=prompts, completions=completions, completion_ids=completion_ids, answer=answer,
                        **columns)
            if inspect.iscoroutine(result):
                import asyncio  # only for an async reward: not at import, which every lab command pays

                result = asyncio.run(result)
        except Exception as err:  # the user's code
            raise LabError(f"The reward function {function} in {path} raised {type(err).__name__} at line "
                           f"{user_line(err, path)}: {err}") from err
        return checked_values(result, len(completions), f"{function} in {path}")

    return Reward("custom", score)


def checked_values(result: Any, n: int, what: str) -> list[float | None]:
    """A reward function's return: a list of ``n`` numbers (None = not scored)."""
    if not isinstance(result, (list, tuple)) or len(result) != n:
        got = f"a list of {len(result)}" if isinstance(result, (list, tuple)) else type(result).__name__
        raise LabError(f"The reward function {what} must return a list of {n} numbers, one per completion; it "
                       f"returned {got}.")
    values: list[float | None] = []
    for value in result:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise LabError(f"The reward function {what} returned {value!r} ({type(value).__name__}); each value "
                           "must be a number, or None for a completion it does not score.")
        values.append(None if value is None else float(value))
    return values


def build_rewards(cfg: TrainConfig, home: Home) -> tuple[list[Reward], list[float]]:
    """The run's reward functions and their weights, in the order of the ``rewards`` setting (in the worker)."""
    funcs, weights = [], []
    for name, weight in parse(cfg.rewards):
        if name == "reward_model":
            funcs.append(model_reward(cfg, home))
        elif name == "custom":
            path, function = split_spec(cfg.reward_file)
            funcs.append(custom_reward(Path(path).resolve(), function))
        else:
            funcs.append(text_reward(name, cfg))
        weights.append(weight)
    return funcs, weights


# --------------------------------------------------------------------------- before launch

def precheck(cfg: TrainConfig, home: Home) -> None:
    """Settings of GRPO/RLOO that cannot work, refused before launch with what to change."""
    chosen = dict(parse(cfg.rewards))
    if cfg.num_generations < 2:
        raise LabError(f"num_generations must be at least 2 (got {cfg.num_generations}): each completion is "
                       "judged against the others sampled for the same prompt.")
    if cfg.batch_size % cfg.num_generations:
        fit = max(1, cfg.batch_size // cfg.num_generations) * cfg.num_generations
        raise LabError(f"batch_size ({cfg.batch_size}) counts completions here and must be a multiple of "
                       f"num_generations ({cfg.num_generations}) so each prompt's group fits one batch: set "
                       f"batch_size to {fit} (or num_generations to a divisor of {cfg.batch_size}).")
    if cfg.max_completion_length < 1:
        raise LabError(f"max_completion_length must be at least 1 token (got {cfg.max_completion_length}).")
    if cfg.temperature <= 0:
        raise LabError(f"temperature must be above 0 (got {cfg.temperature}): the completions of a group must "
                       "differ for their rewards to teach anything.")
    if cfg.kl_beta < 0:
        raise LabError(f"kl_beta must be 0 (no KL penalty) or positive (got {cfg.kl_beta}).")
    if "format" in chosen:
        try:
            re.compile(cfg.reward_pattern)
        except re.error as err:
            raise LabError(f"reward_pattern '{cfg.reward_pattern}' is not a regular expression: {err}.") from None
    if "length" in chosen and cfg.length_target < 1:
        raise LabError(f"length_target must be at least 1 character (got {cfg.length_target}).")
    if "reward_model" in chosen:
        if not cfg.reward_model.strip():
            raise LabError("The reward_model reward needs reward_model: a finished reward run (run:ID) or the "
                           "path of a sequence-classification model.")
        from lab.train.reward_model import is_reward_model
        from lab.train.runner import list_runs

        named = [r for r in list_runs(home) if r.name == cfg.reward_model.strip()]
        if len(named) == 1 and not cfg.reward_model.startswith("run:"):
            raise LabError(f"reward_model '{cfg.reward_model}' is a run's name: write run:{named[0].id} (the field "
                           "takes run:ID, a model folder or a hub id).")
        if not is_reward_model(cfg.reward_model, home):
            raise LabError(f"reward_model '{cfg.reward_model}' is not a reward model: choose a finished reward "
                           "run (run:ID) or a sequence-classification model with one output.")
    if "custom" in chosen:
        check_reward_file(cfg.reward_file, home, sample_rows(cfg, home))
    elif cfg.reward_file.strip():
        raise LabError("reward_file is set but 'custom' is not among the rewards: add 'custom:1' to rewards, or "
                       "clear reward_file.")


def allowed_file(path_text: str, home: Home) -> Path:
    """The user's file resolved; it must lie where the web app reads files (``lab.paths``), being code to run."""
    from lab.paths import ALLOWED_ENV, absolute, allowed_folders, input_path, within

    resolved = absolute(path_text)
    if not any(within(resolved, folder) for folder in allowed_folders(home)):
        raise LabError(f"reward_file '{path_text}' is outside the folders the lab reads files from: put it in "
                       f"LAB_HOME/imports or upload it (whoever runs the lab can allow more folders with "
                       f"--allow-path or {ALLOWED_ENV}).")
    resolved = input_path(resolved, home)
    if resolved.suffix != ".py":
        raise LabError(f"reward_file '{path_text}' must be a Python file (.py).")
    if not resolved.is_file():
        raise LabError(f"reward_file '{path_text}' does not exist ({resolved}).")
    return resolved


def check_signature(path: Path, function: str) -> None:
    """Parse the file and read the function's parameters without running anything."""
    import ast

    source = path.read_text(encoding="utf-8", errors="replace")
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as err:
        raise LabError(f"{path}, line {err.lineno}: syntax error: {err.msg}.") from None
    defs = {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    node = defs.get(function)
    if node is None:
        known = f" (it defines {', '.join(sorted(defs))})" if defs else ""
        raise LabError(f"{path} defines no function '{function}' at its top level{known}.")
    args = node.args
    named = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    missing = [p for p in ("prompts", "completions") if p not in named]
    if (missing and args.vararg is None) or args.kwarg is None:
        raise LabError(f"{path}, line {node.lineno}: {function} must take (prompts, completions, **kwargs): the "
                       "trainer passes completion_ids, answer and the rows' meta columns as keyword arguments.")


def sample_rows(cfg: TrainConfig, home: Home) -> list[dict[str, Any]]:
    """Two rows to call a user's function on: the run's dataset's first, else two made up."""
    from lab.train.datasets import resolve_version

    try:
        version = resolve_version(cfg.dataset, home)
    except LabError:
        version = None  # the runner names the missing dataset itself
    if version is not None and version.kind == "prompts":
        from lab.data.versions import read_rows

        rows = read_rows(version, cfg.train_split, home)[:2]
        if rows:
            return [{"prompt": r["prompt"], "answer": r.get("answer") or "", "meta": r.get("meta") or "{}"}
                    for r in rows]
    return [{"prompt": [{"role": "user", "content": "What is 2 + 2?"}], "answer": "4", "meta": "{}"},
            {"prompt": [{"role": "user", "content": "Name a colour."}], "answer": "", "meta": "{}"}]


def check_reward_file(spec: str, home: Home, rows: list[dict[str, Any]]) -> None:
    """The user's function, refused before launch with the file and line of what is wrong: where it lies, its
    syntax and signature, then a call on ``rows`` in a separate process (its code never runs in the app's)."""
    import os
    import subprocess

    path_text, function = split_spec(spec)
    path = allowed_file(path_text, home)
    check_signature(path, function)
    lab_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [lab_root, os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run([sys.executable, "-m", "lab.train.rewards", str(path), function],
                              input=json.dumps(rows), capture_output=True, text=True, env=env,
                              timeout=CHECK_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise LabError(f"The reward function {function} in {path} did not return within {CHECK_TIMEOUT_S} s on "
                       "two rows.") from None
    if done.returncode != 0:
        lines = [line for line in done.stdout.splitlines() if line.startswith(CHECK_ERROR)]
        reason = lines[-1][len(CHECK_ERROR):] if lines else (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise LabError(reason)


CHECK_ERROR = "reward check failed: "


def check_main(path: str, function: str) -> int:
    """``python -m lab.train.rewards PATH FUNCTION`` with rows as JSON on stdin: call the function as the trainer
    would, on one completion per row (the row's answer, or "42")."""
    rows = json.loads(sys.stdin.read())
    try:
        reward = custom_reward(Path(path), function)
        prompts = [r["prompt"] for r in rows]
        completions = [[{"role": "assistant", "content": r["answer"] or "42"}] for r in rows]
        reward(prompts, completions, [[0] for _ in rows], answer=[r["answer"] for r in rows],
               meta=[r["meta"] for r in rows], trainer_state=None, log_extra=lambda *a: None,
               log_metric=lambda *a: None)
    except LabError as err:
        print(CHECK_ERROR + str(err), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(check_main(sys.argv[1], sys.argv[2]))
