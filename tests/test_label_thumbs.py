"""Labeling as a source of unpaired data for KTO, on a real SQLite store: a thumbs campaign serves one answer at a
time and takes 👍/👎 (with skip and undo), its export is an unpaired version, and KTO trains on that export to
the end; a pairwise campaign's votes export as unpaired too (winner desirable, loser undesirable, both-bad two
undesirable, ties nothing); migration 7 keeps every vote and retraction; the real app serves the thumbs page
and "Train KTO on this" fills the Train form."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from lab.config import CampaignConfig
from lab.errors import LabError
from lab.home import lab_home
from lab.label import campaigns, results, serving
from lab.store import MIGRATIONS, Store
from tests.test_label import responses_file, vote_all
from tests.test_train_runs import lab, metrics, train

HELPFUL = "Here is a fact about {topic}: people have studied {topic} for centuries."
REFUSAL = "No. I will not answer that."
TOPICS = ["rivers", "stars", "bread", "music", "chess", "rain", "maps", "tea", "bees", "glass", "clocks", "boats"]


def thumbs_file(folder: Path, n: int) -> str:
    """Ready answers from two sources: 'helper' answers, 'refuser' refuses (what a labeler would 👍 and 👎)."""
    rows = [{"prompt": f"Tell me one fact about {TOPICS[i % len(TOPICS)]} (#{i}).",
             "helper": HELPFUL.format(topic=TOPICS[i % len(TOPICS)]), "refuser": REFUSAL} for i in range(n)]
    path = folder / f"thumbs-{n}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def thumb(left: str, right: str) -> str:
    assert right == ""  # one answer at a time
    return "down" if left == REFUSAL else "up"


def thumbs_campaign(home, folder: Path, n: int = 4, votes: int = 1, name: str = "thumbs") -> campaigns.Campaign:
    cfg = CampaignConfig(name=name, mode="thumbs", responses_file=thumbs_file(folder, n), sources="",
                         votes_per_pair=votes)
    return campaigns.create_campaign(cfg, home=home)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One lab home for the module, with the tiny model built once."""
    root = tmp_path_factory.mktemp("thumbs_home")
    from lab.models import tiny_model_path

    tiny_model_path(lab_home(root))
    return lab_home(root)


def test_a_thumbs_campaign_serves_one_answer_and_takes_up_or_down(home, tmp_path):
    campaign = thumbs_campaign(home, tmp_path, n=3, votes=2)
    assert campaign.thumbs and campaign.status == "open"
    pairs = Store(home).query("SELECT source_1, source_2, ready FROM pairs WHERE campaign_id = ?", (campaign.id,))
    assert len(pairs) == 6 and all(p["source_1"] == p["source_2"] and p["ready"] for p in pairs)
    served = serving.next_pair(campaign.id, "ann", home=home)
    assert served.right == "" and served.left in (REFUSAL, *(HELPFUL.format(topic=t) for t in TOPICS[:3]))
    with pytest.raises(LabError, match="takes a vote up or down"):
        serving.vote(served.token, "ann", "a", home=home)
    serving.skip(served.token, "ann", home=home)
    again = serving.next_pair(campaign.id, "ann", home=home)
    assert serving.vote(again.token, "ann", thumb(again.left, again.right), home=home)
    undone = serving.undo(campaign.id, "ann", home=home)  # the same answer comes back
    assert undone.left == again.left and undone.right == ""
    assert serving.vote(undone.token, "ann", thumb(undone.left, undone.right), home=home)
    assert vote_all(campaign.id, "ann", home, thumb) == 5 and vote_all(campaign.id, "bob", home, thumb) == 6

    board = results.approval(campaign.id, home=home)
    assert [(r["source"], r["up"], r["down"], r["rate"]) for r in board["sources"]] == [("helper", 6, 0, 1.0),
                                                                                       ("refuser", 0, 6, 0.0)]
    assert board["sources"][0]["low"] > 0.5 > board["sources"][1]["high"]  # Wilson intervals, inside [0, 1]
    report = results.agreement(campaign.id, home=home)
    assert report["pairwise_agreement"] == 1.0 and report["position_bias"]["decided"] == 0
    assert {r["labeler"]: r["up_rate"] for r in report["per_labeler"]} == {"ann": 0.5, "bob": 0.5}
    assert results.leaderboard(campaign.id, home=home)["ratings"] == []  # thumbs votes compare nothing

    version = results.export_votes(campaign.id, home=home)
    assert version.kind == "unpaired" and version.ref.startswith("unpaired-thumbs@") and version.rows["train"] == 6
    assert version.card["counts"] == {"desirable rows": 3, "undesirable rows": 3} and version.card["mode"] == "thumbs"
    from lab.data.versions import read_rows

    labelled = {(r["completion"][0]["content"], r["label"]) for r in read_rows(version, "train", home)}
    assert labelled == {(REFUSAL, False), *((HELPFUL.format(topic=t), True) for t in TOPICS[:3])}
    with pytest.raises(LabError, match="thumbs"):
        results.export_preferences(campaign.id, home=home)


