"""What the votes say: agreement between labelers, position bias, a Bradley–Terry leaderboard of the
sources (a thumbs campaign: each source's approval rate), per-aspect tallies, and the export of labels as a
versioned dataset: preference pairs for DPO, or unpaired replies labelled desirable or not for KTO. A label is
people's majority (optionally without unreliable labelers, or weighted by reliability: ``lab.label.reliability``),
an admin's decision, or an LLM judge's on a pair nobody voted on; the card says which rows came from whom."""

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


def compared_votes(campaign_id: str, home: Home | None = None) -> list[tuple[dict[str, Any], float]]:
    """The votes a leaderboard counts, each with the score of its pair's first source (ties half a win); both-bad,
    gold and thumbs votes left out (thumbs votes compare nothing: their leaderboard is ``approval``)."""
    return [(vote, 0.5 if vote["outcome"] == "tie" else float(vote["outcome"] == vote["source_1"]))
            for vote in campaign_votes(campaign_id, home)
            if vote["gold"] is None and vote["outcome"] != "both_bad" and vote["choice"] in CHOICES]


def comparisons(campaign_id: str, home: Home | None = None) -> list[tuple[str, str, float]]:
    """Votes as (source, other source, score of the first), as ``compared_votes`` counts them."""
    return [(vote["source_1"], vote["source_2"], score) for vote, score in compared_votes(campaign_id, home)]


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


def aspect_tally(campaign_id: str, *, home: Home | None = None) -> list[dict[str, Any]]:
    """Per-aspect votes (a campaign with ``aspects``), per aspect and source: ``{"aspect", "source", "wins",
    "losses", "ties", "votes", "rate"}`` (rate: wins + half the ties, over the votes), in the campaign's aspect
    order, best source first. People's votes only, gold pairs left out; a vote that skipped an aspect is not
    counted for it."""
    home = home or lab_home()
    order = {a: i for i, a in enumerate(get_campaign(campaign_id, home).campaign_config.aspect_list())}
    tally: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for vote in campaign_votes(campaign_id, home):
        if vote["gold"] is not None or vote["source_1"] == vote["source_2"]:
            continue
        for aspect, winner in json.loads(vote.get("aspects") or "{}").items():
            for source in (vote["source_1"], vote["source_2"]):
                tally[aspect, source]["ties" if winner == "tie" else "wins" if winner == source else "losses"] += 1
    rows = []
    for (aspect, source), count in tally.items():
        n = count.total()
        rows.append({"aspect": aspect, "source": source, "wins": count["wins"], "losses": count["losses"],
                     "ties": count["ties"], "votes": n, "rate": round((count["wins"] + count["ties"] / 2) / n, 3)})
    return sorted(rows, key=lambda r: (order.get(r["aspect"], len(order)), r["aspect"], -r["rate"], r["source"]))


# --------------------------------------------------------------------------- export

LABEL_SOURCES = ("people", "adjudicator", "judge")  # who gave an exported row its label


@dataclass
class Rule:
    """How votes become labels. Per pair: an admin's decision (adjudication) if there is one; else the majority of
    people's votes, which needs ``min_votes`` votes and ``min_agreement`` of the pair's votes (of their weight, when
    ``weighted``: each vote weighs its labeler's reliability score), flagged labelers' votes left out when
    ``drop_unreliable``; else, for a pair nobody voted on, the LLM judge's label where the campaign lets it fill
    (``prelabel.fills``). A graded campaign's pair keeps its majority only when the mean strength of the winning
    votes (its margin: 2 = much better, 1 = better) is at least ``min_margin``."""

    min_votes: int = 1
    min_agreement: float = 0.5
    drop_unreliable: bool = False
    weighted: bool = False
    min_margin: float = 0.0

    def check(self, campaign: Campaign) -> None:
        if not 0 < self.min_agreement <= 1 or self.min_votes < 1:
            raise LabError(f"min_agreement must be in (0, 1] and min_votes at least 1 (got {self.min_agreement}, "
                           f"{self.min_votes}).")
        if self.min_margin and not campaign.config.get("graded"):
            raise LabError(f"Campaign {campaign.name} is not graded: its votes have no strength for min_margin to "
                           "filter on; leave min_margin at 0 (or create the campaign with graded votes).")
        if not 0 <= self.min_margin <= 2:
            raise LabError(f"min_margin is a mean vote strength between 1 (better) and 2 (much better), or 0 for "
                           f"none; got {self.min_margin}.")


