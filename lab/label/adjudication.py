"""Pairs labelers disagree on: an extra vote, then an admin's decision.

When a pair's votes are all in and they are split (not one outcome), the pair wants the campaign's
``extra_votes`` more, once (``serving.count_remaining`` keeps ``votes_wanted`` in step). A pair whose votes,
extra ones included, are all in and still have no majority (the top outcome is tied, as the exports read it)
waits here for an admin. The decision is kept apart from the votes (table ``adjudications``): counts,
agreement and leaderboards read people's votes only; exports use the decision instead of the split majority.
Gold pairs (their answer is known) and thumbs items are never adjudicated.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

from lab.errors import LabError
from lab.home import Home, lab_home
from lab.store import Store

OUTCOME = "COALESCE(v.winner, v.choice)"  # a vote's outcome independent of sides: a source, tie or both_bad


def split(outcomes: list[str]) -> bool:
    """Whether the votes disagree (more than one outcome)."""
    return len(set(outcomes)) > 1


def no_majority(outcomes: list[str]) -> bool:
    """Whether the most common outcome is tied with another (exports then have no label for the pair)."""
    ranked = Counter(outcomes).most_common(2)
    return len(ranked) == 2 and ranked[0][1] == ranked[1][1]


def wanted(outcomes: list[str], votes_per_pair: int, extra_votes: int) -> int:
    """The votes a pair wants: its campaign's votes_per_pair, plus the extra votes once those are in and split."""
    disputed = len(outcomes) >= votes_per_pair and split(outcomes)
    return votes_per_pair + (extra_votes if disputed else 0)


def pending(campaign_id: str, *, home: Home | None = None) -> list[dict[str, Any]]:
    """Pairs whose wanted votes (extra ones included) are in and still have no majority, with no decision yet:
    ``{"pair_id", "prompt" (messages), "answers" {source: text}, "votes" [{"labeler", "outcome", "strength"}]}``,
    oldest pair first."""
    store = Store(home or lab_home())
    rows = store.query(
        f"""SELECT p.id AS pair_id, p.prompt_idx, p.source_1, p.source_2, v.labeler, {OUTCOME} AS outcome, v.strength
            FROM pairs p JOIN live_votes v ON v.pair_id = p.id
            WHERE p.campaign_id = ? AND p.gold IS NULL AND p.source_1 != p.source_2
              AND NOT EXISTS (SELECT 1 FROM adjudications a WHERE a.pair_id = p.id)
              AND (SELECT COUNT(*) FROM live_votes w WHERE w.pair_id = p.id) >= p.votes_wanted
            ORDER BY p.id, v.id""", (campaign_id,))
    by_pair: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_pair[row["pair_id"]].append(row)
    out = []
    for pair_id, votes in by_pair.items():
        if not no_majority([v["outcome"] for v in votes]):
            continue
        first = votes[0]
        out.append({"pair_id": pair_id, "prompt": prompt(store, campaign_id, first["prompt_idx"]),
                    "answers": answers(store, campaign_id, first["prompt_idx"], (first["source_1"], first["source_2"])),
                    "votes": [{"labeler": v["labeler"], "outcome": v["outcome"], "strength": v["strength"]}
                              for v in votes]})
    return out


def prompt(store: Store, campaign_id: str, prompt_idx: int) -> list[dict[str, str]]:
    return json.loads(store.query("SELECT prompt FROM campaign_prompts WHERE campaign_id = ? AND idx = ?",
                                  (campaign_id, prompt_idx))[0]["prompt"])


def answers(store: Store, campaign_id: str, prompt_idx: int, sources: tuple[str, str]) -> dict[str, str]:
    texts = {r["source"]: r["text"] for r in store.query(
        "SELECT source, text FROM responses WHERE campaign_id = ? AND prompt_idx = ?", (campaign_id, prompt_idx))}
    return {source: texts[source] for source in sources}


def decide(pair_id: int, outcome: str, admin: str, *, note: str = "", home: Home | None = None) -> None:
    """Record an admin's decision on a pair (a source of that pair, tie or both_bad), replacing an earlier one."""
    from lab.train.runner import now

    if not (admin or "").strip():
        raise LabError("A decision needs the admin's name (--admin).")
    with Store(home or lab_home()).write() as conn:
        pair = conn.execute("SELECT campaign_id, source_1, source_2, gold FROM pairs WHERE id = ?",
                            (pair_id,)).fetchone()
        if pair is None:
            raise LabError(f"No pair {pair_id}; list the pairs waiting for a decision with: python -m lab label "
                           "adjudicate CAMPAIGN")
        if pair["gold"] is not None or pair["source_1"] == pair["source_2"]:
            raise LabError(f"Pair {pair_id} is a gold pair or a thumbs item: its outcome is not decided by an admin.")
        allowed = (pair["source_1"], pair["source_2"], "tie", "both_bad")
        if outcome not in allowed:
            raise LabError(f"Pair {pair_id}'s outcome is one of {', '.join(allowed)}, not '{outcome}'.")
        conn.execute("INSERT OR REPLACE INTO adjudications (pair_id, campaign_id, outcome, admin, note, created_at) "
                     "VALUES (?, ?, ?, ?, ?, ?)",
                     (pair_id, pair["campaign_id"], outcome, admin.strip(), (note or "").strip()[:2000], now()))


def campaign_of(pair_id: int, *, home: Home | None = None) -> str | None:
    """The campaign a pair belongs to (None for no such pair)."""
    rows = Store(home or lab_home()).query("SELECT campaign_id FROM pairs WHERE id = ?", (pair_id,))
    return rows[0]["campaign_id"] if rows else None


def decisions(campaign_id: str, *, home: Home | None = None) -> dict[int, str]:
    """pair_id → the admin's decided outcome, for every decided pair of the campaign."""
    rows = Store(home or lab_home()).query("SELECT pair_id, outcome FROM adjudications WHERE campaign_id = ?",
                                           (campaign_id,))
    return {r["pair_id"]: r["outcome"] for r in rows}