def test_one_source_is_enough_for_thumbs_and_gold_pairs_are_refused(home, tmp_path):
    one = CampaignConfig(mode="thumbs", responses_file=responses_file(tmp_path, 2, ("only",)), sources="")
    assert len(Store(home).query("SELECT id FROM pairs WHERE campaign_id = ?",
                                 (campaigns.create_campaign(one, home=home).id,))) == 2
    with pytest.raises(LabError, match="choose mode thumbs"):
        campaigns.create_campaign(CampaignConfig(responses_file=responses_file(tmp_path, 2, ("only",)), sources=""),
                                  home=home)
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"prompt": "p", "response_a": "x", "response_b": "y", "answer": "a"}) + "\n")
    with pytest.raises(LabError, match="no gold file"):
        campaigns.create_campaign(CampaignConfig(mode="thumbs", responses_file=thumbs_file(tmp_path, 2), sources="",
                                                 gold_file=str(gold)), home=home)


def test_pairwise_votes_export_as_unpaired(home, tmp_path):
    campaign = campaigns.create_campaign(CampaignConfig(name="pw", responses_file=responses_file(tmp_path, 4),
                                                        sources="", votes_per_pair=1), home=home)
    outcome = iter(["win", "both_bad", "tie", "win"])
    while (pair := serving.next_pair(campaign.id, "ann", home=home)) is not None:
        how = next(outcome)
        choice = ("a" if "Thank you" in pair.left else "b") if how == "win" else how
        assert serving.vote(pair.token, "ann", choice, home=home)
    version = results.export_unpaired(campaign.id, home=home)
    assert version.name == "unpaired-pw" and version.kind == "unpaired"
    # two wins: winner 👍 and loser 👎 each; both bad: two 👎; the tie gives nothing
    assert version.card["counts"] == {"desirable rows": 2, "undesirable rows": 4, "both bad": 1, "tie": 1}
    from lab.data.versions import read_rows

    rows = read_rows(version, "train", home)
    assert all(("Thank you" in r["completion"][0]["content"]) == r["label"] for r in rows if r["label"])
    assert sum(not r["label"] for r in rows) == 4
    preference = results.export_votes(campaign.id, home=home)  # the pairwise campaign's usual export
    assert preference.kind == "preference" and preference.rows["train"] == 2


