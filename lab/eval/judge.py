"""LLM-as-judge on a dataset version's prompts.

**Pairwise**: models A and B answer the same prompts (greedy); the judge sees each pair twice, A's answer first
and then B's first, to cancel its position bias. A prompt's outcome counts only when both orders agree (A wins,
B wins, or a tie in both); otherwise it is *inconsistent* and counts as a tie in A's win rate, as MT-Bench does.
With no prompt decided (every one inconsistent or unparsed) there is no win rate: 50% from no verdict would read
as a draw. The position-consistency rate is the share of prompts whose two verdicts agree.

**Single**: one model's answers graded 1-10.

The judge is a local model or an OpenAI-compatible endpoint (``lab.eval.judges``); verdicts come from the
cache when the same judge has seen the same filled prompt before.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from lab.eval.answers import Progress, generate_answers, reference_rows
from lab.eval.config import JudgeConfig
from lab.eval.judge_prompts import DEFAULTS, check, fill, question_text
from lab.eval.judges import VerdictCache, open_judge
from lab.home import Home

ORDERS = ("a_first", "b_first")


def template_of(cfg: JudgeConfig) -> str:
    """The prompt template a job uses, checked: its own, or the mode's default."""
    template = cfg.prompt if cfg.prompt.strip() else DEFAULTS[cfg.mode]
    check(template, cfg.mode)
    return template


def ask(judge: Any, mode: str, prompts: list[str], cache: VerdictCache,
        progress: Progress | None = None) -> tuple[list[dict[str, Any]], int]:
    """A verdict per prompt (cached ones first; the judge is asked the rest in one go) and how many were cached."""
    keys = [cache.key(judge, mode, p) for p in prompts]
    found = [cache.get(k) for k in keys]
    missing = [i for i, v in enumerate(found) if v is None]
    cached = len(prompts) - len(missing)
    if progress:
        progress(cached, len(prompts))
    fresh = judge.verdicts([prompts[i] for i in missing], mode,
                           progress=(lambda done, _: progress(cached + done, len(prompts))) if progress else None)
    for i, verdict in zip(missing, fresh):
        cache.put(keys[i], verdict)
        found[i] = verdict
    return found, cached  # type: ignore[return-value]


def outcome(verdict: str | None, a_first: bool) -> str | None:
    """A position verdict (A = the first answer shown) as the model that won: 'a', 'b' or 'tie'."""
    if verdict is None:
        return None
    if verdict == "C":
        return "tie"
    return "a" if (verdict == "A") == a_first else "b"