@dataclass
class Decided:
    """A pair's label under a ``Rule``: its outcome (a source, tie, both_bad, or a thumbs item's up/down) and who
    gave it, or why it has none (``why``: no majority, below agreement, below margin, votes dropped)."""

    pair_id: int
    prompt_idx: int
    sources: tuple[str, str]
    outcome: str | None
    why: str | None
    label_source: str
    votes: int  # people's votes counted
    agreement: float | None  # the winner's share of them (of their weight when weighted)
    margin: float | None  # graded campaigns' decided pairs: the mean strength of the winning votes

    def loser(self) -> str:
        return self.sources[1] if self.outcome == self.sources[0] else self.sources[0]


@dataclass
class Decisions:
    """Every labelled or voted pair of a campaign under a rule, with whose votes counted."""

    pairs: list[Decided]
    labelers: list[str]  # whose votes counted
    dropped: list[str]  # flagged labelers left out (drop_unreliable)
    judge: str  # the judge whose labels fill pairs nobody voted on ('' = none)

    @classmethod
    def merged(cls, parts: list[Decisions]) -> Decisions:
        """Several rounds' decisions as one: every pair, everyone whose votes counted or were dropped, the last
        round's judge."""
        return cls([p for d in parts for p in d.pairs], sorted({n for d in parts for n in d.labelers}),
                   sorted({n for d in parts for n in d.dropped}), parts[-1].judge)


def decide_pairs(campaign: Campaign, rule: Rule, home: Home) -> Decisions:
    """Each pair's label under ``rule`` (see ``Rule``); gold pairs never, thumbs items without decisions or fills."""
    from lab.label import adjudication, prelabel, reliability

    rule.check(campaign)
    by_pair: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for vote in campaign_votes(campaign.id, home):
        if vote["gold"] is None:
            by_pair[vote["pair_id"]].append(vote)
    scores, dropped = (reliability.weights(campaign.id, home=home) if rule.weighted or rule.drop_unreliable
                       else ({}, []))
    dropped = dropped if rule.drop_unreliable else []
    decided = {} if campaign.thumbs else adjudication.decisions(campaign.id, home=home)
    filled = {} if campaign.thumbs else prelabel.fills(campaign.id, home=home)
    pairs = {r["id"]: r for r in Store(home).query(
        "SELECT id, prompt_idx, source_1, source_2 FROM pairs WHERE campaign_id = ? AND gold IS NULL", (campaign.id,))}
    graded = bool(campaign.config.get("graded"))
    out = []
    for pair_id in sorted((set(by_pair) | set(decided) | set(filled)) & set(pairs)):
        pair = pairs[pair_id]
        people = [v for v in by_pair.get(pair_id, []) if v["labeler"] not in dropped]
        outcome, why, label_source, agreement = None, None, "people", None
        if pair_id in decided:
            outcome, label_source = decided[pair_id], "adjudicator"
        elif people:
            weights = [scores[v["labeler"]] for v in people] if rule.weighted else None
            outcome, share = stats.weighted_majority([v["outcome"] for v in people], weights)
            agreement = round(share, 3)
            if outcome is None:
                why = "no majority"
            elif sum(v["outcome"] == outcome for v in people) < rule.min_votes or share < rule.min_agreement:
                why = "below agreement"
        elif pair_id in by_pair:
            why = "votes dropped"  # every vote on it came from a flagged labeler
        else:
            outcome, label_source = filled[pair_id], "judge"
        decisive = outcome not in (None, "tie", "both_bad", "up", "down")
        margin = winning_strength(people, outcome) if graded and decisive else None
        if why is None and margin is not None and margin < rule.min_margin:
            why = "below margin"
        out.append(Decided(pair_id, pair["prompt_idx"], (pair["source_1"], pair["source_2"]), outcome, why,
                           label_source, len(people), agreement, margin))
    labelers = sorted({v["labeler"] for vs in by_pair.values() for v in vs} - set(dropped))
    judge = campaign.config.get("judge", "") if filled else ""
    return Decisions(out, labelers, dropped, judge)


