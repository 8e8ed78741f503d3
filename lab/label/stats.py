"""Statistics for preference labeling: do labelers agree, do they favour a side, which model wins.

Labelers compare two responses shown as A and B and vote "a", "b", "tie" or "both_bad".
Agreement (Cohen, Fleiss, Krippendorff) says whether the labels are worth training on;
position bias says whether people just click the left answer; Bradley–Terry turns many
pairwise votes into one rating per model. Everything is a pure function over plain lists.
"""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction
from typing import Any

import numpy as np

VOTES = ("a", "b", "tie", "both_bad")

# Above this many decided votes the exact integer binomial sum gets slow; sum in log space instead.
_EXACT_BINOMIAL_MAX_N = 2000


def cohen_kappa(labels_1: list[str], labels_2: list[str]) -> float | None:
    """Agreement of two raters on the same items beyond what their label frequencies give by chance."""
    if len(labels_1) != len(labels_2):
        raise ValueError(
            f"the two raters labelled {len(labels_1)} and {len(labels_2)} items; they must label the same items"
        )
    n = len(labels_1)
    if n < 2:
        return None
    p_o = sum(x == y for x, y in zip(labels_1, labels_2)) / n
    count_1, count_2 = Counter(labels_1), Counter(labels_2)
    p_e = sum(count_1[c] * count_2[c] for c in count_1) / (n * n)
    return _chance_corrected(p_o, p_e)


def fleiss_kappa(table: list[list[str]]) -> float | None:
    """Chance-corrected agreement for many raters, each item rated by any number (2+) of them."""
    items = [Counter(labels) for labels in table if len(labels) >= 2]
    if not items:
        return None
    p_i = [sum(k * (k - 1) for k in c.values()) / (c.total() * (c.total() - 1)) for c in items]
    totals = sum(items, Counter())
    n = totals.total()
    p_e = sum((k / n) ** 2 for k in totals.values())
    return _chance_corrected(sum(p_i) / len(p_i), p_e)


def krippendorff_alpha_nominal(table: list[list[str]]) -> float | None:
    """Krippendorff's alpha for nominal labels; unlike kappa it corrects for small samples and missing ratings.

    alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c n_k, with o the coincidence matrix
    (each ordered pair of ratings within an item weighted 1 / (m_u - 1)) and n_c its margins.
    """
    units = [Counter(labels) for labels in table if len(labels) >= 2]
    if not units:
        return None
    observed_disagreement = 0.0  # sum over c != k of o_ck
    margins: Counter[str] = Counter()  # n_c: every pairable value counts once
    for counts in units:
        m = counts.total()
        margins.update(counts)
        observed_disagreement += (m * m - sum(k * k for k in counts.values())) / (m - 1)
    n = margins.total()
    expected_disagreement = n * n - sum(k * k for k in margins.values())  # sum over c != k of n_c n_k
    if expected_disagreement == 0:  # one value everywhere: every rating agrees
        return 1.0
    return 1.0 - (n - 1) * observed_disagreement / expected_disagreement


