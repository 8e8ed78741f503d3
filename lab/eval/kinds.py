"""The kinds of evaluation job: each has a config dataclass (stored as the job's ``config``), a check run when
the job is created (so a bad model or setting fails at once, not in the background), the function the worker
runs, ``run(job, home, progress) -> results``, and the headline numbers that the job list, the CSV and the
summary show. Heavy modules are imported inside the functions, so the app and the CLI start fast."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.eval.config import (
    ENDPOINT,
    REWARD_MODEL_WORDS,
    HarnessConfig,
    JudgeConfig,
    OverlapConfig,
    PerplexityConfig,
    RewardEvalConfig,
)
from lab.home import Home

if TYPE_CHECKING:
    from lab.eval.jobs import EvalJob

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Kind:
    name: str
    config: type
    run: Callable[["EvalJob", Home, Progress], dict[str, Any]]
    headline: Callable[[dict[str, Any]], dict[str, Any]]
    text: Callable[[dict[str, Any]], str]  # the headline for people (job list, CLI)
    prepare: Callable[[Any, str, Home], Any] = lambda cfg, model, home: cfg  # checks; may fill in defaults
    data: Callable[[Any], str] | None = None  # a kind that brings its own data names it (no dataset version)


def config_of(job: "EvalJob") -> Any:
    kind = get_kind(job.kind)
    known = {f.name for f in dataclasses.fields(kind.config)}
    return kind.config(**{k: v for k, v in job.config.items() if k in known})


# --------------------------------------------------------------------------- perplexity


def run_perplexity(job: "EvalJob", home: Home, progress: Progress) -> dict[str, Any]:
    from lab.eval.perplexity import evaluate

    cfg = config_of(job)
    return evaluate(job.model, job.dataset, split=cfg.split, max_rows=cfg.max_rows, max_length=cfg.max_length,
                    home=home, progress=progress)


def perplexity_headline(r: dict[str, Any]) -> dict[str, Any]:
    return {"loss": r.get("loss"), "perplexity": r.get("perplexity"), "tokens": r.get("tokens")}


# --------------------------------------------------------------------------- overlap


def run_overlap(job: "EvalJob", home: Home, progress: Progress) -> dict[str, Any]:
    from lab.eval.overlap import evaluate

    return evaluate(job.model, job.dataset, config_of(job), home=home, progress=progress)


def perplexity_text(r: dict[str, Any]) -> str:
    return f"loss {r['loss']:.4f} · ppl {r['perplexity']:.3f}"


def overlap_headline(r: dict[str, Any]) -> dict[str, Any]:
    return {"rouge_l": r.get("rouge_l"), "bleu": r.get("bleu")}


# --------------------------------------------------------------------------- judge


def overlap_text(r: dict[str, Any]) -> str:
    return f"ROUGE-L {r['rouge_l']:.3f} · BLEU {r['bleu']:.1f}"


def prepare_judge(cfg: JudgeConfig, model: str, home: Home) -> JudgeConfig:
    from lab.eval.judge import template_of
    from lab.eval.judges import EndpointJudge
    from lab.train.loading import resolve_model_path

    if cfg.mode == "pairwise":
        if not cfg.model_b:
            raise LabError("Pairwise judging needs two models: model A and model B (pick two).")
        if cfg.model_b == model:
            raise LabError(f"Model A and model B are both '{model}'; pairwise judging compares two models.")
        resolve_model_path(cfg.model_b, home)
    if cfg.judge == ENDPOINT:
        EndpointJudge(cfg.endpoint_model, cfg.judge_max_tokens)  # fails now if the environment has no endpoint
    else:
        resolve_model_path(cfg.judge, home)
    # The job keeps the exact template it was judged with, even when the default changes later.
    return dataclasses.replace(cfg, model_b=cfg.model_b if cfg.mode == "pairwise" else "", prompt=template_of(cfg))


def run_judge(job: "EvalJob", home: Home, progress: Progress) -> dict[str, Any]:
    from lab.eval.judge import evaluate

    return evaluate(job.model, job.dataset, config_of(job), home=home, progress=progress)


def judge_headline(r: dict[str, Any]) -> dict[str, Any]:
    from lab.eval.judge import win_rate

    if r.get("mode") == "single":
        return {"mean_grade": r.get("mean_grade"), "unparsed": r.get("unparsed"), "cached": r.get("cached")}
    return {"win_rate": win_rate(r), "a_wins": r.get("a_wins"), "ties": r.get("ties"),
            "b_wins": r.get("b_wins"), "inconsistent": r.get("inconsistent"), "consistency": r.get("consistency"),
            "unparsed": r.get("unparsed"), "cached": r.get("cached")}


def judge_text(r: dict[str, Any]) -> str:
    from lab.eval.judge import undecided_text, win_rate

    extra = "".join(f" · {r[k]} {k}" for k in ("unparsed", "cached") if r.get(k))
    if r.get("mode") == "single":
        grade = f"{r['mean_grade']:.2f}/10" if r["mean_grade"] is not None else "none"
        return f"mean grade {grade}{extra}"
    rate = win_rate(r)
    if rate is None:
        return undecided_text(r) + extra
    consistency = f"{r['consistency']:.0%}" if r["consistency"] is not None else "-"
    return (f"A {r['a_wins']} · tie {r['ties']} · B {r['b_wins']} · inconsistent {r['inconsistent']} → A's win "
            f"rate {rate:.0%}, consistency {consistency}{extra}")


# --------------------------------------------------------------------------- lm-evaluation-harness


def prepare_harness(cfg: HarnessConfig, model: str, home: Home) -> HarnessConfig:
    from lab.eval.harness import OFFLINE_TASKS, check_tasks

    return dataclasses.replace(cfg, tasks=",".join(check_tasks(cfg.task_list() or OFFLINE_TASKS)))


def run_harness(job: "EvalJob", home: Home, progress: Progress) -> dict[str, Any]:
    from lab.eval.harness import evaluate

    cfg = config_of(job)
    return evaluate(job.model, cfg.task_list(), limit=cfg.limit or None, home=home, progress=progress)


def harness_headline(r: dict[str, Any]) -> dict[str, Any]:
    return {f"{task}:{t['metric']}": t["value"] for task, t in (r.get("tasks") or {}).items()}


def harness_text(r: dict[str, Any]) -> str:
    return " · ".join(f"{task} {t['metric']} {t['value']:.3f}" for task, t in (r.get("tasks") or {}).items())


# --------------------------------------------------------------------------- reward model


def prepare_reward(cfg: RewardEvalConfig, model: str, home: Home) -> RewardEvalConfig:
    from lab.train.loading import resolve_model_path
    from lab.train.reward_model import is_reward_model

    if is_reward_model(model, home):
        raise LabError(f"'{model}' is a reward model: it scores answers and writes none. Evaluate a model that "
                       "answers, and pick this one as the reward model.")
    if not is_reward_model(cfg.reward_model, home):
        raise LabError(f"'{cfg.reward_model}' is not a reward model: pick {REWARD_MODEL_WORDS} with one output.")
    resolve_model_path(cfg.reward_model, home)  # a reward run that did not finish fails now
    return cfg


def run_reward(job: "EvalJob", home: Home, progress: Progress) -> dict[str, Any]:
    from lab.eval.reward import evaluate

    return evaluate(job.model, job.dataset, config_of(job), home=home, progress=progress)


def reward_headline(r: dict[str, Any]) -> dict[str, Any]:
    return {"mean_reward": r.get("mean_reward"), "reference_mean_reward": r.get("reference_mean_reward"),
            "reward_model": r.get("reward_model")}


def reward_text(r: dict[str, Any]) -> str:
    reference = r.get("reference_mean_reward")
    return (f"mean reward {r['mean_reward']:+.3f} by {r['reward_model_name']}"
            + (f" (the data's replies {reference:+.3f})" if reference is not None else ""))


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("perplexity", PerplexityConfig, run_perplexity, perplexity_headline, perplexity_text),
    Kind("overlap", OverlapConfig, run_overlap, overlap_headline, overlap_text),
    Kind("judge", JudgeConfig, run_judge, judge_headline, judge_text, prepare_judge),
    Kind("harness", HarnessConfig, run_harness, harness_headline, harness_text, prepare_harness,
         data=lambda cfg: f"lm-eval:{cfg.tasks}"),
    Kind("reward", RewardEvalConfig, run_reward, reward_headline, reward_text, prepare_reward),
)}


def get_kind(name: str) -> Kind:
    if name not in KINDS:
        raise LabError(f"Unknown evaluation '{name}'; available: {', '.join(KINDS)}.")
    return KINDS[name]
