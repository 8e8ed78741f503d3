"""Pairs labelers disagree on, on a real store: split votes want an extra vote (active serving), still split they
wait for an admin, whose decision is kept apart from the votes; the same from the CLI."""

from __future__ import annotations

import json

import pytest

from lab.config import CampaignConfig
from lab.errors import LabError
from lab.label import adjudication, campaigns, results, serving
from tests.test_label import lab_cli, responses_file


def vote_for(campaign_id: str, labeler: str, outcome: str, home) -> None:
    """Vote ``outcome`` (base, tuned, tie or both_bad) on the pair served to ``labeler``."""
    pair = serving.next_pair(campaign_id, labeler, home=home)
    assert pair is not None, f"{labeler} was served nothing"
    tuned_left = "Thank you" in pair.left
    choice = {"tuned": "a" if tuned_left else "b", "base": "b" if tuned_left else "a"}.get(outcome, outcome)
    assert serving.vote(pair.token, labeler, choice, home=home)


@pytest.fixture
def disputed(home, tmp_path):
    """An active campaign of one pair: ann votes tuned, bob base (split), cat tie: no majority after the extra."""
    cfg = CampaignConfig(name="disputed", responses_file=responses_file(tmp_path, 1), sources="", votes_per_pair=2,
                         serving="active", extra_votes=1)
    campaign = campaigns.create_campaign(cfg, home=home)
    return campaign


def counts(campaign_id: str, home) -> tuple[int, int, int]:
    """(votes, wanted by the pairs, wanted by the campaign's progress): the two wanted figures must agree."""
    c = campaigns.campaign_counts(home, campaign_id)[campaign_id]
    return c.votes, c.wanted, serving.progress(campaign_id, "anyone", home=home).wanted


def test_split_votes_want_one_extra_vote_then_wait_for_a_decision(home, disputed):
    cid = disputed.id
    vote_for(cid, "ann", "tuned", home)
    assert counts(cid, home) == (1, 2, 2) and adjudication.pending(cid, home=home) == []
    vote_for(cid, "bob", "base", home)
    assert counts(cid, home) == (2, 3, 3)  # split: one extra vote wanted, on the pair and the campaign alike
    assert adjudication.pending(cid, home=home) == []  # not until the extra vote is in
    vote_for(cid, "cat", "tie", home)
    assert counts(cid, home) == (3, 3, 3)  # the extra is given once: a still split pair wants no more
    assert serving.next_pair(cid, "dan", home=home) is None
    (waiting,) = adjudication.pending(cid, home=home)
    assert waiting["answers"].keys() == {"base", "tuned"} and waiting["prompt"][0]["role"] == "user"
    assert sorted((v["labeler"], v["outcome"]) for v in waiting["votes"]) == [
        ("ann", "tuned"), ("bob", "base"), ("cat", "tie")]

    adjudication.decide(waiting["pair_id"], "base", "root", note="closer to the guideline", home=home)
    adjudication.decide(waiting["pair_id"], "tuned", "root", home=home)  # a new decision replaces the first
    assert adjudication.decisions(cid, home=home) == {waiting["pair_id"]: "tuned"}
    assert adjudication.pending(cid, home=home) == []
    assert results.agreement(cid, home=home)["votes"] == 3  # a decision is not a vote
    with pytest.raises(LabError, match="one of base, tuned, tie, both_bad"):
        adjudication.decide(waiting["pair_id"], "a", "root", home=home)
    with pytest.raises(LabError, match="No pair 999"):
        adjudication.decide(999, "tie", "root", home=home)


def test_an_extra_vote_that_makes_a_majority_settles_the_pair_and_undo_keeps_counts_true(home, disputed):
    cid = disputed.id
    vote_for(cid, "ann", "tuned", home)
    vote_for(cid, "bob", "base", home)
    vote_for(cid, "cat", "tuned", home)
    assert counts(cid, home) == (3, 3, 3) and adjudication.pending(cid, home=home) == []
    serving.undo(cid, "bob", home=home)  # ann and cat agree now: no extra vote wanted any more
    assert counts(cid, home)[1:] == (2, 2)


def test_balanced_serving_wants_no_extra_vote_and_its_split_pairs_wait_at_once(home, tmp_path):
    cfg = CampaignConfig(name="plain", responses_file=responses_file(tmp_path, 1), sources="", votes_per_pair=2)
    cid = campaigns.create_campaign(cfg, home=home).id
    vote_for(cid, "ann", "tuned", home)
    vote_for(cid, "bob", "base", home)
    assert counts(cid, home) == (2, 2, 2)
    assert len(adjudication.pending(cid, home=home)) == 1


def test_the_cli_lists_pending_pairs_and_records_a_decision(home, disputed):
    cid = disputed.id
    for labeler, outcome in (("ann", "tuned"), ("bob", "base"), ("cat", "tie")):
        vote_for(cid, labeler, outcome, home)
    listed = lab_cli(home, "label", "adjudicate", cid, "--json")
    assert listed.returncode == 0, listed.stderr
    (waiting,) = json.loads(listed.stdout)["pending"]
    human = lab_cli(home, "label", "adjudicate", "disputed")
    assert f"pair {waiting['pair_id']}:" in human.stdout and "1 waiting, 0 decided" in human.stdout

    wrong = lab_cli(home, "label", "adjudicate", cid, "--pair", str(waiting["pair_id"]), "--outcome", "nobody")
    assert wrong.returncode != 0 and "not 'nobody'" in wrong.stderr
    decided = lab_cli(home, "label", "adjudicate", cid, "--pair", str(waiting["pair_id"]), "--outcome", "both_bad",
                      "--admin", "lead", "--note", "neither answers")
    assert decided.returncode == 0, decided.stderr
    assert adjudication.decisions(cid, home=home) == {waiting["pair_id"]: "both_bad"}
    after = json.loads(lab_cli(home, "label", "adjudicate", cid, "--json").stdout)
    assert after["pending"] == [] and after["decisions"] == {str(waiting["pair_id"]): "both_bad"}
