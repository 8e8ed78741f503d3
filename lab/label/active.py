"""Active serving: the next pair is the one where a vote is worth most.

A campaign with ``serving = active`` ranks the pairs a labeler may take by
1. the source pair whose order is least certain: the Bradley–Terry strengths fitted to the campaign's votes so far
   (a few Newton steps on the vote tallies, with the leaderboard's prior of half a win and half a loss against an
   average opponent), and the Wald statistic |θ₁ − θ₂| / se from the fit's Fisher information — a closed form, so it
   is cheap enough to run inside every serve's write transaction;
2. within a source pair, prompts whose votes are split (they want an extra vote: ``lab.label.adjudication``);
3. then as balanced serving does: pairs the labeler skipped last, fewest votes still wanted, the campaign's random
   rank.
Gold pairs are served with probability ``gold_share`` (when one is left for this labeler); with ``gold_share`` 0 they
are mixed in at their share of the pairs left, as balanced serving's random order mixes them.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np

PRIOR = 0.5  # virtual wins and losses against an average opponent, as lab.label.stats.bradley_terry uses
NEWTON_STEPS = 25


def pick(conn: Any, campaign_id: str, candidates: list[Any], gold_share: float,
         draw: random.Random | None = None) -> Any | None:
    """The candidate pair (rows with id, source_1, source_2, gold, remaining, rank, skipped, split) to serve now."""
    if not candidates:
        return None
    draw = draw or random.Random()
    gold = [c for c in candidates if c["gold"] is not None]
    regular = [c for c in candidates if c["gold"] is None]
    share = gold_share if gold_share > 0 else len(gold) / len(candidates)
    if gold and (not regular or draw.random() < share):
        return min(gold, key=lambda c: (c["skipped"], c["remaining"], c["rank"]))
    certainty = order_certainty(conn, campaign_id)
    return min(regular, key=lambda c: (c["skipped"], certainty.get(frozenset((c["source_1"], c["source_2"])), 0.0),
                                       not c["split"], c["remaining"], c["rank"]))


def tallies(conn: Any, campaign_id: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The compared sources, wins[i, j] (points i scored against j, ties half) and games[i, j], from the live votes
    on compared pairs (gold, thumbs and both-bad votes left out, as the leaderboard leaves them out)."""
    sources = sorted({s for r in conn.execute("SELECT DISTINCT source_1, source_2 FROM pairs WHERE campaign_id = ? AND "
                                              "gold IS NULL AND source_1 != source_2", (campaign_id,))
                      for s in (r["source_1"], r["source_2"])})
    index = {s: k for k, s in enumerate(sources)}
    wins, games = np.zeros((len(sources), len(sources))), np.zeros((len(sources), len(sources)))
    rows = conn.execute(
        """SELECT p.source_1, p.source_2, COALESCE(v.winner, v.choice) AS outcome, COUNT(*) AS n
           FROM live_votes v JOIN pairs p ON p.id = v.pair_id
           WHERE v.campaign_id = ? AND p.gold IS NULL AND p.source_1 != p.source_2 AND v.choice IN ('a', 'b', 'tie')
           GROUP BY p.source_1, p.source_2, outcome""", (campaign_id,))
    for row in rows:
        i, j = index[row["source_1"]], index[row["source_2"]]
        first = 0.5 if row["outcome"] == "tie" else float(row["outcome"] == row["source_1"])
        wins[i, j] += first * row["n"]
        wins[j, i] += (1 - first) * row["n"]
        games[i, j] += row["n"]
        games[j, i] += row["n"]
    return sources, wins, games


def fit(wins: np.ndarray, games: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bradley–Terry log-strengths θ (maximum a posteriori with the prior) and their covariance, the inverse of the
    Fisher information at θ."""
    k = len(wins)
    theta = np.zeros(k)
    covariance = np.eye(k)
    for _ in range(NEWTON_STEPS):
        p = 1 / (1 + np.exp(theta[None, :] - theta[:, None]))  # p[i, j]: chance that i beats j
        p_prior = 1 / (1 + np.exp(-theta))  # against the average opponent (θ = 0)
        gradient = (wins - games * p).sum(axis=1) + PRIOR * (1 - 2 * p_prior)
        weight = games * p * (1 - p)
        information = np.diag(weight.sum(axis=1) + 2 * PRIOR * p_prior * (1 - p_prior)) - weight
        covariance = np.linalg.inv(information)
        step = covariance @ gradient
        theta = theta + step
        if np.max(np.abs(step)) < 1e-6:
            break
    return theta, covariance


def order_certainty(conn: Any, campaign_id: str) -> dict[frozenset[str], float]:
    """For every two compared sources, |θ₁ − θ₂| / se(θ₁ − θ₂): small = the votes so far leave their order open."""
    sources, wins, games = tallies(conn, campaign_id)
    if len(sources) < 2:
        return {}
    theta, covariance = fit(wins, games)
    out = {}
    for i in range(len(sources)):
        for j in range(i + 1, len(sources)):
            variance = covariance[i, i] + covariance[j, j] - 2 * covariance[i, j]
            out[frozenset((sources[i], sources[j]))] = abs(theta[i] - theta[j]) / math.sqrt(max(variance, 1e-12))
    return out
