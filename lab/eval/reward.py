"""Reward-model scores: the model answers a dataset version's prompts (greedy unless told otherwise), and a reward
model (``lab.train.reward_model``) scores each answer; the job keeps every prompt's score, their mean, and the
best and worst answers. Where the dataset has a reply of its own (an SFT conversation's final reply, a preference
pair's chosen reply) that is scored too, so the model's mean reads against the data's.

A reward model's scale is its own: means are comparable between models scored by the same reward model only,
which is why the Eval tab charts one panel per reward model."""

from __future__ import annotations

import statistics
from typing import Any

from lab.errors import LabError
from lab.eval.answers import Progress, free_memory, generate_answers, reference_rows
from lab.eval.config import RewardEvalConfig
from lab.home import Home

EXAMPLES = 3  # best and worst answers kept for the Eval tab


def prompt_rows(dataset_ref: str, split: str, max_rows: int, home: Home) -> list[dict[str, Any]]:
    """``{"prompt", "reference" (the data's own reply, or None), "line"}`` for the first ``max_rows`` distinct
    prompts (0 = all) of a dataset version's split, of any kind: an SFT conversation before its final reply, or
    the ``prompt`` of a preference, unpaired or prompts row (a preference pair's chosen reply is its reference)."""
    import json

    from lab.data.versions import read_rows
    from lab.train.datasets import resolve_version

    version = resolve_version(dataset_ref, home)
    if version.kind == "sft":
        return reference_rows(dataset_ref, split, max_rows, home)
    out, seen = [], set()
    for row in read_rows(version, split, home):
        prompt = [{"role": m["role"], "content": m["content"]} for m in row["prompt"]]
        key = json.dumps(prompt)
        if key in seen:  # unpaired data repeats a prompt once per labelled completion
            continue
        seen.add(key)
        reference = row["chosen"][-1]["content"] if version.kind == "preference" else None
        out.append({"prompt": prompt, "reference": reference, "line": row.get("line")})
        if max_rows and len(out) == max_rows:
            break
    if not out:
        raise LabError(f"{version.ref} has no {split} rows to take prompts from; pick the other split or another "
                       "dataset version.")
    return out


def evaluate(model_ref: str, dataset_ref: str, cfg: RewardEvalConfig, *, home: Home,
             progress: Progress | None = None) -> dict[str, Any]:
    """The mean reward of ``model_ref``'s answers by ``cfg.reward_model``, with each prompt's score."""
    from lab.catalog import display_name
    from lab.train.datasets import resolve_version
    from lab.train.reward_model import load_scorer

    rows = prompt_rows(dataset_ref, cfg.split, cfg.max_rows, home)
    n = len(rows)
    prompts = [r["prompt"] for r in rows]
    answers = generate_answers(model_ref, prompts, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                               temperature=cfg.temperature, seed=cfg.seed, home=home,
                               progress=(lambda done, _: progress(done, 2 * n)) if progress else None)
    scorer = load_scorer(cfg.reward_model, home)
    rewards = scorer.score(prompts, answers)
    scored = [i for i, r in enumerate(rows) if r["reference"] is not None]
    references = dict(zip(scored, scorer.score([prompts[i] for i in scored], [rows[i]["reference"] for i in scored])))
    del scorer
    free_memory()
    if progress:
        progress(2 * n, 2 * n)
    per_prompt = [{"line": row["line"], "reward": reward, "answer": answer,
                   **({"reference_reward": references[i]} if i in references else {})}
                  for i, (row, reward, answer) in enumerate(zip(rows, rewards, answers))]
    ranked = sorted(range(n), key=lambda i: rewards[i])

    def shown(i: int) -> dict[str, Any]:
        return {"prompt": rows[i]["prompt"], "reference": rows[i]["reference"], **per_prompt[i]}

    return {"model": model_ref, "reward_model": cfg.reward_model,
            "reward_model_name": display_name(cfg.reward_model, home),
            "dataset": resolve_version(dataset_ref, home).ref, "split": cfg.split, "rows": n,
            "mean_reward": round(statistics.fmean(rewards), 4),
            "std_reward": round(statistics.pstdev(rewards), 4),
            "reference_mean_reward": round(statistics.fmean(references.values()), 4) if references else None,
            "references": len(references), "per_prompt": per_prompt,
            "best": [shown(i) for i in ranked[::-1][:EXAMPLES]], "worst": [shown(i) for i in ranked[:EXAMPLES]]}


def latest_means(jobs: list[Any]) -> dict[str, dict[str, float]]:
    """Per reward model, each model's mean reward from its latest succeeded reward job (``jobs`` newest first, as
    ``lab.eval.jobs.list_evals`` gives them): one chart panel per reward model, whose scales differ."""
    means: dict[str, dict[str, float]] = {}
    for job in reversed(jobs):  # oldest first: newer results overwrite
        if job.kind == "reward" and job.status == "succeeded" and job.results:
            means.setdefault(job.results["reward_model"], {})[job.model] = job.results["mean_reward"]
    return means
