"""What the votes say: agreement between labelers, position bias, a Bradley–Terry leaderboard of the
sources (a thumbs campaign: each source's approval rate), and the export of majority votes as a versioned
dataset: preference pairs for DPO, or unpaired replies labelled desirable or not for KTO."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from lab.errors import LabError
from lab.home import Home, lab_home
from lab.label import stats
from lab.label.campaigns import GOLD_SOURCES, Campaign, get_campaign
from lab.label.serving import CHOICES
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
        "position_bias": stats.position_bias(sided(votes)), "per_labeler": []}
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
        bias = stats.position_bias(sided(mine))
        thumbs = [v["choice"] == "up" for v in mine if v["choice"] not in CHOICES]
        report["per_labeler"].append({
            "labeler": labeler, "votes": len(mine),
            "median_seconds": round(statistics.median(seconds), 2) if seconds else None,
            "agreement_with_others": round(agree / total, 3) if total else None,
            "gold_accuracy": round(sum(v["outcome"] == v["gold"] for v in gold) / len(gold), 3) if gold else None,
            "gold_votes": len(gold), "left_rate": bias["a_rate"], "position_bias_flagged": bias["flagged"],
            # thumbs: how often this labeler gave 👍 (one who approves nearly everything shows here)
            "up_rate": round(sum(thumbs) / len(thumbs), 3) if thumbs else None})
    return report


def sided(votes: list[dict[str, Any]]) -> list[str]:
    """The votes on pairs shown side by side (thumbs votes have no side to favour)."""
    return [v["choice"] for v in votes if v["choice"] in CHOICES]


def comparisons(campaign_id: str, home: Home | None = None) -> list[tuple[str, str, float]]:
    """Votes as (source, other source, score of the first): ties half a win; both-bad, gold and thumbs votes left
    out."""
    out = []
    for vote in campaign_votes(campaign_id, home):
        if vote["gold"] is not None or vote["outcome"] == "both_bad" or vote["choice"] not in CHOICES:
            continue  # thumbs votes compare nothing: their leaderboard is ``approval``
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


def approval(campaign_id: str, *, home: Home | None = None) -> dict[str, Any]:
    """A thumbs campaign's leaderboard: per source, its 👍 and 👎 votes and the share of 👍 with a Wilson 95%
    interval, best first. Every counted vote counts (not a majority per answer): the rate is what a labeler
    thinks of a random answer from that source."""
    tally: dict[str, Counter] = defaultdict(Counter)
    for vote in campaign_votes(campaign_id, home):
        if vote["choice"] not in CHOICES:
            tally[vote["source_1"]][vote["choice"]] += 1
    sources = []
    for source, count in tally.items():
        n = count["up"] + count["down"]
        low, high = stats.wilson_interval(count["up"], n)
        sources.append({"source": source, "up": count["up"], "down": count["down"], "votes": n,
                        "rate": round(count["up"] / n, 3), "low": round(low, 3), "high": round(high, 3)})
    sources.sort(key=lambda r: (-r["rate"], -r["votes"], r["source"]))
    return {"sources": sources, "votes": sum(r["votes"] for r in sources)}


@dataclass
class Voted:
    """A pair's counted votes (gold left out), and where to read its prompt and answers."""

    pair_id: int
    votes: list[dict[str, Any]]

    def decide(self, min_votes: int, min_agreement: float) -> tuple[str, str | None]:
        """(the majority outcome, why it is left out): None when it has at least ``min_votes`` votes and
        ``min_agreement`` of the pair's votes; else 'no majority' (a tie for the top) or 'below agreement'."""
        (top, top_n), *rest = Counter(v["outcome"] for v in self.votes).most_common()
        if rest and rest[0][1] == top_n:
            return top, "no majority"
        if top_n < min_votes or top_n / len(self.votes) < min_agreement:
            return top, "below agreement"
        return top, None

    def agreement(self, outcome: str) -> float:
        return round(sum(v["outcome"] == outcome for v in self.votes) / len(self.votes), 3)


