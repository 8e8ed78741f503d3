"""An LLM judge pre-labels a pairwise campaign, and is measured against people before it may label for them.

The judge is Eval's (``lab.eval.judges``: a local model scored on its next-token verdict, or ``endpoint`` /
``endpoint:MODEL`` for an OpenAI-compatible API). It sees every ready pair twice, each answer first once, as Eval's
pairwise judge does; a pair's label (``judge_labels``) is the winning source, or ``tie`` when the judge said tie in
both orders or when the two orders disagree (``consistent`` = 0). Labels are not votes: counts, agreement and
leaderboards read people's votes only.

The judge runs in its own process (``lab.label.prelabel_worker``), never in the web server's; its progress and
outcome are a small JSON file beside its log (``LAB_HOME/campaigns/<id>-judge.json`` and ``-judge.log``), read by
``state``.

Its agreement with people is Cohen's κ between its label and people's majority on the pairs both labelled (people's
"both bad" reads as the judge's tie: neither answer wins). Once κ reaches the campaign's ``judge_fills_at``
(0 = never) on at least ``MIN_SHARED`` such pairs, ``fills`` gives its labels for the pairs no person has voted on,
for exports to use (marked as the judge's).
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.home import Home, lab_home
from lab.label.campaigns import Campaign, get_campaign
from lab.store import Store, dumps

# κ on a handful of pairs is noise: a judge that agreed on 3 pairs must not label hundreds.
MIN_SHARED = 10
RUNNING, DONE, FAILED = "running", "done", "failed"


# --------------------------------------------------------------------------- files


def log_path(campaign_id: str, home: Home) -> Path:
    return home.root / "campaigns" / f"{campaign_id}-judge.log"


def state_path(campaign_id: str, home: Home) -> Path:
    return home.root / "campaigns" / f"{campaign_id}-judge.json"


def write_state(campaign_id: str, home: Home, **state: Any) -> None:
    """Replace the pre-labeling state (whole or absent for a reader: written aside, then renamed)."""
    path = state_path(campaign_id, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(f".{os.getpid()}.tmp")
    staging.write_text(json.dumps(state))
    os.replace(staging, path)


def state(campaign_id: str, *, home: Home | None = None) -> dict[str, Any]:
    """Where pre-labeling stands: ``{"status": none|running|done|failed, "judge", "done", "total", "error",
    "log"}``. A run whose process is gone without saying how it ended is failed."""
    from lab.processes import alive

    home = home or lab_home()
    path = state_path(campaign_id, home)
    found: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"status": "none"}
    if found["status"] == RUNNING and found.get("pid") and not alive(found["pid"]):
        found = {**found, "status": FAILED, "error": "The pre-labeling process died; start it again (the labels so "
                 "far are kept)."}
    return {"judge": "", "done": 0, "total": 0, "error": None, **found, "log": str(log_path(campaign_id, home))}


# --------------------------------------------------------------------------- start


def judge_of(campaign: Campaign, judge: str = "") -> str:
    """The judge asked for, else the campaign's; a campaign without one needs one named."""
    chosen = (judge or campaign.config.get("judge", "")).strip()
    if not chosen:
        raise LabError(f"Campaign {campaign.name} names no judge; give one (--judge tiny, run:<id>, a path, a hub id "
                       "or endpoint[:MODEL]).")
    return chosen


def open_judge(judge: str, home: Home) -> Any:
    """Eval's judge for a campaign's setting: ``endpoint`` or ``endpoint:MODEL`` is the API (the model name
    defaults to Eval's), anything else a local model. Fails here for a model that does not exist or an endpoint
    that is not configured."""
    from lab.eval import judges
    from lab.eval.config import ENDPOINT, JudgeConfig

    kind, _, model = judge.partition(":")
    if kind == ENDPOINT:
        cfg = JudgeConfig(judge=ENDPOINT, endpoint_model=model or JudgeConfig().endpoint_model)
    else:
        cfg = JudgeConfig(judge=judge)
    cfg.validate()
    return judges.open_judge(cfg, home)


def start(campaign_id: str, *, judge: str = "", home: Home | None = None) -> None:
    """Pre-label every ready pair of a pairwise campaign in a background process (``lab.label.prelabel_worker``).
    A judge that cannot be opened fails here, and the failure is kept in the state for the admin to see."""
    from lab.processes import alive, launch_worker

    home = home or lab_home()
    campaign = get_campaign(campaign_id, home)
    if campaign.thumbs:
        raise LabError(f"Campaign {campaign.name} rates one answer at a time (thumbs); the judge compares two "
                       "answers, so it pre-labels pairwise campaigns only.")
    chosen = judge_of(campaign, judge)
    now = state(campaign.id, home=home)
    if now["status"] == RUNNING and (not now.get("pid") or alive(now["pid"])):
        raise LabError(f"Campaign {campaign.name} is being pre-labeled already (judge {now['judge']}, "
                       f"{now['done']}/{now['total']}); wait for it to finish.")
    try:
        open_judge(chosen, home)  # a missing model or an unset endpoint fails now (a local model loads later)
    except LabError as err:
        write_state(campaign.id, home, status=FAILED, judge=chosen, error=str(err))
        raise
    write_state(campaign.id, home, status=RUNNING, judge=chosen, pid=None, done=0, total=0, error=None)
    try:
        pid = launch_worker("lab.label.prelabel_worker", campaign.id, log_path(campaign.id, home), home)
    except OSError as err:
        write_state(campaign.id, home, status=FAILED, judge=chosen, error=f"Could not start the judge: {err}")
        raise LabError(f"Could not start the pre-labeling process: {err}") from None
    # The pid, so that a process that dies before it writes its own state is seen as failed; unless the process
    # has written its state already (with the same pid, and its progress, which this must not undo).
    if state(campaign.id, home=home).get("pid") is None:
        write_state(campaign.id, home, status=RUNNING, judge=chosen, pid=pid, done=0, total=0, error=None)