def winning_strength(votes: list[dict[str, Any]], outcome: str) -> float:
    """The margin of a graded pair: the mean strength of the votes for its outcome (1 = better, 2 = much better); a
    decision or a judge's label with no such vote behind it is a plain 'better', 1."""
    strengths = [v["strength"] or 1 for v in votes if v["outcome"] == outcome]
    return round(sum(strengths) / len(strengths), 3) if strengths else 1.0


def prompt_and_texts(store: Store, campaign_id: str, prompt_idx: int) -> tuple[list[dict[str, str]], dict[str, str]]:
    """A campaign prompt's messages, and its answers by source."""
    texts = {r["source"]: r["text"] for r in store.query(
        "SELECT source, text FROM responses WHERE campaign_id = ? AND prompt_idx = ?", (campaign_id, prompt_idx))}
    prompt = json.loads(store.query("SELECT prompt FROM campaign_prompts WHERE campaign_id = ? AND idx = ?",
                                    (campaign_id, prompt_idx))[0]["prompt"])
    return prompt, texts


def export_preferences(campaign_id: str, *, name: str = "", min_votes: int = 1, min_agreement: float = 0.5,
                       val_fraction: float = 0.0, drop_unreliable: bool = False, weighted: bool = False,
                       min_margin: float = 0.0, earlier_rounds: bool = False, home: Home | None = None):
    """Labelled pairs as a preference dataset version, one row per pair whose label (see ``Rule``) names a winner:
    people's majority, an admin's decision, or the judge's label on a pair nobody voted on. Each row says which
    (``label_source``) and, in a graded campaign, its ``margin`` (the mean strength of the winning votes: the name
    TRL's RewardTrainer reads a margin by). Ties, both-bad and pairs with no clear majority are left out and counted
    in the version's card; gold pairs are never exported. ``earlier_rounds``: also the pairs of every round before
    this one in its chain (``lab.label.rounds``), each decided under the same rule, so that the next model learns
    from all the votes so far; the card counts the rows of each round."""
    from lab.data.canonical import Row

    home = home or lab_home()
    campaign = get_campaign(campaign_id, home)
    if campaign.thumbs:
        raise LabError(f"Campaign {campaign.name} rates one answer at a time (thumbs): its votes export as unpaired "
                       "data for KTO (export_unpaired; the CLI's --kind unpaired), not as pairs.")
    rule = Rule(min_votes, min_agreement, drop_unreliable, weighted, min_margin)
    store = Store(home)
    counts = Counter()
    rows: list[Row] = []
    per_round = []
    for each in rounds_so_far(campaign, home) if earlier_rounds else [campaign]:
        if each.thumbs:  # an earlier round that rated one answer at a time has no pairs to give
            counts[f"round {each.round} (thumbs) left out"] += 1
            continue
        decisions = decide_pairs(each, rule, home)
        before = len(rows)
        for pair in decisions.pairs:
            why = pair.why
            if why in (None, "below agreement") and pair.outcome in ("tie", "both_bad"):
                why = pair.outcome  # counted as what was said, whatever the agreement
            counts[why or "exported"] += 1
            if why:
                continue
            prompt, texts = prompt_and_texts(store, each.id, pair.prompt_idx)
            data = {"prompt": prompt, "chosen": [{"role": "assistant", "content": texts[pair.outcome]}],
                    "rejected": [{"role": "assistant", "content": texts[pair.loser()]}],
                    "chosen_source": pair.outcome, "rejected_source": pair.loser(), "votes": pair.votes,
                    "agreement": pair.agreement, "label_source": pair.label_source}
            if pair.margin is not None:
                data["margin"] = pair.margin
            rows.append(Row(data, line=pair.pair_id, source=f"campaign:{each.id}"))
        per_round.append((each, decisions, len(rows) - before))
    if not rows:
        raise LabError(f"Campaign {campaign.name}{' and its earlier rounds have' if earlier_rounds else ' has'} no "
                       f"pair with a clear preference yet ({dict(counts) or 'no votes'}); collect more votes or lower "
                       "min_agreement.")
    decisions = Decisions.merged([d for _, d, _ in per_round])
    return save_export(campaign, decisions, rows, counts, "preference", name or f"labels-{campaign.name}"[:64], rule,
                       val_fraction, home, rounds=[{"round": c.round, "campaign": c.name, "id": c.id, "rows": n}
                                                   for c, _, n in per_round] if earlier_rounds else None)