def voted_pairs(campaign: Campaign, min_votes: int, min_agreement: float, home: Home) -> list[Voted]:
    if not 0 < min_agreement <= 1 or min_votes < 1:
        raise LabError(f"min_agreement must be in (0, 1] and min_votes at least 1 (got {min_agreement}, {min_votes}).")
    by_pair: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for vote in campaign_votes(campaign.id, home):
        if vote["gold"] is None:
            by_pair[vote["pair_id"]].append(vote)
    return [Voted(pair_id, votes) for pair_id, votes in sorted(by_pair.items())]


def prompt_and_texts(store: Store, campaign_id: str, prompt_idx: int) -> tuple[list[dict[str, str]], dict[str, str]]:
    """A campaign prompt's messages, and its answers by source."""
    texts = {r["source"]: r["text"] for r in store.query(
        "SELECT source, text FROM responses WHERE campaign_id = ? AND prompt_idx = ?", (campaign_id, prompt_idx))}
    prompt = json.loads(store.query("SELECT prompt FROM campaign_prompts WHERE campaign_id = ? AND idx = ?",
                                    (campaign_id, prompt_idx))[0]["prompt"])
    return prompt, texts


def export_preferences(campaign_id: str, *, name: str = "", min_votes: int = 1, min_agreement: float = 0.5,
                       val_fraction: float = 0.0, home: Home | None = None):
    """Majority preferences as a preference dataset version: one row per pair whose winning source has at
    least ``min_votes`` votes and at least ``min_agreement`` of the pair's votes. Ties, both-bad and pairs with
    no clear majority are left out and counted in the version's card; gold pairs are never exported."""
    from lab.data.canonical import Row

    home = home or lab_home()
    campaign = get_campaign(campaign_id, home)
    if campaign.thumbs:
        raise LabError(f"Campaign {campaign.name} rates one answer at a time (thumbs): its votes export as unpaired "
                       "data for KTO (export_unpaired; the CLI's --kind unpaired), not as pairs.")
    store = Store(home)
    pairs = voted_pairs(campaign, min_votes, min_agreement, home)
    counts = Counter()
    rows: list[Row] = []
    for pair in pairs:
        top, why = pair.decide(min_votes, min_agreement)
        if why != "no majority" and top in ("tie", "both_bad"):
            why = top  # counted as what the labelers said, whatever the agreement
        counts[why or "exported"] += 1
        if why:
            continue
        first = pair.votes[0]
        loser = first["source_2"] if top == first["source_1"] else first["source_1"]
        prompt, texts = prompt_and_texts(store, campaign.id, first["prompt_idx"])
        rows.append(Row({"prompt": prompt, "chosen": [{"role": "assistant", "content": texts[top]}],
                         "rejected": [{"role": "assistant", "content": texts[loser]}],
                         "chosen_source": top, "rejected_source": loser, "votes": len(pair.votes),
                         "agreement": pair.agreement(top)},
                        line=pair.pair_id, source=f"campaign:{campaign.id}"))
    if not rows:
        raise LabError(f"Campaign {campaign.name} has no pair with a clear preference yet ({dict(counts) or 'no votes'}"
                       "); collect more votes or lower min_agreement.")
    return save_export(campaign, pairs, rows, counts, "preference", name or f"labels-{campaign.name}"[:64],
                       min_votes, min_agreement, val_fraction, home)


