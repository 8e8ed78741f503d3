"""What the votes say: agreement between labelers, position bias, a Bradley–Terry leaderboard of the
sources, and the export of majority preferences as a versioned DPO dataset."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from typing import Any

from lab.errors import LabError
from lab.home import Home, lab_home
from lab.label import stats
from lab.label.campaigns import GOLD_SOURCES, get_campaign
from lab.store import Store


def campaign_votes(campaign_id: str, home: Home | None = None) -> list[dict[str, Any]]:
    """Every counted vote (retracted ones left out) with its pair: outcome is the winning source, 'tie' or
    'both_bad' (independent of sides)."""
    rows = Store(home or lab_home()).query(
        "SELECT v.*, p.prompt_idx, p.source_1, p.source_2, p.gold FROM live_votes v JOIN pairs p ON p.id = v.pair_id "
        "WHERE v.campaign_id = ? ORDER BY v.id", (campaign_id,))
    for row in rows:
        row["outcome"] = row["winner"] or row["choice"]
    return rows


def agreement(campaign_id: str, *, home: Home | None = None) -> dict[str, Any]:
    """Chance-corrected agreement overall, and per labeler: votes, time per vote, agreement with the others'
    votes on the same pairs, accuracy on gold pairs, and how often they picked the left answer."""
    votes = campaign_votes(campaign_id, home)
    by_pair: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for vote in votes:
        if vote["gold"] is None:
            by_pair[vote["pair_id"]].append(vote)
    table = [[v["outcome"] for v in pair_votes] for pair_votes in by_pair.values()]
    labelers = sorted({v["labeler"] for v in votes})
    report: dict[str, Any] = {
        "votes": len(votes), "labelers": len(labelers), "pairs_with_overlap": sum(len(t) >= 2 for t in table),
        "fleiss_kappa": stats.fleiss_kappa(table), "krippendorff_alpha": stats.krippendorff_alpha_nominal(table),
        "pairwise_agreement": stats.pairwise_agreement(table), "cohen_kappa": None,
        "position_bias": stats.position_bias([v["choice"] for v in votes]), "per_labeler": []}
    if len(labelers) == 2:
        first, second = labelers
        shared = [(next(v["outcome"] for v in vs if v["labeler"] == first),
                   next(v["outcome"] for v in vs if v["labeler"] == second))
                  for vs in by_pair.values() if {v["labeler"] for v in vs} >= {first, second}]
        report["cohen_kappa"] = stats.cohen_kappa([a for a, _ in shared], [b for _, b in shared])
    for labeler in labelers:
        mine = [v for v in votes if v["labeler"] == labeler]
        agree = total = 0
        for vote in mine:
            for other in by_pair.get(vote["pair_id"], []):
                if other["labeler"] != labeler:
                    total += 1
                    agree += other["outcome"] == vote["outcome"]
        gold = [v for v in mine if v["gold"] is not None]
        seconds = [v["seconds"] for v in mine if v["seconds"] is not None]
        bias = stats.position_bias([v["choice"] for v in mine])
        report["per_labeler"].append({
            "labeler": labeler, "votes": len(mine),
            "median_seconds": round(statistics.median(seconds), 2) if seconds else None,
            "agreement_with_others": round(agree / total, 3) if total else None,
            "gold_accuracy": round(sum(v["outcome"] == v["gold"] for v in gold) / len(gold), 3) if gold else None,
            "gold_votes": len(gold), "left_rate": bias["a_rate"], "position_bias_flagged": bias["flagged"]})
    return report


def comparisons(campaign_id: str, home: Home | None = None) -> list[tuple[str, str, float]]:
    """Votes as (source, other source, score of the first): ties half a win; both-bad and gold left out."""
    out = []
    for vote in campaign_votes(campaign_id, home):
        if vote["gold"] is not None or vote["outcome"] == "both_bad":
            continue
        score = 0.5 if vote["outcome"] == "tie" else float(vote["outcome"] == vote["source_1"])
        out.append((vote["source_1"], vote["source_2"], score))
    return out


def leaderboard(campaign_id: str, *, home: Home | None = None, rounds: int = 200) -> dict[str, Any]:
    """Bradley–Terry ratings (mean 1000, Elo scale) with bootstrap 95% intervals, and the win-rate matrix."""
    pairs = comparisons(campaign_id, home)
    if not pairs:
        return {"ratings": [], "models": [], "win_rates": [], "counts": [], "comparisons": 0}
    ratings = stats.bootstrap_bradley_terry(pairs, rounds=rounds, seed=0)
    models, rates, counts = stats.win_matrix(pairs)
    ordered = sorted(ratings.items(), key=lambda item: -item[1]["rating"])
    return {"ratings": [{"source": name, **{k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items()}}
                        for name, r in ordered],
            "models": models, "win_rates": rates, "counts": counts, "comparisons": len(pairs)}


def export_preferences(campaign_id: str, *, name: str = "", min_votes: int = 1, min_agreement: float = 0.5,
                       val_fraction: float = 0.0, home: Home | None = None):
    """Majority preferences as a preference dataset version: one row per pair whose winning source has at
    least ``min_votes`` votes and at least ``min_agreement`` of the pair's votes. Ties, both-bad and pairs with
    no clear majority are left out and counted in the version's card; gold pairs are never exported."""
    from lab.data.canonical import Row
    from lab.data.quality import split
    from lab.data.versions import save_version

    home = home or lab_home()
    campaign = get_campaign(campaign_id, home)
    if not 0 < min_agreement <= 1 or min_votes < 1:
        raise LabError(f"min_agreement must be in (0, 1] and min_votes at least 1 (got {min_agreement}, {min_votes}).")
    store = Store(home)
    by_pair: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for vote in campaign_votes(campaign.id, home):
        if vote["gold"] is None:
            by_pair[vote["pair_id"]].append(vote)
    counts = Counter()
    rows: list[Row] = []
    for pair_id, pair_votes in sorted(by_pair.items()):
        outcomes = Counter(v["outcome"] for v in pair_votes)
        (top, top_n), *rest = outcomes.most_common()
        if rest and rest[0][1] == top_n:
            counts["no majority"] += 1
        elif top in ("tie", "both_bad"):
            counts[top] += 1
        elif top_n < min_votes or top_n / len(pair_votes) < min_agreement:
            counts["below agreement"] += 1
        else:
            first = pair_votes[0]
            loser = first["source_2"] if top == first["source_1"] else first["source_1"]
            texts = {r["source"]: r["text"] for r in store.query(
                "SELECT source, text FROM responses WHERE campaign_id = ? AND prompt_idx = ?",
                (campaign.id, first["prompt_idx"]))}
            prompt = json.loads(store.query("SELECT prompt FROM campaign_prompts WHERE campaign_id = ? AND idx = ?",
                                            (campaign.id, first["prompt_idx"]))[0]["prompt"])
            rows.append(Row({"prompt": prompt, "chosen": [{"role": "assistant", "content": texts[top]}],
                             "rejected": [{"role": "assistant", "content": texts[loser]}],
                             "chosen_source": top, "rejected_source": loser, "votes": len(pair_votes),
                             "agreement": round(top_n / len(pair_votes), 3)},
                            line=pair_id, source=f"campaign:{campaign.id}"))
            counts["exported"] += 1
    if not rows:
        raise LabError(f"Campaign {campaign.name} has no pair with a clear preference yet ({dict(counts) or 'no votes'}"
                       "); collect more votes or lower min_agreement.")
    train, validation = split(rows, val_fraction, seed=0) if val_fraction else (rows, [])
    labelers = sorted({v["labeler"] for vs in by_pair.values() for v in vs})
    card = {"source": f"campaign:{campaign.id}", "campaign": campaign.name, "labelers": labelers,
            "sources": [s["name"] for s in campaign.sources if s["name"] not in GOLD_SOURCES],
            "rule": {"min_votes": min_votes, "min_agreement": min_agreement}, "counts": dict(counts),
            "steps": [{"step": "majority vote", "before": len(by_pair), "after": len(rows),
                       "removed": len(by_pair) - len(rows), "detail": ", ".join(f"{k}: {v}" for k, v in
                                                                                 sorted(counts.items()))}]}
    return save_version(name or f"labels-{campaign.name}"[:64], "preference", "campaign", train, validation, card,
                        home=home)