def rounds_so_far(campaign: Campaign, home: Home) -> list[Campaign]:
    """The rounds of ``campaign``'s chain up to it, first to last."""
    from lab.label.rounds import chain_campaigns

    chain = chain_campaigns(campaign.id, home)
    return chain[:[c.id for c in chain].index(campaign.id) + 1]


def export_unpaired(campaign_id: str, *, name: str = "", min_votes: int = 1, min_agreement: float = 0.5,
                    val_fraction: float = 0.0, drop_unreliable: bool = False, weighted: bool = False,
                    min_margin: float = 0.0, home: Home | None = None):
    """Labels as an unpaired dataset version (prompt, completion, label), what KTO trains on, under the same rule as
    ``export_preferences`` (``Rule``); each row says whose label it is (``label_source``).

    - A thumbs campaign: each answer voted mostly 👍 is desirable, mostly 👎 undesirable.
    - A pairwise campaign: the winner of a pair is desirable and the loser undesirable; "both bad" gives both
      answers as undesirable. A tie gives nothing: it says the two answers are alike, not that either is good
      (two mediocre answers tie as often as two good ones), so neither label would be earned.
    Pairs left out (ties, no majority, below agreement or margin) are counted in the card with the rows of each
    label."""
    from lab.data.canonical import Row

    home = home or lab_home()
    campaign = get_campaign(campaign_id, home)
    rule = Rule(min_votes, min_agreement, drop_unreliable, weighted, min_margin)
    decisions = decide_pairs(campaign, rule, home)
    store = Store(home)
    counts = Counter()
    rows: list[Row] = []

    def add(pair: Decided, prompt: list[dict[str, str]], text: str, label: bool) -> None:
        rows.append(Row({"prompt": prompt, "completion": [{"role": "assistant", "content": text}], "label": label,
                         "label_source": pair.label_source}, line=pair.pair_id, source=f"campaign:{campaign.id}"))
        counts["desirable rows" if label else "undesirable rows"] += 1

    for pair in decisions.pairs:
        if pair.why or pair.outcome == "tie":
            counts[pair.why or "tie"] += 1
            continue
        prompt, texts = prompt_and_texts(store, campaign.id, pair.prompt_idx)
        if pair.outcome in ("up", "down"):
            add(pair, prompt, texts[pair.sources[0]], pair.outcome == "up")
        elif pair.outcome == "both_bad":
            counts["both bad"] += 1
            add(pair, prompt, texts[pair.sources[0]], False)
            add(pair, prompt, texts[pair.sources[1]], False)
        else:
            add(pair, prompt, texts[pair.outcome], True)
            add(pair, prompt, texts[pair.loser()], False)
    if not rows:
        raise LabError(f"Campaign {campaign.name} has no {'answer' if campaign.thumbs else 'pair'} with a clear vote "
                       f"yet ({dict(counts) or 'no votes'}); collect more votes or lower min_agreement.")
    return save_export(campaign, decisions, rows, counts, "unpaired", name or f"unpaired-{campaign.name}"[:64], rule,
                       val_fraction, home)


def latest_export(campaign_id: str, home: Home | None = None) -> str | None:
    """The ref of the campaign's newest export, if it has one (what "Train DPO/KTO on this" trains on once the page
    that exported it is gone)."""
    from lab.data.versions import list_versions

    return next((v.ref for v in list_versions(home or lab_home())
                 if (v.card or {}).get("source") == f"campaign:{campaign_id}"), None)


def export_kinds(campaign: Campaign) -> tuple[str, ...]:
    """The dataset kinds a campaign's votes export as, the usual one first."""
    return ("unpaired",) if campaign.thumbs else ("preference", "unpaired")


