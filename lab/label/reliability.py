"""Which labelers' votes to trust, and how agreement moves: per labeler, per stretch of time, per pair of sources.

A labeler's reliability rests on *checks*: each vote on a gold pair (right or wrong: its answer is known) and each
shared pair (a pair other labelers voted on too, where the other labelers have a majority: does this labeler's vote
match it?).

- ``score`` = (checks passed + 1) / (checks + 2): the share passed, started at one pass and one fail so a labeler
  with few votes sits near 0.5 rather than at 0 or 1. Exports weight votes by it (``weighted``).
- ``flagged`` when we are 95% sure the labeler passes fewer than ``TRUST_BELOW`` = 75% of checks (the one-sided
  95% Wilson upper bound of the share passed is below it), or when they favour one side: 20+ decided votes and a
  binomial p (``stats.position_bias``) below 1% shared among the labelers (0.01 / their number, so that a campaign
  of honest labelers sees a false flag in one campaign of a hundred, not one labeler in a hundred). 75% sits between
  a coin (50%: a random clicker) and an honest labeler with 10% random clicks (about 90% agreement with others like
  them); a labeler voting against the rule passes about 10%. Nobody is flagged on fewer than ``MIN_CHECKS`` = 10
  checks (three unlucky checks are not evidence). Then a flipped labeler is flagged at once; a random one in 9 of 10
  campaigns by 30 checks and all but 1 in 5,000 by 100; an honest one with 10% noise in fewer than 1 in 500 at 10
  checks and practically never from 20 on (that needs 9 or more failures where 2 are expected).
- The *others* a labeler is compared with are the reference: every labeler, then the worst flagged one left out and
  everyone measured again, one at a time, while more than two remain. So an honest labeler who shares pairs with a
  random or flipped one is not dragged down by them. With only two labelers and no gold nothing tells which of two
  who disagree is right: both are flagged, and gold pairs settle it.

Agreement figures here read people's votes only (never an admin's decision or a judge's label), gold pairs left out
(they are checks, not items to agree on), as ``results.agreement`` does.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

from lab.home import Home, lab_home
from lab.label import stats
from lab.label.results import campaign_votes, sided

TRUST_BELOW = 0.75  # flagged when 95% sure the share of checks passed is below this
ONE_SIDED_95 = 1.645  # z of a one-sided 95% bound: "sure it is below", not "sure it is outside"
MIN_CHECKS = 10  # no reliability flag on fewer checks than this
SIDE_P = 0.01  # position bias: p below this, shared among the labelers (Bonferroni)
SIDE_MIN_VOTES = 20  # ... with at least this many decided votes
MIN_REFERENCE = 2  # never leave fewer labelers than this as the others everyone is measured against
WINDOWS = 10  # κ over time: about this many windows ...
MIN_WINDOW = 10  # ... of at least this many pairs each


def labelers(campaign_id: str, *, home: Home | None = None) -> list[dict[str, Any]]:
    """Per labeler: ``labeler, votes, gold_votes, gold_correct, gold_accuracy, shared_pairs, majority_agreement,
    left_rate, position_p, score (0..1), flagged, why`` (plain words, e.g. "agrees with the others on 31% of 26
    shared pairs; gold 2/8"); flagged labelers first, then by name. See the module's docstring for the rule."""
    return assess(campaign_votes(campaign_id, home or lab_home()))


def assess(votes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reliability table from a campaign's counted votes (``results.campaign_votes``)."""
    names = sorted({v["labeler"] for v in votes})
    by_pair: dict[int, dict[str, str]] = defaultdict(dict)  # pair → {labeler: outcome}, gold pairs left out
    for vote in votes:
        if vote["gold"] is None:
            by_pair[vote["pair_id"]][vote["labeler"]] = vote["outcome"]
    reference = set(names)
    while True:
        table = {name: measure(name, votes, by_pair, reference, SIDE_P / len(names)) for name in names}
        suspects = [table[n] for n in reference if table[n]["flagged"]]
        if not suspects or len(reference) <= MIN_REFERENCE:
            break
        reference.discard(min(suspects, key=lambda r: (r["score"], r["labeler"]))["labeler"])
    for row in table.values():
        if row["flagged"] and not row["gold_votes"] and len(names) <= 2:
            row["why"] += " (only two labelers to compare: gold pairs would tell which is right)"
    return sorted(table.values(), key=lambda r: (not r["flagged"], r["labeler"]))


def measure(name: str, votes: list[dict[str, Any]], by_pair: dict[int, dict[str, str]], reference: set[str],
            side_p: float) -> dict[str, Any]:
    """One labeler's checks against the reference's other members, their score, flag and why (a side favoured
    with p below ``side_p`` flags too)."""
    mine = [v for v in votes if v["labeler"] == name]
    shared = agree = 0
    for vote in mine:
        if vote["gold"] is not None:
            continue
        others = [o for who, o in by_pair[vote["pair_id"]].items() if who != name and who in reference]
        top = stats.weighted_majority(others)[0] if others else None
        if top is not None:  # others split evenly give nothing to agree with
            shared += 1
            agree += vote["outcome"] == top
    gold = [v["outcome"] == v["gold"] for v in mine if v["gold"] is not None]
    checks, passed = shared + len(gold), agree + sum(gold)
    upper = stats.wilson_interval(passed, checks, z=ONE_SIDED_95)[1] if checks else None
    bias = stats.position_bias(sided(mine))
    unreliable = checks >= MIN_CHECKS and upper < TRUST_BELOW
    one_sided = bias["decided"] >= SIDE_MIN_VOTES and bias["p_value"] < side_p
    why = [f"agrees with the others on {agree / shared:.0%} of {shared} shared pairs" if shared
           else "shares no pair with the others yet"]
    if gold:
        why.append(f"gold {sum(gold)}/{len(gold)}")
    if 0 < checks < MIN_CHECKS:  # a low rate on a handful of checks is said, not yet held against anyone
        why.append(f"too few checks to flag yet ({checks} of {MIN_CHECKS})")
    if one_sided:
        side, rate = ("left", bias["a_rate"]) if bias["a_rate"] > 0.5 else ("right", 1 - bias["a_rate"])
        why.append(f"picks the {side} answer in {rate:.0%} of {bias['decided']} decided votes "
                   f"(p={bias['p_value']:.2g})")
    return {"labeler": name, "votes": len(mine), "gold_votes": len(gold), "gold_correct": sum(gold),
            "gold_accuracy": round(sum(gold) / len(gold), 3) if gold else None, "shared_pairs": shared,
            "majority_agreement": round(agree / shared, 3) if shared else None,
            "left_rate": round(bias["a_rate"], 3) if bias["a_rate"] is not None else None,
            "position_p": bias["p_value"], "score": round((passed + 1) / (checks + 2), 3),
            "flagged": unreliable or one_sided, "why": "; ".join(why)}


def kappa_over_time(campaign_id: str, *, home: Home | None = None, window: int = 0) -> list[dict[str, Any]]:
    """Fleiss' κ in windows of pairs in time order: a pair joins the window in which its second vote came (from then
    on it says something about agreement) and counts with all its votes. Windows rather than a running total
    because a window shows drift that a cumulative number smooths away (a labeler tiring, a new labeler joining, the
    guidelines changing); the cumulative κ (all pairs up to the window's end) is given beside it, as the number the
    campaign ends with. ``window`` pairs each (0: about ``WINDOWS`` windows of at least ``MIN_WINDOW`` pairs).

    Each entry: ``{"window" (1-based), "pairs", "votes", "start", "end" (the second votes' times), "kappa",
    "cumulative_kappa"}``; an empty list until some pair has two votes."""
    by_pair: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for vote in campaign_votes(campaign_id, home or lab_home()):  # in vote order (id), so in time order
        if vote["gold"] is None:
            by_pair[vote["pair_id"]].append(vote)
    ready = sorted((vs for vs in by_pair.values() if len(vs) >= 2), key=lambda vs: vs[1]["id"])
    size = window or max(MIN_WINDOW, math.ceil(len(ready) / WINDOWS))
    out, so_far = [], []
    for start in range(0, len(ready), size):
        chunk = ready[start:start + size]
        table = [[v["outcome"] for v in vs] for vs in chunk]
        so_far += table
        out.append({"window": len(out) + 1, "pairs": len(chunk), "votes": sum(map(len, chunk)),
                    "start": chunk[0][1]["created_at"], "end": chunk[-1][1]["created_at"],
                    "kappa": rounded(stats.fleiss_kappa(table)), "cumulative_kappa": rounded(stats.fleiss_kappa(so_far))})
    return out


def per_source_pair(campaign_id: str, *, home: Home | None = None) -> list[dict[str, Any]]:
    """Agreement and votes per pair of sources (a thumbs campaign: per source): ``{"sources": [first, second],
    "pairs" (with a vote), "votes", "outcomes" {a source, tie, both_bad (up, down): votes}, "kappa" (Fleiss, pairs
    with two votes or more), "agreement" (share of labeler pairs that agree)}``, most votes first. Two sources that
    are hard to tell apart show as a low κ here while the campaign's κ looks fine."""
    groups: dict[tuple[str, str], dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for vote in campaign_votes(campaign_id, home or lab_home()):
        if vote["gold"] is None:
            key = tuple(sorted((vote["source_1"], vote["source_2"])))
            groups[key][vote["pair_id"]].append(vote["outcome"])
    out = []
    for (first, second), pairs in groups.items():
        table = list(pairs.values())
        out.append({"sources": [first, second], "pairs": len(table), "votes": sum(map(len, table)),
                    "outcomes": dict(Counter(o for outcomes in table for o in outcomes).most_common()),
                    "kappa": rounded(stats.fleiss_kappa(table)), "agreement": rounded(stats.pairwise_agreement(table))})
    return sorted(out, key=lambda r: (-r["votes"], r["sources"]))


def weights(campaign_id: str, *, home: Home | None = None) -> tuple[dict[str, float], list[str]]:
    """(each labeler's score, the flagged labelers by name): what the exports weight by and drop."""
    table = labelers(campaign_id, home=home)
    return {r["labeler"]: r["score"] for r in table}, sorted(r["labeler"] for r in table if r["flagged"])


def rounded(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None
