"""Which labelers to trust, on a real store with simulated labelers voting through the real serving: honest ones
(10% random clicks), one who votes against the rule and one who clicks at random. The unreliable two are flagged
with a reason and the honest three are not; κ over time and per pair of sources add up to the campaign's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.config import CampaignConfig
from lab.home import Home, lab_home
from lab.label import campaigns, reliability, results, simulate, stats

SOURCES = {"good": " Thank you for asking!", "ok": " Thanks.", "bad": ""}  # what each source adds to its answers


def score(text: str) -> float:
    """The rule the labelers follow: good > ok > bad, good and bad far apart, ok and bad close."""
    return 1.5 if "Thank you" in text else 0.5 if "Thanks." in text else 0.0


def responses(folder: Path, n: int, sources: tuple[str, ...] = tuple(SOURCES)) -> str:
    path = folder / f"responses-{n}-{'-'.join(sources)}.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Question {i}: what is {i} + {i}?",
                                        **{s: f"{2 * i}.{SOURCES[s]}" for s in sources}}) + "\n"
                            for i in range(n)))
    return str(path)


def gold(folder: Path, n: int) -> str:
    path = folder / "gold.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Gold {i}: what is {i} * 3?", "response_a": f"{3 * i}.",
                                        "response_b": f"{3 * i}. Thank you for asking!", "answer": "b"}) + "\n"
                            for i in range(n)))
    return str(path)


def crowd() -> list[simulate.Labeler]:
    honest = [simulate.Labeler(name, score, noise=0.1) for name in ("ann", "bob", "cat")]
    return honest + [simulate.Labeler("mal", score, noise=0.1, flip=True), simulate.Labeler("rnd", score, noise=1.0)]


def make_campaign(home: Home, folder: Path, n: int = 60, **changes) -> campaigns.Campaign:
    cfg = CampaignConfig(name="trust", responses_file=responses(folder, n), sources="", votes_per_pair=3, **changes)
    return campaigns.create_campaign(cfg, home=home)


@pytest.fixture(scope="module")
def voted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, campaigns.Campaign]:
    """60 prompts × 3 sources (180 pairs) and 12 gold pairs, graded, three votes a pair, all votes in: about 100
    checks each, where a random clicker escapes the flag once in 5,000 campaigns."""
    folder = tmp_path_factory.mktemp("trust")
    home = lab_home(folder / "lab_home")
    campaign = make_campaign(home, folder, gold_file=gold(folder, 12), graded=True)
    assert simulate.label(campaign.id, crowd(), home=home) >= 192 * 3
    return home, campaign


def test_unreliable_labelers_are_flagged_with_a_reason_and_honest_ones_are_not(voted, monkeypatch):
    home, campaign = voted
    # The checks' flag only: serving draws sides at random, so the position-bias flag catches an honest labeler in
    # about one campaign of a hundred by design (the next test tests it on votes of known sides).
    monkeypatch.setattr(reliability, "SIDE_P", 0.0)
    table = {r["labeler"]: r for r in reliability.labelers(campaign.id, home=home)}
    assert {n for n, r in table.items() if r["flagged"]} == {"mal", "rnd"}, table
    assert list(table)[:2] == ["mal", "rnd"]  # flagged first
    for name in ("ann", "bob", "cat"):
        assert table[name]["majority_agreement"] > 0.8 and table[name]["score"] > 0.8, table[name]
    assert table["mal"]["majority_agreement"] < 0.25 and table["mal"]["score"] < 0.25
    assert 0.3 < table["rnd"]["majority_agreement"] < 0.7
    mal = table["mal"]
    assert mal["why"].startswith(f"agrees with the others on {mal['majority_agreement']:.0%} of "
                                 f"{mal['shared_pairs']} shared pairs")
    if mal["gold_votes"]:
        assert f"gold {mal['gold_correct']}/{mal['gold_votes']}" in mal["why"]
    assert sum(r["votes"] for r in table.values()) == len(results.campaign_votes(campaign.id, home))


def test_the_rule_needs_evidence_and_sees_a_side_clicker():
    """Without a campaign: nine disagreements flag nobody, ten do; a labeler who always clicks left is flagged for
    it."""
    def vote(pair: int, labeler: str, outcome: str, choice: str = "a") -> dict:
        return {"pair_id": pair, "labeler": labeler, "outcome": outcome, "choice": choice, "gold": None}

    def against(pairs: int) -> dict[str, dict]:
        votes = [vote(p, who, "x" if who == "ann" else "y") for p in range(pairs) for who in ("ann", "bob", "cat")]
        return {r["labeler"]: r for r in reliability.assess(votes)}

    assert not any(r["flagged"] for r in against(reliability.MIN_CHECKS - 1).values())
    assert [n for n, r in against(reliability.MIN_CHECKS).items() if r["flagged"]] == ["ann"]
    sides = [vote(p, who, "x", "a" if who == "lefty" or p % 2 else "b")  # lefty: always the left answer
             for p in range(30) for who in ("ann", "bob", "lefty")]
    table = {r["labeler"]: r for r in reliability.assess(sides)}
    assert table["lefty"]["flagged"] and "picks the left answer in 100% of 30 decided votes" in table["lefty"]["why"]
    assert not table["ann"]["flagged"] and table["ann"]["majority_agreement"] == 1.0


def test_two_labelers_who_disagree_are_both_flagged_until_gold_tells():
    """Two people, one voting against the rule: with no gold nothing says which is right."""
    votes = [{"pair_id": p, "labeler": who, "outcome": "x" if who == "ann" else "y", "choice": "a", "gold": None}
             for p in range(20) for who in ("ann", "mal")]
    table = reliability.assess(votes)
    assert all(r["flagged"] and "gold pairs would tell" in r["why"] for r in table)
    checked = votes + [{"pair_id": 100 + p, "labeler": who, "outcome": "gold-b" if who == "ann" else "gold-a",
                        "choice": "b", "gold": "gold-b"} for p in range(10) for who in ("ann", "mal")]
    table = {r["labeler"]: r for r in reliability.assess(checked)}
    assert table["mal"]["flagged"] and table["mal"]["gold_accuracy"] == 0.0
    assert table["ann"]["gold_accuracy"] == 1.0 and table["ann"]["score"] > table["mal"]["score"]
    few = [v for v in checked if v["gold"] is not None][:6]  # 3 gold checks each: said, not yet flagged
    table = {r["labeler"]: r for r in reliability.assess(few)}
    assert not table["mal"]["flagged"] and "gold 0/3; too few checks to flag yet (3 of 10)" in table["mal"]["why"]


def test_kappa_over_time_windows_add_up_to_the_campaign(voted):
    home, campaign = voted
    windows = reliability.kappa_over_time(campaign.id, home=home)
    overall = results.agreement(campaign.id, home=home)
    assert len(windows) == 10 and [w["window"] for w in windows] == list(range(1, 11))  # 180 pairs, 18 a window
    assert sum(w["pairs"] for w in windows) == overall["pairs_with_overlap"] == 180
    assert windows[-1]["cumulative_kappa"] == pytest.approx(overall["fleiss_kappa"], abs=1e-4)
    assert all(w["start"] <= w["end"] for w in windows) and windows[0]["end"] <= windows[-1]["start"]
    assert len(reliability.kappa_over_time(campaign.id, home=home, window=90)) == 2


def test_per_source_pair_counts_votes_and_finds_the_hard_pair(voted):
    home, campaign = voted
    rows = {tuple(r["sources"]): r for r in reliability.per_source_pair(campaign.id, home=home)}
    assert set(rows) == {("bad", "good"), ("bad", "ok"), ("good", "ok")}
    people = [v for v in results.campaign_votes(campaign.id, home) if v["gold"] is None]
    assert sum(r["votes"] for r in rows.values()) == len(people)
    assert all(r["pairs"] == 60 for r in rows.values())
    easy = rows["bad", "good"]
    assert easy["outcomes"]["good"] > easy["outcomes"]["bad"] and -1 <= easy["kappa"] <= 1
    assert sum(easy["outcomes"].values()) == easy["votes"]


def test_weighted_majority():
    assert stats.weighted_majority(["x", "y", "y"]) == ("y", pytest.approx(2 / 3))
    assert stats.weighted_majority(["x", "y", "y"], [0.9, 0.2, 0.2]) == ("x", pytest.approx(0.9 / 1.3))
    assert stats.weighted_majority(["x", "y"])[0] is None  # split evenly: no majority
    with pytest.raises(ValueError):
        stats.weighted_majority(["x"], [1.0, 2.0])