def export_votes(campaign_id: str, kind: str = "", **options: Any):
    """Export as ``kind`` (preference or unpaired; "" = the campaign's usual: pairs for a pairwise campaign,
    unpaired for a thumbs one); ``options`` are the exports' (``min_votes``, ``min_agreement``, ``drop_unreliable``,
    ``weighted``, ``min_margin``, ``name``, ``val_fraction``, ``home``; ``earlier_rounds`` for preferences)."""
    campaign = get_campaign(campaign_id, options.get("home"))
    kinds = export_kinds(campaign)
    kind = kind or kinds[0]
    if kind not in kinds:
        raise LabError(f"Campaign {campaign.name} ({campaign.mode}) exports as {' or '.join(kinds)}, not {kind}.")
    if kind != "preference" and options.pop("earlier_rounds", False):
        raise LabError("Earlier rounds are exported with preference pairs only (a round after the first is "
                       "pairwise); export --kind preference, or leave the earlier rounds out.")
    export = export_preferences if kind == "preference" else export_unpaired
    return export(campaign.id, **options)


def rule_text(rule: Rule, decisions: Decisions, sources: Counter) -> str:
    """The rule an export followed, in a sentence for its card."""
    vote = "weighted by each labeler's reliability score" if rule.weighted else "one vote each"
    share = "weight" if rule.weighted else "votes"
    majority = (f"people's majority per pair ({vote}; the winner needs {rule.min_votes}+ votes and "
                f"{rule.min_agreement:.0%} of the pair's {share})")
    parts = [majority]
    if rule.drop_unreliable:
        parts.append("votes of labelers flagged unreliable left out: " + (", ".join(decisions.dropped) or "none was"))
    if rule.min_margin:
        parts.append(f"pairs whose winning votes' mean strength is below {rule.min_margin:g} left out")
    if sources["adjudicator"]:
        parts.append(f"an admin's decision replaces the votes on {sources['adjudicator']} rows")
    if sources["judge"]:
        parts.append(f"the judge {decisions.judge} labels {sources['judge']} rows of pairs nobody voted on")
    return "; ".join(parts) + "."


def save_export(campaign: Campaign, decisions: Decisions, rows: list[Any], counts: Counter, kind: str, name: str,
                rule: Rule, val_fraction: float, home: Home, rounds: list[dict[str, Any]] | None = None):
    """Save an export's rows as a dataset version whose card names the campaign, the labelers whose votes counted
    (and those dropped), the rule, the counts, the rows per label source, each exported pair's label source
    and margin (``labels``, by pair id: the row's ``line``) and, for an export with its earlier rounds, the rows
    of each round (``rounds``)."""
    from dataclasses import asdict

    from lab.data.quality import split
    from lab.data.versions import save_version

    train, validation = split(rows, val_fraction, seed=0) if val_fraction else (rows, [])
    sources = Counter(row.data["label_source"] for row in rows)
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    labels = {str(row.line): {"label_source": row.data["label_source"], **({"margin": row.data["margin"]}
                                                                          if "margin" in row.data else {})}
              for row in rows}
    card = {"source": f"campaign:{campaign.id}", "campaign": campaign.name, "mode": campaign.mode,
            "labelers": decisions.labelers, "dropped_labelers": decisions.dropped,
            "sources": [s["name"] for s in campaign.sources if s["name"] not in GOLD_SOURCES],
            "rule": {**asdict(rule), "text": rule_text(rule, decisions, sources)}, "counts": dict(counts),
            "label_sources": {s: sources[s] for s in LABEL_SOURCES}, "labels": labels,
            "steps": [{"step": "majority vote", "before": len(decisions.pairs), "after": len(rows),
                       "removed": len(decisions.pairs) - len({row.line for row in rows}), "detail": detail}]}
    if rounds:
        card["rounds"] = rounds
        card["rule"]["text"] += " Rounds: " + ", ".join(f"{r['campaign']} {r['rows']} rows" for r in rounds) + "."
    return save_version(name, kind, "campaign", train, validation, card, home=home)