def pairwise_tally(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Win/tie/loss of model A in each order, the consistent outcomes, A's win rate and the position bias."""
    per_order = {o: Counter(item[o]["outcome"] or "unparsed" for item in items) for o in ORDERS}
    final = Counter(item["outcome"] for item in items)
    parsed = len(items) - final["unparsed"]
    consistent = final["a"] + final["b"] + final["tie"]
    decided = [(item[o]["verdict"], o) for item in items for o in ORDERS if item[o]["verdict"] in ("A", "B")]
    return {
        "orders": {o: {"a_wins": c["a"], "ties": c["tie"], "b_wins": c["b"], "unparsed": c["unparsed"]}
                   for o, c in per_order.items()},
        "a_wins": final["a"], "b_wins": final["b"], "ties": final["tie"], "inconsistent": final["inconsistent"],
        "unparsed": final["unparsed"], "judged_prompts": parsed,
        "consistency": round(consistent / parsed, 4) if parsed else None,
        "win_rate": win_rate({"a_wins": final["a"], "b_wins": final["b"], "ties": final["tie"],
                              "inconsistent": final["inconsistent"]}),
        # Among verdicts that picked an answer, how often it was the one shown first (0.5 = no position bias).
        "first_position_rate": round(sum(v == "A" for v, _ in decided) / len(decided), 4) if decided else None}


def win_rate(r: dict[str, Any]) -> float | None:
    """A's win rate from a pairwise tally (``a_wins``, ``b_wins``, ``ties``, ``inconsistent``): inconsistent prompts
    count as ties; None when no prompt was decided (results stored before this rule read 50% there)."""
    decided = r["a_wins"] + r["b_wins"] + r["ties"]
    if not decided:
        return None
    return round((r["a_wins"] + 0.5 * (r["ties"] + r["inconsistent"])) / (decided + r["inconsistent"]), 4)


def undecided_text(r: dict[str, Any]) -> str:
    """What a pairwise tally without a decided prompt says in place of a win rate."""
    return f"no decided verdicts ({r['inconsistent']} inconsistent)"


def evaluate(model_ref: str, dataset_ref: str, cfg: JudgeConfig, *, home: Home,
             progress: Progress | None = None) -> dict[str, Any]:
    from lab.train.datasets import resolve_version

    template = template_of(cfg)
    rows = reference_rows(dataset_ref, cfg.split, cfg.max_rows, home)
    models = [model_ref, cfg.model_b] if cfg.mode == "pairwise" else [model_ref]
    n = len(rows)
    total = n * len(models) + n * (len(ORDERS) if cfg.mode == "pairwise" else 1)

    def step(offset: int) -> Progress | None:
        return (lambda done, _: progress(offset + done, total)) if progress else None

    answers = [generate_answers(m, [r["prompt"] for r in rows], max_new_tokens=cfg.max_new_tokens, home=home,
                                progress=step(i * n)) for i, m in enumerate(models)]
    judge = open_judge(cfg, home)
    cache = VerdictCache(home, cfg.cache)
    questions = [question_text(r["prompt"]) for r in rows]
    head = {"mode": cfg.mode, "judge": judge.name, "dataset": resolve_version(dataset_ref, home).ref,
            "split": cfg.split, "rows": n}
    if cfg.mode == "pairwise":
        shown = [(a, b) for a, b in zip(*answers)] + [(b, a) for a, b in zip(*answers)]
        prompts = [fill(template, question=q, answer_a=first, answer_b=second, reference=r["reference"])
                   for q, r, (first, second) in zip(questions * 2, rows * 2, shown)]
        verdicts, cached = ask(judge, cfg.mode, prompts, cache, step(n * len(models)))
        items = []
        for i, row in enumerate(rows):
            item: dict[str, Any] = {"line": row["line"], "prompt": row["prompt"], "answer_a": answers[0][i],
                                    "answer_b": answers[1][i]}
            for o, verdict in zip(ORDERS, (verdicts[i], verdicts[n + i])):
                item[o] = {**verdict, "outcome": outcome(verdict["verdict"], o == "a_first")}
            first, second = item["a_first"]["outcome"], item["b_first"]["outcome"]
            item["outcome"] = ("unparsed" if None in (first, second) else first if first == second
                               else "inconsistent")
            items.append(item)
        return {**head, "model_a": model_ref, "model_b": cfg.model_b, **pairwise_tally(items),
                "cached": cached, "judged": len(prompts) - cached, "items": items}
    prompts = [fill(template, question=q, answer=a, reference=r["reference"])
               for q, r, a in zip(questions, rows, answers[0])]
    verdicts, cached = ask(judge, cfg.mode, prompts, cache, step(n))
    items = [{"line": r["line"], "prompt": r["prompt"], "answer": a, "reference": r["reference"], **v}
             for r, a, v in zip(rows, answers[0], verdicts)]
    grades = [item["verdict"] for item in items if item["verdict"] is not None]
    ranked = sorted((item for item in items if item["verdict"] is not None), key=lambda item: item["verdict"])
    return {**head, "model": model_ref, "mean_grade": round(sum(grades) / len(grades), 3) if grades else None,
            "grades": dict(sorted(Counter(grades).items())), "unparsed": len(items) - len(grades),
            "cached": cached, "judged": len(prompts) - cached, "items": items,
            "best": ranked[::-1][:3], "worst": ranked[:3]}
