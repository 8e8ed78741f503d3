"""The admin's flywheel panels through the real app with sign-in on, driven by ``gradio_client``: pairs labelers
split on are decided one after another, the reliability table flags a labeler who votes against the rule, "Next
round" creates round 2 (tiny against another model, on fresh prompts) whose chain view and report show both rounds,
and the judge pre-labels a campaign beside the plain and length-controlled leaderboards. Votes come from simulated
labelers (``lab.label.simulate``) through the real serving."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from gradio_client import Client

from lab.config import CampaignConfig
from lab.home import lab_home
from lab.label import adjudication, campaigns, simulate
from lab.store import Store
from tests.app_server import start_app_with_accounts

PASSWORDS = {"boss": "admin password", "ann": "ann password"}
ACCOUNTS = {"boss": ("admin", PASSWORDS["boss"]), "ann": ("labeler", PASSWORDS["ann"])}
# label_flywheel_view's outputs, by position (FlywheelUI.view_outputs; the client leaves the decision buttons out)
STATUS, CHAIN, WIN_RATES, WAITING, PAIR, PROMPT, LEFT, RIGHT, LEFT_VOTES, RIGHT_VOTES, OTHER_VOTES, NOTE = range(12)
LABELERS, KAPPA, SOURCE_PAIRS, JUDGE, STYLE, STYLE_NOTE = range(12, 18)


@pytest.fixture(scope="module")
def signed_app(tmp_path_factory):
    yield from start_app_with_accounts(tmp_path_factory.mktemp("flywheel") / "home", ACCOUNTS)


@pytest.fixture(scope="module")
def admin(signed_app) -> Client:
    return Client(signed_app.url, auth=("boss", PASSWORDS["boss"]), verbose=False)


def thanks(text: str) -> float:
    """The rule the simulated labelers follow: an answer that thanks is better."""
    return float("Thank you" in text)


def honest(name: str) -> simulate.Labeler:
    return simulate.Labeler(name, thanks, noise=0.0)


def contrary(name: str) -> simulate.Labeler:
    return simulate.Labeler(name, thanks, noise=0.0, flip=True)


def file_campaign(home, folder: Path, name: str, n: int, **settings) -> campaigns.Campaign:
    rows = [{"prompt": f"Question {i}: what is {i} + {i}?", "base": f"{2 * i}.",
             "tuned": f"{2 * i}. Thank you for asking!"} for i in range(n)]
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return campaigns.create_campaign(CampaignConfig(name=name, responses_file=str(path), sources="", **settings),
                                     home=home)


def table(value: dict) -> list[dict]:
    """A Dataframe output as rows of {header: cell}."""
    return [dict(zip(value["headers"], row)) for row in value["data"]]


def test_pairs_labelers_split_on_are_decided_one_after_another(signed_app, admin, tmp_path):
    home = lab_home(signed_app.home)
    campaign = file_campaign(home, tmp_path, "split", 3, votes_per_pair=2, extra_votes=0)
    assert simulate.label(campaign.id, [honest("ann"), contrary("bob")], home=home) == 6  # every pair 1-1

    view = admin.predict(campaign.id, "", api_name="/label_flywheel_view")
    assert "**3** pairs awaiting your decision" in view[WAITING], view[WAITING]
    shown = json.loads(view[PAIR])
    assert shown["campaign"] == campaign.id and set(shown["sides"]) == {"base", "tuned"}
    thanked = "A" if "Thank you" in view[LEFT] else "B"  # the sides as shown (blind: no source names)
    assert ("base" not in view[LEFT_VOTES] + view[RIGHT_VOTES]
            and "**1** vote for A" in view[LEFT_VOTES] and "**1** vote for B" in view[RIGHT_VOTES])
    assert "ann" in (view[LEFT_VOTES] if thanked == "A" else view[RIGHT_VOTES])
    again = admin.predict(campaign.id, view[PAIR], api_name="/label_flywheel_view")
    assert "**3** pairs awaiting" in again[WAITING]  # the pair on screen stays while it waits

    decided = {}
    for choice in ("a", "tie", "both_bad"):
        held = json.loads(view[PAIR])
        out = admin.predict(campaign.id, view[PAIR], f"note on {choice}", api_name=f"/label_adjudicate_{choice}")
        assert out[0].startswith("**✓ Decided"), out[0]
        decided[held["pair_id"]] = held["sides"][0] if choice == "a" else choice
        view = [None, None, None, *out[1:]]  # the decision's outputs are the pair's: status, then pair_outputs
    assert "No pair awaits a decision" in view[WAITING] and view[PAIR] == ""
    assert adjudication.decisions(campaign.id, home=home) == decided
    notes = Store(home).query("SELECT note, admin FROM adjudications WHERE campaign_id = ?", (campaign.id,))
    assert {(r["note"], r["admin"]) for r in notes} == {(f"note on {c}", "boss") for c in ("a", "tie", "both_bad")}
    refused = admin.predict(campaign.id, "", "", api_name="/label_adjudicate_b")[0]
    assert refused.startswith("**⚠ No pair is shown to decide on"), refused
    for junk in ("not json", '{"pair_id": 1}', "[1, 2]"):  # the hidden pair box, as a client may fill it
        refused = admin.predict(campaign.id, junk, "", api_name="/label_adjudicate_a")[0]
        assert "The pair on screen could not be read" in refused, refused


def test_the_reliability_table_flags_a_labeler_who_votes_against_the_rule(signed_app, admin, tmp_path):
    home = lab_home(signed_app.home)
    campaign = file_campaign(home, tmp_path, "trust", 12, votes_per_pair=3, extra_votes=0)  # 10+ checks to flag
    simulate.label(campaign.id, [honest("ann"), honest("bob"), contrary("cy")], home=home)
    view = admin.predict(campaign.id, "", api_name="/label_flywheel_view")
    rows = {r["labeler"]: r for r in table(view[LABELERS])}
    assert rows["cy"]["why"].startswith("⚠ flagged: agrees with the others on 0% of 12 shared pairs"), rows["cy"]
    assert not rows["ann"]["why"].startswith("⚠") and rows["ann"]["agrees with majority"] == "100%"
    assert next(iter(rows)) == "cy"  # flagged first
    assert table(view[SOURCE_PAIRS])[0]["sources"] in ("base vs tuned", "tuned vs base")
    assert "No pair awaits" in view[WAITING]  # 2-1 everywhere: a majority on every pair
    assert "window 1: 10 pairs, 30 votes" in view[KAPPA]["plot"]
    board = {r["source"]: r for r in table(view[STYLE])}
    assert board["tuned"]["rating"] > board["base"]["rating"]  # the plain fit credits tuned's longer answers ...
    assert board["tuned"]["length-controlled rating"] < board["tuned"]["rating"]  # ... style control less so
    assert view[STYLE_NOTE].startswith("**Length coefficient** +")
    status, agreement = admin.predict(campaign.id, 0.4, api_name="/label_judge_fills_at")
    assert "once its κ reaches 0.40" in status and "No pre-labels yet" in agreement
    assert campaigns.get_campaign(campaign.id, home).config["judge_fills_at"] == 0.4
    assert admin.predict(campaign.id, "", api_name="/label_flywheel_view")[-1] == 0.4  # the threshold, as set


def wait_open(home, campaign_id: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while (campaign := campaigns.get_campaign(campaign_id, home)).status == "generating":
        assert time.time() < deadline, "round 2's answers were not generated in time"
        time.sleep(1)
    assert campaign.status == "open", (campaign.status, campaign.error)


def test_next_round_shows_both_rounds_in_the_chain_and_the_report(signed_app, admin, tmp_path):
    from lab.models import tiny_model_path

    home = lab_home(signed_app.home)
    first = file_campaign(home, tmp_path, "chain", 4, votes_per_pair=1, max_new_tokens=8)  # round 2 inherits it
    simulate.label(first.id, [honest("ann")], home=home)
    other = str(tiny_model_path(home))  # the same weights by path: a second model, whose answers are the same
    status, selected = admin.predict(first.id, "tiny", other, "sample:sft", 2, api_name="/label_next_round")
    assert status.startswith("**✓ Created round 2: campaign chain-r2"), status
    second = selected["value"]
    assert second != first.id and second in [value for _, value in selected["choices"]]
    wait_open(home, second)
    assert simulate.label(second, [honest("ann")], home=home) == 2  # the same answers: ties

    view = admin.predict(second, "", api_name="/label_flywheel_view")
    rounds = table(view[CHAIN])
    assert [r["Round"] for r in rounds] == ["1", "2"] and rounds[1]["Campaign"] == "chain-r2", rounds
    assert rounds[1]["Challenger vs incumbent"].startswith("tiny vs ") and "%" in rounds[1]["Win rate [95% CI]"]
    assert rounds[1]["Win rate [95% CI]"].startswith("50% [") and "2 tied of 2" in rounds[1]["Win rate [95% CI]"]
    assert rounds[0]["Leader"] == "tuned"
    assert "round 2" in view[WIN_RATES]["plot"]  # the win-rate plot has round 2's point

    for fmt, opening in (("md", "# Preference rounds: chain"), ("html", "<!DOCTYPE html>")):
        status, report = admin.predict(first.id, fmt, api_name="/label_report")
        assert report["visible"] and report["value"].endswith(f"-{first.id}.{fmt}")  # shown, named by the campaign
        text = Path(report["value"]).read_text()
        assert status.startswith("**✓ Wrote the report") and text.startswith(opening) and "chain-r2" in text


def test_the_judge_pre_labels_and_its_agreement_with_people_shows(signed_app, admin, tmp_path):
    home = lab_home(signed_app.home)
    campaign = file_campaign(home, tmp_path, "judged", 3, votes_per_pair=1)
    simulate.label(campaign.id, [honest("ann")], home=home)
    status, _ = admin.predict(campaign.id, "tiny", api_name="/label_prelabel")
    assert status.startswith("**✓ Pre-labelling judged with tiny"), status
    deadline = time.time() + 180
    while "pre-labelled **3** pairs" not in (said := admin.predict(campaign.id, "", api_name="/label_flywheel_view")[
            JUDGE]):
        assert time.time() < deadline and "failed" not in said, said
        time.sleep(1)
    assert "3 shared with people" in said and "filling is off" in said, said
    unnamed = admin.predict(campaign.id, "", api_name="/label_prelabel")[0]  # empty: the campaign's, which has none
    assert unnamed.startswith("**⚠ Campaign judged names no judge"), unnamed


def test_the_fits_follow_each_vote_undo_and_decision_within_seconds(tmp_path):
    """The Rounds, reliability and leaderboard panels are drawn again when what labelers or admins did changed
    (``activity_mark``), at most every FITS_EVERY_S, and every FITS_AT_LEAST_S anyway."""
    from lab.label import serving
    from lab.ui.label_flywheel import FITS_AT_LEAST_S, FITS_EVERY_S, fits_due

    home = lab_home(tmp_path / "home")
    campaign = file_campaign(home, tmp_path, "marks", 3, votes_per_pair=2, extra_votes=0)
    marks = [campaigns.activity_mark(home)]
    simulate.label(campaign.id, [honest("ann")], home=home, max_votes=1)
    marks.append(campaigns.activity_mark(home))
    serving.undo(campaign.id, "ann", home=home)
    marks.append(campaigns.activity_mark(home))
    simulate.label(campaign.id, [honest("ann"), contrary("bob")], home=home)  # every pair 1-1: split
    marks.append(campaigns.activity_mark(home))
    split = adjudication.pending(campaign.id, home=home)[0]
    adjudication.decide(split["pair_id"], "tuned", "boss", home=home)
    marks.append(campaigns.activity_mark(home))
    time.sleep(1.1)  # a decision's time has whole seconds: one made again in the same second shows 30 s later
    adjudication.decide(split["pair_id"], "base", "boss", home=home)  # decided again: the same row replaced
    marks.append(campaigns.activity_mark(home))
    assert len(set(marks)) == len(marks), marks
    assert campaigns.activity_mark(home) == marks[-1]  # nothing done, the same mark

    drawn = {"campaign": campaign.id, "mark": marks[-1], "at": 100.0}
    assert not fits_due(drawn, campaign.id, marks[-1], 100.0 + FITS_AT_LEAST_S - 1)  # nothing new
    assert fits_due(drawn, campaign.id, marks[-1], 100.0 + FITS_AT_LEAST_S)  # stale anyway
    assert not fits_due(drawn, campaign.id, "a vote later", 100.0 + FITS_EVERY_S - 1)  # too soon after the last
    assert fits_due(drawn, campaign.id, "a vote later", 100.0 + FITS_EVERY_S)
    assert fits_due(drawn, "another campaign", marks[-1], 100.0)  # another selection: at once
    assert fits_due({}, campaign.id, marks[-1], 0.0)  # never drawn
