"""Serving pairs to labelers and recording their votes, safely under concurrency.

A served pair is a *lease*: a random token bound to one labeler and one pair, with the side each
source is shown on drawn at random. The labeler's page holds only the token, so which model wrote
which answer never leaves the server. Every serve, vote and undo is one ``BEGIN IMMEDIATE`` transaction:
two labelers voting at the same moment are serialised by SQLite, a labeler's vote on a pair counts
once, and a pair stops being served once its votes plus the leases out on it reach the votes wanted.
A reload shows the same leased pair again; an expired lease frees the pair for someone else, but a late
vote on it is still counted (a vote is never lost).

The votes table is a log: nothing in it is updated or deleted. Undoing a vote appends a retraction
(``retractions``) and serves the pair again; the view ``live_votes`` (votes not retracted) is what every
count, statistic and export reads. A skipped pair returns to the labeler after every other pair.

A thumbs campaign's item is a pair of a source with itself (``lab.label.campaigns``): it is served with one answer
(``Served.right`` empty) and takes the votes up or down instead of a, b, tie or both_bad.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from lab.config import aspect_names
from lab.errors import LabError
from lab.home import Home, lab_home
from lab.label import adjudication
from lab.store import Store

LEASE_S = 600.0
# Undos a labeler may make in any window: a misclick is corrected now and then, but every retracted vote stays in
# the log (comment and all), so a vote/undo loop would otherwise grow the store without bound (18 rows a second).
UNDO_LIMIT, UNDO_WINDOW_S = 20, 300
CHOICES = ("a", "b", "tie", "both_bad")  # a pair: the left answer is better, the right, a tie, both bad
THUMBS = ("up", "down")  # one answer (a thumbs campaign): good or not


@dataclass
class Served:
    token: str
    campaign_id: str
    prompt: list[dict[str, str]]
    left: str  # response texts only: the page never learns which source wrote which
    right: str  # "" for a thumbs item (one answer); a model's answer may be "" too, so ask ``thumbs``
    thumbs: bool = False  # one answer to rate up or down


@dataclass
class Progress:
    mine: int  # votes this labeler gave in the campaign
    available: int  # pairs this labeler could still be served
    votes: int  # all votes in the campaign (gold included)
    wanted: int  # votes wanted in all


# The pairs a labeler may take now: ready, still wanting votes, not voted on by them, and not all leased out.
ELIGIBLE = """p.campaign_id = :campaign AND p.remaining > 0 AND p.ready = 1
    AND NOT EXISTS (SELECT 1 FROM live_votes v WHERE v.pair_id = p.id AND v.labeler = :labeler)
    AND (SELECT COUNT(*) FROM leases l WHERE l.pair_id = p.id AND l.expires_at > :now) < p.remaining"""


def next_pair(campaign_id: str, labeler: str, *, home: Home | None = None) -> Served | None:
    """The pair this labeler should see now (their open lease if any), or None when nothing is left for them."""
    store = Store(home or lab_home())
    now = time.time()
    with store.write() as conn:
        if not serving_campaign(conn, campaign_id):
            return None
        lease = conn.execute("SELECT l.token, l.pair_id, l.left_source FROM leases l JOIN pairs p ON p.id = l.pair_id "
                             "WHERE l.labeler = ? AND p.campaign_id = ? AND l.expires_at > ?",
                             (labeler, campaign_id, now)).fetchone()
        if lease is None:
            pair = choose_pair(conn, campaign_id, labeler, now)
            if pair is None:
                return None
            lease = new_lease(conn, pair["id"], labeler, secrets.choice([pair["source_1"], pair["source_2"]]), now)
        return served(conn, campaign_id, lease)


def choose_pair(conn: Any, campaign_id: str, labeler: str, now: float) -> Any | None:
    """The pair to lease to this labeler under the campaign's serving rule (``CampaignConfig.serving``)."""
    config = json.loads(conn.execute("SELECT config FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()["config"])
    params = {"campaign": campaign_id, "labeler": labeler, "now": now}
    if config.get("serving") == "active":
        candidates = conn.execute(
            f"""SELECT p.id, p.source_1, p.source_2, p.gold, p.remaining, p.rank,
                       EXISTS (SELECT 1 FROM skips s WHERE s.pair_id = p.id AND s.labeler = :labeler) AS skipped,
                       (SELECT COUNT(DISTINCT COALESCE(v.winner, v.choice)) FROM live_votes v
                        WHERE v.pair_id = p.id) > 1 AS split
                FROM pairs p WHERE {ELIGIBLE}""", params).fetchall()
        from lab.label import active  # numpy, for the fit: only campaigns served actively load it

        return active.pick(conn, campaign_id, candidates, config.get("gold_share", 0.0))
    # Balanced: walk the index in order (pairs this labeler skipped last, then fewest votes still wanted first, then
    # the campaign's random rank) and stop at the first pair this labeler may take: finishing pairs early gives
    # agreement numbers soon, and a skipped pair comes back once nothing else is left (with two labelers and two
    # votes a pair, a pair skipped for good would never be finished).
    return conn.execute(
        f"""SELECT p.id, p.source_1, p.source_2 FROM pairs p WHERE {ELIGIBLE}
            ORDER BY EXISTS (SELECT 1 FROM skips s WHERE s.pair_id = p.id AND s.labeler = :labeler), p.remaining,
                     p.rank
            LIMIT 1""", params).fetchone()


def serving_campaign(conn: Any, campaign_id: str) -> bool:
    """Whether the campaign serves pairs now (generating or open); an unknown campaign is an error."""
    row = conn.execute("SELECT status FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
    if row is None:
        raise LabError(f"No campaign '{campaign_id}'.")
    return row["status"] in ("generating", "open")


def new_lease(conn: Any, pair_id: int, labeler: str, left: str, now: float) -> dict[str, Any]:
    token = secrets.token_urlsafe(18)
    conn.execute("DELETE FROM leases WHERE pair_id = ? AND labeler = ?", (pair_id, labeler))
    conn.execute("INSERT INTO leases VALUES (?, ?, ?, ?, ?, ?)", (token, pair_id, labeler, left, now, now + LEASE_S))
    return {"token": token, "pair_id": pair_id, "left_source": left}


def served(conn: Any, campaign_id: str, lease: Any) -> Served:
    pair = conn.execute("SELECT prompt_idx, source_1, source_2 FROM pairs WHERE id = ?", (lease["pair_id"],)).fetchone()
    right_source = pair["source_2"] if lease["left_source"] == pair["source_1"] else pair["source_1"]
    prompt = conn.execute("SELECT prompt FROM campaign_prompts WHERE campaign_id = ? AND idx = ?",
                          (campaign_id, pair["prompt_idx"])).fetchone()["prompt"]
    texts = {r["source"]: r["text"] for r in conn.execute(
        "SELECT source, text FROM responses WHERE campaign_id = ? AND prompt_idx = ?", (campaign_id, pair["prompt_idx"]))}
    if pair["source_1"] == pair["source_2"]:  # a thumbs item
        return Served(lease["token"], campaign_id, json.loads(prompt), texts[lease["left_source"]], "", thumbs=True)
    return Served(lease["token"], campaign_id, json.loads(prompt), texts[lease["left_source"]], texts[right_source])


def vote(token: str, labeler: str, choice: str, *, strength: int | None = None,
         aspects: dict[str, str] | None = None, comment: str = "", home: Home | None = None) -> bool:
    """Record ``choice`` (a = the left answer is better, b = the right, tie, both_bad; up or down for a thumbs
    item) for the leased pair. Returns False when the lease is gone (a double click after a counted vote, or a
    token that was skipped, undone or never served); raises for a lease of another labeler's and for a choice the
    item does not take.

    ``strength`` grades a decided vote (2 = much better, 1 = better; a graded campaign's a/b votes default to 1);
    ``aspects`` gives the campaign's aspects by side ({aspect: a | b | tie}), stored by source as the winner is."""
    from lab.train.runner import now as timestamp

    if choice not in CHOICES + THUMBS:
        raise LabError(f"A vote is one of {', '.join(CHOICES + THUMBS)}, not '{choice}'.")
    if strength is not None and (choice not in ("a", "b") or strength not in (1, 2)):
        raise LabError(f"A vote's strength is 1 (better) or 2 (much better), on an a or b vote; got {strength} on "
                       f"'{choice}'.")
    store = Store(home or lab_home())
    with store.write() as conn:
        lease = conn.execute("SELECT l.*, p.campaign_id, p.source_1, p.source_2 FROM leases l JOIN pairs p ON "
                             "p.id = l.pair_id WHERE l.token = ?", (token,)).fetchone()
        if lease is None:
            return False  # voted already (or skipped): the vote that used the token is the one kept
        if lease["labeler"] != labeler:
            raise LabError("This pair was served to another labeler; reload to get your own.")
        if not serving_campaign(conn, lease["campaign_id"]):  # closed while the pair was on their screen
            raise LabError("This campaign has been closed: your vote was not counted.")
        allowed = THUMBS if lease["source_1"] == lease["source_2"] else CHOICES
        if choice not in allowed:
            what = "answer takes a vote up or down" if allowed == THUMBS else "pair takes a, b, tie or both_bad"
            raise LabError(f"This {what}, not '{choice}'.")
        config = json.loads(conn.execute("SELECT config FROM campaigns WHERE id = ?",
                                         (lease["campaign_id"],)).fetchone()["config"])
        left = lease["left_source"]
        right = lease["source_2"] if left == lease["source_1"] else lease["source_1"]
        by_source = sourced_aspects(aspects or {}, config, left, right)
        if config.get("graded") and choice in ("a", "b") and strength is None:
            strength = 1
        conn.execute("DELETE FROM leases WHERE token = ?", (token,))
        if conn.execute("SELECT 1 FROM live_votes WHERE pair_id = ? AND labeler = ?",
                        (lease["pair_id"], labeler)).fetchone():
            return False  # one counted vote per pair and labeler (the transaction holds the write lock)
        conn.execute(
            "INSERT INTO votes (pair_id, campaign_id, labeler, choice, winner, left_source, comment, seconds, "
            "created_at, strength, aspects) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (lease["pair_id"], lease["campaign_id"], labeler, choice, {"a": left, "b": right}.get(choice), left,
             (comment or "").strip()[:2000], round(time.time() - lease["served_at"], 3), timestamp(), strength,
             json.dumps(by_source)))
        count_remaining(conn, lease["pair_id"])
    return True


def sourced_aspects(aspects: dict[str, str], config: dict[str, Any], left: str, right: str) -> dict[str, str]:
    """Per-aspect votes by side ({aspect: a | b | tie}) as {aspect: winning source | tie}, checked against the
    campaign's aspects (an aspect left out is simply not voted on)."""
    named = aspect_names(config.get("aspects", ""))
    unknown = sorted(set(aspects) - set(named))
    if unknown:
        raise LabError(f"This campaign's aspects are {', '.join(named) or 'none'}; not {', '.join(unknown)}.")
    out = {}
    for aspect, side in aspects.items():
        if side not in ("a", "b", "tie"):
            raise LabError(f"Aspect '{aspect}' takes a, b or tie, not '{side}'.")
        out[aspect] = {"a": left, "b": right}.get(side, "tie")
    return out


def count_remaining(conn: Any, pair_id: int) -> None:
    """The pair's votes wanted and still wanted, from its live votes (``remaining`` is the serving index, not the
    record). Under active serving, split votes on a compared pair want the campaign's extra votes, once
    (``lab.label.adjudication``); the campaign's total moves with the pair's, so its progress and counts agree.
    Balanced serving keeps the votes wanted fixed, as before extra votes existed: its split pairs go straight to
    adjudication."""
    pair = conn.execute("SELECT p.campaign_id, p.votes_wanted, p.gold, p.source_1, p.source_2, c.config FROM pairs p "
                        "JOIN campaigns c ON c.id = p.campaign_id WHERE p.id = ?", (pair_id,)).fetchone()
    outcomes = [r["outcome"] for r in conn.execute(
        "SELECT COALESCE(winner, choice) AS outcome FROM live_votes WHERE pair_id = ?", (pair_id,))]
    config = json.loads(pair["config"])
    compared = pair["gold"] is None and pair["source_1"] != pair["source_2"]
    extra = config.get("extra_votes", 0) if compared and config.get("serving") == "active" else 0
    votes_wanted = adjudication.wanted(outcomes, config.get("votes_per_pair", pair["votes_wanted"]), extra)
    if votes_wanted != pair["votes_wanted"]:
        conn.execute("UPDATE campaigns SET votes_wanted = votes_wanted + ? WHERE id = ?",
                     (votes_wanted - pair["votes_wanted"], pair["campaign_id"]))
    conn.execute("UPDATE pairs SET votes_wanted = ?, remaining = ? WHERE id = ?",
                 (votes_wanted, max(votes_wanted - len(outcomes), 0), pair_id))


def undo(campaign_id: str, labeler: str, *, home: Home | None = None) -> Served:
    """Retract this labeler's last counted vote in the campaign and serve that pair again, sides as they were.
    The vote stays in the log with a retraction appended; the pair they were looking at goes back."""
    from datetime import datetime, timedelta, timezone

    from lab.train.runner import now as timestamp

    store = Store(home or lab_home())
    now = time.time()
    since = (datetime.now(timezone.utc) - timedelta(seconds=UNDO_WINDOW_S)).isoformat(timespec="seconds")
    with store.write() as conn:
        if not serving_campaign(conn, campaign_id):
            raise LabError("This campaign is closed: its votes stand and can no longer be undone.")
        recent = conn.execute("SELECT COUNT(*) FROM retractions WHERE labeler = ? AND created_at >= ?",
                              (labeler, since)).fetchone()[0]
        if recent >= UNDO_LIMIT:
            raise LabError(f"You have undone {recent} votes in the last {UNDO_WINDOW_S // 60} minutes, the most "
                           "allowed; wait a few minutes to undo again. Your votes so far are kept.")
        last = conn.execute("SELECT id, pair_id, left_source FROM live_votes WHERE campaign_id = ? AND labeler = ? "
                            "ORDER BY id DESC LIMIT 1", (campaign_id, labeler)).fetchone()
        if last is None:
            raise LabError("Nothing to undo: you have no vote in this campaign.")
        conn.execute("INSERT INTO retractions (vote_id, labeler, created_at) VALUES (?, ?, ?)",
                     (last["id"], labeler, timestamp()))
        count_remaining(conn, last["pair_id"])
        conn.execute("DELETE FROM leases WHERE labeler = ? AND pair_id IN (SELECT id FROM pairs WHERE campaign_id = ?)",
                     (labeler, campaign_id))
        return served(conn, campaign_id, new_lease(conn, last["pair_id"], labeler, last["left_source"], now))


def skip(token: str, labeler: str, *, home: Home | None = None) -> None:
    """Not this pair now, for this labeler: it goes back to the others, and to them after every other pair."""
    store = Store(home or lab_home())
    with store.write() as conn:
        lease = conn.execute("SELECT pair_id, labeler FROM leases WHERE token = ?", (token,)).fetchone()
        if lease is None or lease["labeler"] != labeler:
            return
        conn.execute("INSERT OR IGNORE INTO skips VALUES (?, ?)", (lease["pair_id"], labeler))
        conn.execute("DELETE FROM leases WHERE token = ?", (token,))


def progress(campaign_id: str, labeler: str, *, home: Home | None = None) -> Progress:
    row = Store(home or lab_home()).query(
        """SELECT (SELECT COUNT(*) FROM live_votes WHERE campaign_id = :c AND labeler = :l) AS mine,
                  (SELECT COUNT(*) FROM pairs p WHERE p.campaign_id = :c AND p.remaining > 0 AND p.ready = 1
                     AND NOT EXISTS (SELECT 1 FROM live_votes v WHERE v.pair_id = p.id AND v.labeler = :l))
                  AS available,
                  (SELECT COUNT(*) FROM live_votes WHERE campaign_id = :c) AS votes,
                  (SELECT votes_wanted FROM campaigns WHERE id = :c) AS wanted""",
        {"c": campaign_id, "l": labeler})[0]
    return Progress(**row)