# --------------------------------------------------------------------------- labels and people


def labels(campaign_id: str, *, home: Home | None = None) -> dict[int, dict[str, Any]]:
    """The judge's labels by pair id: ``{"judge", "outcome", "consistent"}``."""
    rows = Store(home or lab_home()).query(
        "SELECT pair_id, judge, outcome, consistent FROM judge_labels WHERE campaign_id = ?", (campaign_id,))
    return {r["pair_id"]: {"judge": r["judge"], "outcome": r["outcome"], "consistent": bool(r["consistent"])}
            for r in rows}


def people(campaign_id: str, *, home: Home | None = None) -> tuple[dict[int, str], set[int]]:
    """(people's majority outcome per pair with a clear one, in the judge's terms: a source or 'tie'; every pair
    with a live vote). Gold pairs are left out: the judge does not label them."""
    from lab.label.results import campaign_votes

    by_pair: dict[int, Counter] = defaultdict(Counter)
    for vote in campaign_votes(campaign_id, home):
        if vote["gold"] is None:
            by_pair[vote["pair_id"]]["tie" if vote["outcome"] == "both_bad" else vote["outcome"]] += 1
    majority = {}
    for pair_id, counts in by_pair.items():
        (top, n), *rest = counts.most_common()
        if not rest or rest[0][1] < n:
            majority[pair_id] = top
    return majority, set(by_pair)


def agreement(campaign_id: str, *, home: Home | None = None) -> dict[str, Any]:
    """The judge against people: Cohen's κ and accuracy (share of equal outcomes) on the pairs both labelled,
    the judge's position consistency (share of its labels where both orders agreed), and whether it may fill
    the pairs people have not reached now (``fills``)."""
    from lab.label import stats

    home = home or lab_home()
    campaign = get_campaign(campaign_id, home)
    judged = labels(campaign.id, home=home)
    majority, _ = people(campaign.id, home=home)
    shared = sorted(set(judged) & set(majority))
    judge_says = [judged[p]["outcome"] for p in shared]
    people_say = [majority[p] for p in shared]
    kappa = stats.cohen_kappa(judge_says, people_say)
    threshold = float(campaign.config.get("judge_fills_at", 0.0) or 0.0)
    names = Counter(label["judge"] for label in judged.values())
    return {
        "judge": names.most_common(1)[0][0] if names else campaign.config.get("judge", ""),
        "labelled": len(judged), "shared": len(shared),
        "kappa": round(kappa, 4) if kappa is not None else None,
        "accuracy": round(sum(j == p for j, p in zip(judge_says, people_say)) / len(shared), 4) if shared else None,
        "position_consistency": (round(sum(label["consistent"] for label in judged.values()) / len(judged), 4)
                                 if judged else None),
        "fills": may_fill(threshold, kappa, len(shared)),
        "fills_at": threshold, "min_shared": MIN_SHARED, "state": state(campaign.id, home=home)}


def set_fills_at(campaign_id: str, threshold: float, *, home: Home | None = None) -> dict[str, Any]:
    """The admin's threshold, set once the judge's agreement with people is known: the judge labels the pairs
    people have not reached while its κ is at least ``threshold`` (0 = never). Returns the agreement after."""
    home = home or lab_home()
    campaign = get_campaign(campaign_id, home)
    if not 0 <= threshold <= 1:
        raise LabError(f"The judge fills at a κ between 0 (never) and 1, not {threshold}.")
    if threshold and campaign.thumbs:
        raise LabError(f"Campaign {campaign.name} rates one answer at a time (thumbs); the judge compares pairs.")
    with Store(home).write() as conn:
        conn.execute("UPDATE campaigns SET config = ? WHERE id = ?",
                     (dumps({**campaign.config, "judge_fills_at": threshold}), campaign.id))
    return agreement(campaign.id, home=home)


def may_fill(threshold: float, kappa: float | None, shared: int) -> bool:
    return threshold > 0 and kappa is not None and shared >= MIN_SHARED and kappa >= threshold


def fills(campaign_id: str, *, home: Home | None = None) -> dict[int, str]:
    """pair id → the judge's outcome (a source or 'tie') for the pairs with no live human vote, when the campaign's
    ``judge_fills_at`` is above 0 and the judge's κ with people reaches it; else {}."""
    home = home or lab_home()
    campaign = get_campaign(campaign_id, home)
    if campaign.thumbs or not float(campaign.config.get("judge_fills_at", 0.0) or 0.0) > 0:
        return {}
    if not agreement(campaign.id, home=home)["fills"]:
        return {}
    _, voted = people(campaign.id, home=home)
    return {pair_id: label["outcome"] for pair_id, label in labels(campaign.id, home=home).items()
            if pair_id not in voted}