def test_migration_7_keeps_votes_and_retractions(tmp_path):
    home = lab_home(tmp_path / "old")
    conn = sqlite3.connect(home.store_path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    for number, script in enumerate(MIGRATIONS[:6], start=1):  # a store as issue 17 left it
        for statement in filter(str.strip, script.split(";")):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
    conn.execute("INSERT INTO campaigns (id, name, status, config, sources, created_at) VALUES ('c', 'c', 'open', "
                 "'{}', '[]', 't')")
    conn.execute("INSERT INTO pairs (campaign_id, prompt_idx, source_1, source_2, votes_wanted, remaining, rank, "
                 "ready) VALUES ('c', 0, 'x', 'y', 2, 0, 0, 1)")
    for labeler in ("ann", "bob"):
        conn.execute("INSERT INTO votes (pair_id, campaign_id, labeler, choice, winner, left_source, created_at) "
                     "VALUES (1, 'c', ?, 'a', 'x', 'x', 't')", (labeler,))
    conn.execute("INSERT INTO retractions VALUES (1, 'ann', 't')")
    conn.close()
    store = Store(home)
    assert store.schema_version() == len(MIGRATIONS)
    assert store.query("SELECT labeler FROM live_votes") == [{"labeler": "bob"}]
    with store.write() as write:
        write.execute("INSERT INTO votes (pair_id, campaign_id, labeler, choice, left_source, created_at) VALUES "
                      "(1, 'c', 'cat', 'up', 'x', 't')")
        with pytest.raises(sqlite3.IntegrityError):
            write.execute("INSERT INTO votes (pair_id, campaign_id, labeler, choice, left_source, created_at) VALUES "
                          "(1, 'c', 'cat', 'meh', 'x', 't')")
    with store.write() as write:
        write.execute("DELETE FROM votes WHERE id = 1")  # the retraction still follows its vote
    assert store.query("SELECT COUNT(*) AS n FROM retractions") == [{"n": 0}]


def test_kto_trains_on_a_thumbs_campaign_export_to_the_end(shared, tmp_path):
    result = lab(shared, "label", "create", "--name", "kto-thumbs", "--mode", "thumbs", "--responses-file",
                 thumbs_file(tmp_path, 24), "--sources", "", "--votes-per-pair", "1", "--json")
    assert result.returncode == 0, result.stderr
    campaign_id = json.loads(result.stdout)["id"]
    assert vote_all(campaign_id, "ann", shared, thumb) == 48
    exported = lab(shared, "label", "export", campaign_id, "--json")  # a thumbs campaign exports unpaired
    assert exported.returncode == 0 and "train KTO on it" in exported.stderr, exported.stderr
    ref = json.loads(exported.stdout)["ref"]
    board = json.loads(lab(shared, "label", "leaderboard", campaign_id, "--json").stdout)
    assert [r["rate"] for r in board["sources"]] == [1.0, 0.0]
    done = train(shared, "tiny-kto.yaml", "--set", f"dataset={ref}", "--set", "max_steps=12", "--set", "batch_size=4",
                 "--set", "learning_rate=1e-3", "--set", "logging_steps=3", "--set", "eval_split=none", "--set",
                 "max_length=128", "--set", "max_prompt_length=64", "--set", "sample_prompts=0")
    assert done["status"] == "succeeded", done["error"]
    assert "KTO: 24 desirable and 24 undesirable rows; loss weights 1 desirable, 1 undesirable" in \
        Path(done["run_dir"], "log.txt").read_text()
    logged = [row for row in metrics(done) if row["split"] == "train" and "rewards/margins" in row]
    assert logged[-1]["rewards/margins"] > logged[0]["rewards/margins"] + 1.0, logged


def test_the_app_serves_thumbs_and_proposes_kto(lab_app, tmp_path):
    client = Client(lab_app.url, verbose=False)
    status, _, selected, state = client.predict(name="app-thumbs", mode="thumbs", prompts="unused", sources=[],
                                                votes_per_pair=1, gold_file=None,
                                                responses_file=handle_file(thumbs_file(tmp_path, 4)),
                                                api_name="/label_create")[:4]
    assert "Created campaign app-thumbs" in status and "0/8 votes" in state, (status, state)
    campaign_id = selected["value"]
    item = client.predict(campaign_id, False, api_name="/label_next")
    votes = 0
    while item[1]:  # the lease token; empty when nothing is left
        assert item[5] == ""  # no second answer
        item = client.predict(campaign_id, item[1], "", False,
                              api_name="/label_vote_down" if REFUSAL in item[4] else "/label_vote_up")
        votes += 1
    assert votes == 8 and "Nothing left for you" in item[3]
    view = client.predict(campaign_id, api_name="/label_admin_view")
    assert "**Approval**" in view[4] and "| helper | 100% |" in view[4], view[4]
    status, result, _ = client.predict(campaign_id, "", 1, 0.5, 0, api_name="/label_export")
    assert "Exported unpaired-app-thumbs@" in status and "(unpaired, for KTO)" in result, result
    filled = client.predict("tiny", api_name="/label_train_kto")
    assert "The Train tab holds a KTO run on unpaired-app-thumbs@" in filled[0] and "4 desirable, 4 undesirable" in \
        filled[0], filled[0]
    refused = client.predict("tiny", api_name="/label_train_dpo")[0]  # DPO on unpaired rows: refused, with why
    assert "DPO needs preference pairs" in refused, refused


def test_a_pairwise_round_after_a_thumbs_round_exports_its_own_pairs_with_earlier_rounds(home, tmp_path):
    """A round after a thumbs round is pairwise; its export with earlier rounds leaves the thumbs round out and
    says so in the card."""
    first = thumbs_campaign(home, tmp_path, n=2)
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Fresh question {i}?", "good": f"A kind answer {i}.",
                                        "bad": "No."}) + "\n" for i in range(3)))
    second = campaigns.create_campaign(CampaignConfig(name="after-thumbs", responses_file=str(path), sources="",
                                                      previous=first.id), home=home)
    assert second.round == 2 and not second.thumbs
    from lab.label.simulate import Labeler, label

    label(second.id, [Labeler("ann", lambda text: len(text), 0.0, 1)], home=home)
    version = results.export_preferences(second.id, earlier_rounds=True, home=home)
    assert version.card["counts"]["round 1 (thumbs) left out"] == 1
    assert [r["round"] for r in version.card["rounds"]] == [2] and version.rows["train"] == 3