def pairwise_agreement(table: list[list[str]]) -> float | None:
    """Share of rater pairs (pooled over items with 2+ ratings) that gave the same label: the raw number people read."""
    agreeing = pairs = 0
    for labels in table:
        m = len(labels)
        if m < 2:
            continue
        pairs += m * (m - 1) // 2
        agreeing += sum(k * (k - 1) // 2 for k in Counter(labels).values())
    return agreeing / pairs if pairs else None


def position_bias(votes: list[str]) -> dict[str, Any]:
    """Whether labelers prefer the response shown on one side, whatever the model behind it.

    Only decided votes ("a" or "b") count; the p-value is an exact two-sided binomial test
    against 0.5, and the side is flagged once there are 20+ decided votes and p < 0.01.
    """
    unknown = sorted(set(votes) - set(VOTES))
    if unknown:
        raise ValueError(f"unknown votes {unknown}; expected one of {list(VOTES)}")
    a_wins, b_wins = votes.count("a"), votes.count("b")
    decided = a_wins + b_wins
    p_value = _binomial_two_sided(min(a_wins, b_wins), decided) if decided else None
    return {
        "a_wins": a_wins,
        "b_wins": b_wins,
        "decided": decided,
        "a_rate": a_wins / decided if decided else None,
        "p_value": p_value,
        "flagged": decided >= 20 and p_value is not None and p_value < 0.01,
    }


def bradley_terry(
    comparisons: list[tuple[str, str, float]],
    *,
    iterations: int = 1000,
    tol: float = 1e-9,
    prior: float = 0.5,
) -> dict[str, float]:
    """Elo-scale ratings (mean 1000) from pairwise outcomes, fitted by Hunter's (2004) MM iteration.

    Each model also gets ``prior`` virtual wins and ``prior`` virtual losses against a virtual
    average opponent, so a model that won (or lost) everything still gets a finite rating.
    """
    models = sorted({m for i, j, _ in comparisons for m in (i, j)})
    if not models:
        return {}
    log_strength = _fit_bradley_terry(models, comparisons, iterations=iterations, tol=tol, prior=prior)
    return dict(zip(models, elo(log_strength).tolist()))


def bootstrap_bradley_terry(
    comparisons: list[tuple[str, str, float]],
    *,
    rounds: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Bradley–Terry ratings with percentile intervals from resampling the comparisons.

    A model missing from a resample gets no value in that round (the fit still includes it, so
    every round is normalised over the same models); low/high are None if it never appeared.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    models = sorted({m for i, j, _ in comparisons for m in (i, j)})
    if not models:
        return {}
    point = elo(_fit_bradley_terry(models, comparisons))
    rng = np.random.default_rng(seed)
    samples = np.full((rounds, len(models)), np.nan)
    index = {m: k for k, m in enumerate(models)}
    for r in range(rounds):
        resample = [comparisons[k] for k in rng.integers(0, len(comparisons), len(comparisons))]
        present = [index[m] for m in {m for i, j, _ in resample for m in (i, j)}]
        samples[r, present] = elo(_fit_bradley_terry(models, resample))[present]
    tail = (1 - level) / 2 * 100
    counts = Counter(m for i, j, _ in comparisons for m in (i, j))
    result: dict[str, dict[str, Any]] = {}
    for k, model in enumerate(models):
        seen = samples[~np.isnan(samples[:, k]), k]
        low, high = np.percentile(seen, [tail, 100 - tail]).tolist() if seen.size else (None, None)
        result[model] = {"rating": float(point[k]), "low": low, "high": high, "comparisons": counts[model]}
    return result


def win_matrix(
    comparisons: list[tuple[str, str, float]],
) -> tuple[list[str], list[list[float | None]], list[list[int]]]:
    """Head-to-head table: row model's win rate over column model (ties count half), and how often they met."""
    models = sorted({m for i, j, _ in comparisons for m in (i, j)})
    wins, counts = _tally(models, comparisons)
    rates = [
        [float(wins[r, c] / counts[r, c]) if counts[r, c] else None for c in range(len(models))]
        for r in range(len(models))
    ]
    return models, rates, counts.astype(int).tolist()


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score 95% interval of a proportion (a thumbs campaign's approval rate): sound at 0%, 100% and
    with few votes, where the normal approximation gives intervals outside [0, 1]."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _chance_corrected(observed: float, expected: float) -> float:
    """(p_o - p_e) / (1 - p_e); when chance agreement is certain, kappa is 1 for full agreement, else 0."""
    if expected >= 1.0 - 1e-12:
        return 1.0 if observed >= 1.0 - 1e-12 else 0.0
    return (observed - expected) / (1.0 - expected)


def _binomial_two_sided(k: int, n: int) -> float:
    """P(X <= k or X >= n - k) for X ~ Binomial(n, 1/2), with k <= n / 2.

    Exact in integers for moderate n (so 10 of 10 gives exactly 2/1024); log-space with lgamma for large n.
    """
    if 2 * k == n:
        return 1.0
    if n <= _EXACT_BINOMIAL_MAX_N:
        tail = sum(math.comb(n, i) for i in range(k + 1))
        return min(1.0, float(Fraction(2 * tail, 2**n)))
    log_terms = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(k + 1)])
    top = log_terms.max()
    log_tail = top + math.log(np.exp(log_terms - top).sum()) - n * math.log(2)
    return min(1.0, 2 * math.exp(log_tail))


def _tally(models: list[str], comparisons: list[tuple[str, str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """wins[i, j]: points i scored against j (ties half); counts[i, j]: games between them."""
    index = {m: k for k, m in enumerate(models)}
    wins = np.zeros((len(models), len(models)))
    counts = np.zeros((len(models), len(models)))
    for model_i, model_j, score in comparisons:
        if model_i == model_j:
            raise ValueError(f"comparison of {model_i!r} with itself")
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"score {score} for {model_i!r} vs {model_j!r} must be 1 (win), 0 (loss) or 0.5 (tie)")
        i, j = index[model_i], index[model_j]
        wins[i, j] += score
        wins[j, i] += 1.0 - score
        counts[i, j] += 1
        counts[j, i] += 1
    return wins, counts


def _fit_bradley_terry(
    models: list[str],
    comparisons: list[tuple[str, str, float]],
    *,
    iterations: int = 1000,
    tol: float = 1e-9,
    prior: float = 0.5,
) -> np.ndarray:
    """Centred natural-log strengths by the MM update p_i = W_i / sum_j n_ij / (p_i + p_j).

    The prior is a virtual player, fitted like the others, that won ``prior`` and lost ``prior``
    games against every model: it connects all models, so every strength is finite and unique up
    to scale. The likelihood ignores scale, so renormalising each step leaves the MM fixed point alone.
    """
    if prior <= 0:
        raise ValueError(f"prior must be positive so that unbeaten models stay finite, got {prior}")
    k = len(models)
    wins, counts = np.zeros((k + 1, k + 1)), np.zeros((k + 1, k + 1))
    wins[:k, :k], counts[:k, :k] = _tally(models, comparisons)
    wins[:k, k] = wins[k, :k] = prior
    counts[:k, k] = counts[k, :k] = 2 * prior
    total_wins = wins.sum(axis=1)
    log_strength = np.zeros(k + 1)
    for _ in range(iterations):
        strength = np.exp(log_strength)
        denominator = (counts / (strength[:, None] + strength[None, :])).sum(axis=1)
        updated = np.log(total_wins / denominator)
        updated -= updated.mean()
        converged = np.max(np.abs(updated - log_strength)) < tol
        log_strength = updated
        if converged:
            break
    return log_strength[:k] - log_strength[:k].mean()


def elo(log_strength: np.ndarray) -> np.ndarray:
    """400 * log10(strength), shifted so the mean rating is 1000."""
    ratings = 400.0 * log_strength / math.log(10)
    return ratings - ratings.mean() + 1000.0


def weighted_majority(outcomes: list[str], weights: list[float] | None = None) -> tuple[str | None, float]:
    """The outcome with the most (weighted) votes and its share of the weight; None for the outcome when two tie
    for the top (there is no majority to take). Without weights every vote counts 1."""
    if not outcomes:
        raise ValueError("a majority needs at least one vote")
    weights = weights or [1.0] * len(outcomes)
    if len(weights) != len(outcomes) or min(weights) < 0:
        raise ValueError(f"{len(outcomes)} votes need as many weights of 0 or more, got {weights}")
    tally: Counter[str] = Counter()
    for outcome, weight in zip(outcomes, weights):
        tally[outcome] += weight
    total = sum(tally.values())
    (top, top_weight), *rest = tally.most_common()
    if total == 0 or (rest and math.isclose(rest[0][1], top_weight)):
        return None, top_weight / total if total else 0.0
    return top, top_weight / total
