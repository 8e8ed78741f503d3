"""Style control: a source that wins only by writing longer answers tops the plain Bradley–Terry board and loses
its lead once the length difference is a covariate. Votes come from simulated labelers through the real serving
and store."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from lab.config import CampaignConfig
from lab.home import Home
from lab.label import results, simulate, style
from lab.label.campaigns import create_campaign

SOURCES = ("padder", "plain", "terse")
PROMPTS = 40


def answers(rng: random.Random, source: str, prompt: int) -> str:
    """Answers of every source vary in length; the padder's are longer on average (and no better otherwise). The
    tag (one length for all) makes each answer's text its own."""
    low, high = (200, 400) if source == "padder" else (120, 300)
    return f"[{prompt:02d}{source[0]}] " + "word " * (rng.randint(low, high) // 5)


def liking(text: str) -> float:
    """What people think of an answer: the log of its length (a relative length, as style control models it) plus
    a quality of its own drawn alike for every source, so only length sets the padder apart."""
    return math.log(len(text)) + 0.25 * random.Random(text).gauss(0, 1)


@pytest.fixture(scope="module")
def voted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, str]:
    """Three sources × 40 prompts, voted on by three labelers who like longer answers (``liking``), with 10%
    random clicks."""
    from lab.home import lab_home

    folder = tmp_path_factory.mktemp("style")
    home = lab_home(folder / "home")
    rng = random.Random(0)
    rows = [{"prompt": f"Question {i}?", **{s: answers(rng, s, i) for s in SOURCES}} for i in range(PROMPTS)]
    path = folder / "responses.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    campaign = create_campaign(CampaignConfig(name="style", responses_file=str(path), votes_per_pair=2,
                                              extra_votes=0), home=home)
    people = [simulate.Labeler(f"p{i}", score=liking, noise=0.1, seed=i) for i in range(3)]
    assert simulate.label(campaign.id, people, home=home) == PROMPTS * 3 * 2
    return home, campaign.id


def by_source(board: dict) -> dict[str, dict]:
    return {r["source"]: r for r in board["ratings"]}


def test_length_wins_top_the_plain_board_but_not_the_style_controlled_one(voted):
    home, campaign_id = voted
    plain = by_source(results.leaderboard(campaign_id, home=home))
    controlled = style.leaderboard(campaign_id, home=home)
    styled = by_source(controlled)
    rivals = [s for s in SOURCES if s != "padder"]
    # Plain BT: the padder leads, clear of both rivals' intervals.
    assert all(plain["padder"]["low"] > plain[s]["high"] for s in rivals), plain
    # Style control: the length coefficient carries the wins, and the padder's lead is gone: its interval meets
    # each rival's, and what is left of the gap is a fraction of the plain one.
    assert controlled["length_coefficient"] > 0.5
    low, high = controlled["length_interval"]
    assert 0 < low < controlled["length_coefficient"] < high
    for s in rivals:
        assert styled["padder"]["low"] < styled[s]["high"], styled
        assert styled["padder"]["rating"] - styled[s]["rating"] < (plain["padder"]["rating"] - plain[s]["rating"]) / 2
    # Same shape as the plain board, so the UI can show both: Elo scale, mean 1000, every vote counted.
    assert set(controlled) >= {"ratings", "models", "win_rates", "counts", "comparisons"}
    assert controlled["comparisons"] == len(results.comparisons(campaign_id, home))
    assert abs(sum(r["rating"] for r in controlled["ratings"]) / len(SOURCES) - 1000) < 0.5
    assert all(r["comparisons"] == PROMPTS * 2 * 2 for r in controlled["ratings"])


def test_equal_lengths_leave_no_length_coefficient(tmp_path: Path):
    """Without any variation in length the covariate explains nothing: no coefficient, and the board still ranks
    the source people prefer first."""
    from lab.home import lab_home

    home = lab_home(tmp_path / "home")
    rows = [{"prompt": f"Q{i}", "good": f"good answer {i:03d}", "bad": f"bad! answer {i:03d}"} for i in range(12)]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    campaign = create_campaign(CampaignConfig(responses_file=str(path), votes_per_pair=1), home=home)
    simulate.label(campaign.id, [simulate.Labeler("p", score=lambda t: t.startswith("good"), noise=0.0)], home=home)
    board = style.leaderboard(campaign.id, home=home)
    assert board["length_coefficient"] is None and board["length_interval"] is None
    assert [r["source"] for r in board["ratings"]] == ["good", "bad"]
    assert style.leaderboard("nothing-here", home=home)["ratings"] == []


def test_cli_prints_the_style_board(voted):
    home, campaign_id = voted
    shown = subprocess.run([sys.executable, "-m", "lab", "label", "style", campaign_id, "--json"], text=True,
                           capture_output=True, env={**os.environ, "LAB_HOME": str(home.root)},
                           check=True)
    board = json.loads(shown.stdout)
    assert board == json.loads(json.dumps(style.leaderboard(campaign_id, home=home)))
    human = subprocess.run([sys.executable, "-m", "lab", "label", "style", campaign_id], text=True,
                           capture_output=True, env={**os.environ, "LAB_HOME": str(home.root)},
                           check=True).stdout
    assert "padder" in human and "length coefficient +" in human
