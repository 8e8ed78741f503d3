"""Every model's numbers in one place: the latest finished evaluation of each kind per model (perplexity,
ROUGE-L, BLEU, judge win rate and grade, mean reward under a reward model, lm-eval task scores) beside the human results of a labeling campaign
(win rate with ties as half, Bradley–Terry rating with its 95% interval), so automatic and human numbers can
be read together. Models are matched by name: a campaign source 'run:abc' is the eval jobs' model 'run:abc'."""

from __future__ import annotations

from typing import Any

from lab.eval.judge import win_rate
from lab.home import Home, lab_home

FIELDS = ("model", "name", "perplexity", "loss", "rouge_l", "bleu", "judge_win_rate", "judge_vs", "judge_consistency",
          "judge_grade", "reward", "reward_model", "harness", "human_win_rate", "human_rating", "human_low", "human_high", "human_comparisons")


def automatic(jobs: list[Any]) -> dict[str, dict[str, Any]]:
    """Per model, the headline numbers of its latest succeeded job of each kind (``jobs`` newest first, as
    ``list_evals`` gives them), models in the order of their first evaluation."""
    rows: dict[str, dict[str, Any]] = {}
    for job in reversed(jobs):  # oldest first: the order models were evaluated in; newer results overwrite
        if job.status != "succeeded" or not job.results:
            continue
        r = job.results
        row = rows.setdefault(job.model, blank(job.model))
        if job.kind == "perplexity":
            row.update(perplexity=r["perplexity"], loss=r["loss"])
        elif job.kind == "overlap":
            row.update(rouge_l=r["rouge_l"], bleu=r["bleu"])
        elif job.kind == "judge" and r.get("mode") == "single":
            row.update(judge_grade=r["mean_grade"])
        elif job.kind == "judge" and (rate := win_rate(r)) is not None:  # a judge that decided nothing: no rate
            row.update(judge_win_rate=rate, judge_vs=r["model_b"], judge_consistency=r["consistency"])
            other = rows.setdefault(r["model_b"], blank(r["model_b"]))
            other.update(judge_win_rate=round(1 - rate, 4), judge_vs=job.model, judge_consistency=r["consistency"])
        elif job.kind == "reward":  # the latest reward model's mean: scales differ between reward models
            row.update(reward=r["mean_reward"], reward_model=r.get("reward_model_name") or r["reward_model"])
        elif job.kind == "harness":
            row["harness"].update({task: t["value"] for task, t in (r.get("tasks") or {}).items()})
    return rows


def blank(model: str) -> dict[str, Any]:
    return {**dict.fromkeys(FIELDS), "model": model, "harness": {}}


def human_results(campaign_id: str | None = None, home: Home | None = None) -> dict[str, Any] | None:
    """Win rate and Bradley–Terry rating per source of one campaign (default: the newest with decided votes);
    None when no campaign has any."""
    from lab.label.campaigns import get_campaign, list_campaigns
    from lab.label.results import comparisons, leaderboard

    home = home or lab_home()
    campaigns = [get_campaign(campaign_id, home)] if campaign_id else list_campaigns(home)
    for campaign in campaigns:
        pairs = comparisons(campaign.id, home)
        if pairs:
            break
    else:
        return None
    wins: dict[str, float] = {}
    seen: dict[str, int] = {}
    for first, second, score in pairs:
        for source, points in ((first, score), (second, 1 - score)):
            wins[source] = wins.get(source, 0.0) + points
            seen[source] = seen.get(source, 0) + 1
    ratings = {r["source"]: r for r in leaderboard(campaign.id, home=home)["ratings"]}
    return {"campaign": {"id": campaign.id, "name": campaign.name}, "comparisons": len(pairs),
            "sources": {s: {"win_rate": round(wins[s] / seen[s], 4), "rating": ratings[s]["rating"],
                            "low": ratings[s]["low"], "high": ratings[s]["high"], "comparisons": seen[s]}
                        for s in sorted(seen, key=lambda s: -ratings[s]["rating"])}}


def summary(home: Home | None = None, campaign_id: str | None = None, jobs: list[Any] | None = None) -> dict[str, Any]:
    """``{"campaign", "models": [one row of FIELDS per model]}``: evaluated models first, then sources that
    only people judged; ``name`` is the model as people know it (a run's name, ``lab.catalog.display_names``).
    ``jobs``: the evaluations, when the caller has read them already."""
    from lab.catalog import display_names
    from lab.eval.jobs import list_evals

    home = home or lab_home()
    rows = automatic(list_evals(home) if jobs is None else jobs)
    human = human_results(campaign_id, home)
    for source, h in (human or {}).get("sources", {}).items():
        rows.setdefault(source, blank(source)).update(
            human_win_rate=h["win_rate"], human_rating=h["rating"], human_low=h["low"], human_high=h["high"],
            human_comparisons=h["comparisons"])
    names = display_names(rows, home)
    for model, row in rows.items():
        row["name"] = names[model]
    return {"campaign": human["campaign"] if human else None, "models": list(rows.values())}


def harness_table(jobs: list[Any], base: str | None = None) -> list[dict[str, Any]]:
    """lm-eval scores per task: one column per model (latest harness job each) and, for every model but
    ``base`` (default: the first evaluated), its difference from ``base``."""
    scores: dict[str, dict[str, dict[str, Any]]] = {}  # model -> task -> {"metric", "value"}
    for job in reversed(jobs):
        if job.kind == "harness" and job.status == "succeeded" and job.results:
            scores.setdefault(job.model, {}).update(job.results.get("tasks") or {})
    if not scores:
        return []
    base = base if base in scores else next(iter(scores))
    tasks = sorted({t for per_task in scores.values() for t in per_task})
    table = []
    for task in tasks:
        row: dict[str, Any] = {"task": task, "metric": next(s[task]["metric"] for s in scores.values() if task in s)}
        for model, per_task in scores.items():
            row[model] = per_task.get(task, {}).get("value")
        for model in scores:
            if model != base:
                row[f"Δ {model}"] = (round(row[model] - row[base], 4)
                                     if row[model] is not None and row[base] is not None else None)
        table.append(row)
    return table
