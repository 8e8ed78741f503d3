"""A length-controlled Bradley–Terry leaderboard: LMArena's style control, with answer length as the style.

Plain Bradley–Terry credits a source with every win, so one that wins only because people like longer answers
climbs. Style control fits the outcome of each vote by logistic regression on the sources (+1 for the first, -1
for the second) and the normalised length difference of the two answers, (len_1 - len_2) / (len_1 + len_2),
scaled to unit root mean square over the campaign's votes; a source's rating comes from its own coefficient, with the length's
share of the outcome taken out by the length coefficient. Ratings are on the Elo scale with mean 1000 like
``lab.label.stats.bradley_terry``, with bootstrap 95% intervals.

Lengths are in characters (the sources may be any models or a file, so there is no shared tokenizer); the
normalised difference does not depend on the unit. A tie counts half a win each way, as in the plain fit.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from lab.home import Home, lab_home
from lab.label import stats
from lab.store import Store

# A small Gaussian prior on every coefficient: a source that won every vote (or a length that decided every vote)
# still gets a finite coefficient, as the plain fit's virtual games give it a finite rating.
RIDGE = 0.5
NEWTON_STEPS = 50


def votes_with_lengths(campaign_id: str, home: Home) -> list[tuple[str, str, float, float]]:
    """(source_1, source_2, score of source_1, normalised length difference) for each vote the plain
    leaderboard counts (``lab.label.results.compared_votes``: ties half, both-bad, gold and thumbs left out)."""
    from lab.label.results import compared_votes

    lengths = {(r["prompt_idx"], r["source"]): r["n"] for r in Store(home).query(
        "SELECT prompt_idx, source, length(text) AS n FROM responses WHERE campaign_id = ?", (campaign_id,))}
    out = []
    for vote, score in compared_votes(campaign_id, home):
        one, two = lengths[vote["prompt_idx"], vote["source_1"]], lengths[vote["prompt_idx"], vote["source_2"]]
        out.append((vote["source_1"], vote["source_2"], score, (one - two) / (one + two) if one + two else 0.0))
    return out


def design(models: list[str], votes: list[tuple[str, str, float, float]],
           scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The regression's inputs: one column per source (+1 first, -1 second), then the length difference over
    ``scale`` (left out when no two answers differ in length: it explains nothing then).

    Unlike LMArena, the mean difference is not subtracted: which source of a pair comes first is fixed here (not
    drawn per vote), so a mean other than 0 is the longer source's own length, and subtracting it would hand that
    advantage back to the source's coefficient. The feature must change sign when the pair's sides swap."""
    index = {m: k for k, m in enumerate(models)}
    x = np.zeros((len(votes), len(models) + (1 if scale > 0 else 0)))
    for row, (first, second, _, difference) in enumerate(votes):
        x[row, index[first]], x[row, index[second]] = 1.0, -1.0
        if scale > 0:
            x[row, -1] = difference / scale
    return x, np.array([v[2] for v in votes])


def fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Ridge logistic regression (no intercept: the order of a pair's sources is fixed at random, not by side)
    by Newton's method; y may be 0.5 for a tie."""
    beta = np.zeros(x.shape[1])
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        gradient = x.T @ (y - p) - RIDGE * beta
        hessian = (x * (p * (1 - p))[:, None]).T @ x + RIDGE * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def leaderboard(campaign_id: str, *, home: Home | None = None, rounds: int = 200) -> dict[str, Any]:
    """Style-controlled ratings in the shape of ``results.leaderboard`` (ratings with low/high and comparisons,
    the plain win-rate matrix), plus ``length_coefficient``: the change in log-odds of winning per root mean
    square of the normalised length difference (> 0: the longer answer wins more; None when no two answers differ
    in length), and ``length_interval``, its bootstrap 95% interval."""
    home = home or lab_home()
    votes = votes_with_lengths(campaign_id, home)
    if not votes:
        return {"ratings": [], "models": [], "win_rates": [], "counts": [], "comparisons": 0,
                "length_coefficient": None, "length_interval": None}
    models = sorted({m for first, second, *_ in votes for m in (first, second)})
    scale = float(np.sqrt(np.mean(np.square([v[3] for v in votes]))))
    point = fit(*design(models, votes, scale))
    rng = np.random.default_rng(0)
    samples = np.full((rounds, len(models) + 1), np.nan)
    index = {m: k for k, m in enumerate(models)}
    for r in range(rounds):
        resample = [votes[k] for k in rng.integers(0, len(votes), len(votes))]
        beta = fit(*design(models, resample, scale))
        present = [index[m] for m in {m for first, second, *_ in resample for m in (first, second)}]
        samples[r, present] = stats.elo(beta[:len(models)])[present]
        samples[r, -1] = beta[-1] if scale > 0 else np.nan
    counts = Counter(m for first, second, *_ in votes for m in (first, second))
    ratings = []
    for k, model in enumerate(models):
        seen = samples[~np.isnan(samples[:, k]), k]
        low, high = np.percentile(seen, [2.5, 97.5]).tolist() if seen.size else (None, None)
        ratings.append({"source": model, "rating": round(float(stats.elo(point[:len(models)])[k]), 1),
                        "low": round(low, 1) if low is not None else None,
                        "high": round(high, 1) if high is not None else None, "comparisons": counts[model]})
    ratings.sort(key=lambda r: -r["rating"])
    names, rates, matches = stats.win_matrix([v[:3] for v in votes])
    length = np.percentile(samples[:, -1], [2.5, 97.5]).tolist() if scale > 0 else None
    return {"ratings": ratings, "models": names, "win_rates": rates, "counts": matches, "comparisons": len(votes),
            "length_coefficient": round(float(point[-1]), 4) if scale > 0 else None,
            "length_interval": [round(v, 4) for v in length] if length else None}

