"""An LLM judge pre-labels a campaign in its own process (the built-in tiny model as the judge, the real store),
is measured against people's votes (simulated labelers through the real serving), and fills the pairs people
have not reached only once its κ passes the campaign's threshold on enough shared pairs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.config import CampaignConfig
from lab.errors import LabError
from lab.home import Home, lab_home
from lab.label import prelabel, simulate
from lab.label.campaigns import create_campaign, get_campaign
from lab.label.results import campaign_votes
from lab.label.stats import cohen_kappa

PROMPTS = 16
SOURCES = ("short", "long")


def wait(campaign_id: str, home: Home, timeout: float = 240) -> dict:
    deadline = time.time() + timeout
    while (found := prelabel.state(campaign_id, home=home))["status"] == prelabel.RUNNING:
        assert time.time() < deadline, f"pre-labeling did not finish in {timeout} s: {found}"
        time.sleep(0.5)
    return found


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, Path]:
    """A lab home (the tiny model built once) and a responses file: a short and a long answer to 16 prompts."""
    from lab.models import tiny_model_path

    folder = tmp_path_factory.mktemp("prelabel")
    home = lab_home(folder / "home")
    tiny_model_path(home)
    rows = [{"prompt": f"What is {i} plus {i}?", "short": f"{2 * i}.",
             "long": f"Adding {i} to itself doubles it, so the sum is {2 * i}."} for i in range(PROMPTS)]
    path = folder / "responses.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return home, path


def judged_campaign(lab: tuple[Home, Path], name: str) -> str:
    home, path = lab
    campaign = create_campaign(CampaignConfig(name=name, responses_file=str(path), votes_per_pair=1, extra_votes=0,
                                              judge="tiny", judge_fills_at=0.5), home=home)
    # A campaign from ready answers that names a judge starts its pre-labels at creation.
    assert wait(campaign.id, home)["status"] == prelabel.DONE
    return campaign.id


@pytest.fixture(scope="module")
def agreeing(lab) -> str:
    return judged_campaign(lab, "agreeing")


@pytest.fixture(scope="module")
def disagreeing(lab) -> str:
    return judged_campaign(lab, "disagreeing")


def answer_texts(campaign_id: str, home: Home) -> dict[int, dict[str, str]]:
    from lab.label.results import prompt_and_texts
    from lab.store import Store

    store = Store(home)
    return {p["id"]: prompt_and_texts(store, campaign_id, p["prompt_idx"])[1]
            for p in store.query("SELECT id, prompt_idx FROM pairs WHERE campaign_id = ?", (campaign_id,))}


def person(campaign_id: str, home: Home, *, agree: bool) -> simulate.Labeler:
    """A labeler who votes as the judge did on every pair (agree) or against it (a judge's tie: for 'short')."""
    liking = {}
    labels = prelabel.labels(campaign_id, home=home)
    for pair_id, texts in answer_texts(campaign_id, home).items():
        outcome = labels[pair_id]["outcome"]
        for source, text in texts.items():
            if agree:
                liking[text] = 0.5 if outcome == "tie" else float(source == outcome)
            else:
                liking[text] = float(source == "short") if outcome == "tie" else float(source != outcome)
    return simulate.Labeler("agrees" if agree else "disagrees", score=liking.__getitem__, noise=0.0)


def test_the_judge_labels_every_pair_in_its_own_process(lab, agreeing):
    home, _ = lab
    labels = prelabel.labels(agreeing, home=home)
    assert len(labels) == PROMPTS
    for label in labels.values():
        assert label["judge"] == "tiny" and label["outcome"] in (*SOURCES, "tie")
        assert label["consistent"] or label["outcome"] == "tie"  # orders that disagree make a tie
    found = prelabel.state(agreeing, home=home)
    assert (found["done"], found["total"], found["error"]) == (PROMPTS, PROMPTS, None)
    assert found["pid"] != os.getpid()  # never in the caller's (the web server's) process
    assert "pre-labeling done" in Path(found["log"]).read_text()
    report = prelabel.agreement(agreeing, home=home)
    assert (report["judge"], report["labelled"], report["shared"], report["kappa"], report["fills"]) == \
        ("tiny", PROMPTS, 0, None, False)
    assert report["position_consistency"] == round(sum(v["consistent"] for v in labels.values()) / PROMPTS, 4)


def test_the_judge_fills_only_past_its_threshold_on_enough_shared_pairs(lab, agreeing):
    home, _ = lab
    labeler = person(agreeing, home, agree=True)
    assert simulate.label(agreeing, [labeler], home=home, max_votes=prelabel.MIN_SHARED - 1) == \
        prelabel.MIN_SHARED - 1
    early = prelabel.agreement(agreeing, home=home)
    assert early["shared"] == prelabel.MIN_SHARED - 1 and early["kappa"] == 1.0 and not early["fills"]
    assert prelabel.fills(agreeing, home=home) == {}  # κ 1 on too few pairs says little

    assert simulate.label(agreeing, [labeler], home=home, max_votes=3) == 3
    report = prelabel.agreement(agreeing, home=home)
    assert report["shared"] == prelabel.MIN_SHARED + 2 and report["kappa"] >= 0.5 and report["accuracy"] == 1.0
    assert report["fills"]
    filled = prelabel.fills(agreeing, home=home)
    voted = {v["pair_id"] for v in campaign_votes(agreeing, home)}
    labels = prelabel.labels(agreeing, home=home)
    assert len(filled) == PROMPTS - len(voted) == 4 and not set(filled) & voted
    assert filled == {pair_id: labels[pair_id]["outcome"] for pair_id in filled}


def test_a_judge_people_disagree_with_never_fills(lab, disagreeing):
    home, _ = lab
    assert simulate.label(disagreeing, [person(disagreeing, home, agree=False)], home=home, max_votes=12) == 12
    report = prelabel.agreement(disagreeing, home=home)
    majority, _ = prelabel.people(disagreeing, home=home)
    labels = prelabel.labels(disagreeing, home=home)
    shared = sorted(majority)
    assert report["shared"] == 12 and report["accuracy"] == 0.0
    assert report["kappa"] == round(cohen_kappa([labels[p]["outcome"] for p in shared],
                                                [majority[p] for p in shared]), 4) < 0.5
    assert not report["fills"] and prelabel.fills(disagreeing, home=home) == {}


def test_a_campaign_without_a_judge_or_with_thumbs_is_refused(lab):
    home, path = lab
    plain = create_campaign(CampaignConfig(responses_file=str(path)), home=home)
    with pytest.raises(LabError, match="names no judge"):
        prelabel.start(plain.id, home=home)
    assert prelabel.fills(plain.id, home=home) == {}  # judge_fills_at 0: never
    thumbs = create_campaign(CampaignConfig(responses_file=str(path), mode="thumbs"), home=home)
    with pytest.raises(LabError, match="thumbs"):
        prelabel.start(thumbs.id, judge="tiny", home=home)


def test_an_endpoint_judge_without_a_network_fails_clearly(lab, monkeypatch):
    home, path = lab
    for name in ("LAB_JUDGE_BASE_URL", "OPENAI_BASE_URL", "LAB_JUDGE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    campaign = create_campaign(CampaignConfig(responses_file=str(path)), home=home)
    with pytest.raises(LabError, match="LAB_JUDGE_BASE_URL"):
        prelabel.start(campaign.id, judge="endpoint", home=home)
    assert prelabel.state(campaign.id, home=home)["status"] == prelabel.FAILED  # the admin sees why
    # Configured, but nothing answers there: the process fails, and says so in its state and log.
    monkeypatch.setenv("LAB_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    prelabel.start(campaign.id, judge="endpoint:judge-model", home=home)
    found = wait(campaign.id, home)
    assert found["status"] == prelabel.FAILED and found["judge"] == "endpoint:judge-model"
    assert "could not be reached" in found["error"] and "127.0.0.1" not in found["error"]
    assert prelabel.labels(campaign.id, home=home) == {}


def test_a_generating_campaign_with_a_judge_is_pre_labeled_when_its_answers_are_done(lab):
    home, _ = lab
    campaign = create_campaign(CampaignConfig(prompts="Say hi.\nCount to three.\nName a colour.",
                                              sources="tiny,tiny#2", max_new_tokens=4, judge="tiny"), home=home)
    deadline = time.time() + 240
    while prelabel.state(campaign.id, home=home)["status"] in ("none", prelabel.RUNNING):
        generating = get_campaign(campaign.id, home)
        assert generating.status != "failed" and time.time() < deadline, generating
        time.sleep(0.5)
    assert get_campaign(campaign.id, home).status == "open"
    assert prelabel.state(campaign.id, home=home)["status"] == prelabel.DONE
    assert len(prelabel.labels(campaign.id, home=home)) == 3


def test_cli_prelabels_and_reports_agreement(lab, agreeing):
    home, _ = lab
    env = {**os.environ, "LAB_HOME": str(home.root)}
    again = subprocess.run([sys.executable, "-m", "lab", "label", "prelabel", agreeing, "--wait", "--json"],
                           text=True, capture_output=True, env=env, check=True)
    assert json.loads(again.stdout)["status"] == "done"  # every pair already labelled by this judge: nothing to do
    assert len(prelabel.labels(agreeing, home=home)) == PROMPTS
    shown = subprocess.run([sys.executable, "-m", "lab", "label", "judge-agreement", agreeing, "--json"], text=True,
                           capture_output=True, env=env, check=True)
    assert json.loads(shown.stdout) == json.loads(json.dumps(prelabel.agreement(agreeing, home=home)))
    human = subprocess.run([sys.executable, "-m", "lab", "label", "judge-agreement", agreeing], text=True,
                           capture_output=True, env=env, check=True).stdout
    assert "judge tiny" in human and "κ" in human


def test_an_admin_sets_the_fill_threshold_after_seeing_the_agreement(lab, agreeing):
    home, _ = lab
    before = prelabel.agreement(agreeing, home=home)
    env = {**os.environ, "LAB_HOME": str(home.root)}
    strict = subprocess.run([sys.executable, "-m", "lab", "label", "judge-agreement", agreeing, "--fills-at", "1",
                             "--json"], text=True, capture_output=True, env=env, check=True)
    report = json.loads(strict.stdout)
    assert report["fills_at"] == 1.0 and report["fills"] == (report["kappa"] == 1.0)
    assert get_campaign(agreeing, home).config["judge_fills_at"] == 1.0
    never = prelabel.set_fills_at(agreeing, 0, home=home)
    assert not never["fills"] and prelabel.fills(agreeing, home=home) == {}
    with pytest.raises(LabError, match="between 0 .never. and 1"):
        prelabel.set_fills_at(agreeing, 1.5, home=home)
    prelabel.set_fills_at(agreeing, before["fills_at"], home=home)