def export_unpaired(campaign_id: str, *, name: str = "", min_votes: int = 1, min_agreement: float = 0.5,
                    val_fraction: float = 0.0, home: Home | None = None):
    """Majority votes as an unpaired dataset version (prompt, completion, label), what KTO trains on, under the
    same rule as ``export_preferences`` (the majority needs ``min_votes`` votes and ``min_agreement`` of them).

    - A thumbs campaign: each answer voted mostly 👍 is desirable, mostly 👎 undesirable.
    - A pairwise campaign: the winner of a pair is desirable and the loser undesirable; "both bad" gives both
      answers as undesirable. A tie gives nothing: it says the two answers are alike, not that either is good
      (two mediocre answers tie as often as two good ones), so neither label would be earned.
    Pairs left out (ties, no majority, below agreement) are counted in the card with the rows of each label."""
    from lab.data.canonical import Row

    home = home or lab_home()
    campaign = get_campaign(campaign_id, home)
    store = Store(home)
    pairs = voted_pairs(campaign, min_votes, min_agreement, home)
    counts = Counter()
    rows: list[Row] = []

    def add(prompt: list[dict[str, str]], text: str, label: bool, pair_id: int) -> None:
        rows.append(Row({"prompt": prompt, "completion": [{"role": "assistant", "content": text}], "label": label},
                        line=pair_id, source=f"campaign:{campaign.id}"))
        counts["desirable rows" if label else "undesirable rows"] += 1

    for pair in pairs:
        top, why = pair.decide(min_votes, min_agreement)
        if why or top == "tie":
            counts[why or "tie"] += 1
            continue
        first = pair.votes[0]
        prompt, texts = prompt_and_texts(store, campaign.id, first["prompt_idx"])
        if top in ("up", "down"):
            add(prompt, texts[first["source_1"]], top == "up", pair.pair_id)
        elif top == "both_bad":
            counts["both bad"] += 1
            add(prompt, texts[first["source_1"]], False, pair.pair_id)
            add(prompt, texts[first["source_2"]], False, pair.pair_id)
        else:
            loser = first["source_2"] if top == first["source_1"] else first["source_1"]
            add(prompt, texts[top], True, pair.pair_id)
            add(prompt, texts[loser], False, pair.pair_id)
    if not rows:
        raise LabError(f"Campaign {campaign.name} has no {'answer' if campaign.thumbs else 'pair'} with a clear vote "
                       f"yet ({dict(counts) or 'no votes'}); collect more votes or lower min_agreement.")
    return save_export(campaign, pairs, rows, counts, "unpaired", name or f"unpaired-{campaign.name}"[:64],
                       min_votes, min_agreement, val_fraction, home)


def export_kinds(campaign: Campaign) -> tuple[str, ...]:
    """The dataset kinds a campaign's votes export as, the usual one first."""
    return ("unpaired",) if campaign.thumbs else ("preference", "unpaired")


def export_votes(campaign_id: str, kind: str = "", **options: Any):
    """Export as ``kind`` (preference or unpaired; "" = the campaign's usual: pairs for a pairwise campaign,
    unpaired for a thumbs one)."""
    campaign = get_campaign(campaign_id, options.get("home"))
    kinds = export_kinds(campaign)
    kind = kind or kinds[0]
    if kind not in kinds:
        raise LabError(f"Campaign {campaign.name} ({campaign.mode}) exports as {' or '.join(kinds)}, not {kind}.")
    export = export_preferences if kind == "preference" else export_unpaired
    return export(campaign.id, **options)


def save_export(campaign: Campaign, pairs: list[Voted], rows: list[Any], counts: Counter, kind: str, name: str,
                min_votes: int, min_agreement: float, val_fraction: float, home: Home):
    """Save an export's rows as a dataset version whose card names the campaign, its labelers, the rule and the
    counts."""
    from lab.data.quality import split
    from lab.data.versions import save_version

    train, validation = split(rows, val_fraction, seed=0) if val_fraction else (rows, [])
    labelers = sorted({v["labeler"] for pair in pairs for v in pair.votes})
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    card = {"source": f"campaign:{campaign.id}", "campaign": campaign.name, "mode": campaign.mode,
            "labelers": labelers, "sources": [s["name"] for s in campaign.sources if s["name"] not in GOLD_SOURCES],
            "rule": {"min_votes": min_votes, "min_agreement": min_agreement}, "counts": dict(counts),
            "steps": [{"step": "majority vote", "before": len(pairs), "after": len(rows),
                       "removed": len(pairs) - len({row.line for row in rows}), "detail": detail}]}
    return save_version(name, kind, "campaign", train, validation, card, home=home)
