"""The labeling engine on a real SQLite store: campaigns from every kind of input, blind pairs with random
sides, leases and votes under concurrency, agreement, the leaderboard, the export to a preference
version, accounts, background generation with the tiny model, the CLI and the W&B log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from lab.config import CampaignConfig
from lab.errors import LabError
from lab.label import accounts, campaigns, results, serving
from lab.store import Store

ROOT = Path(__file__).resolve().parents[1]


def responses_file(tmp_path: Path, n: int, sources: tuple[str, ...] = ("base", "tuned")) -> str:
    """Ready responses: source 'tuned' always ends with a thank-you, so a rule can tell it apart."""
    rows = []
    for i in range(n):
        row = {"prompt": f"Question number {i}: what is {i} + {i}?"}
        for source in sources:
            row[source] = f"{2 * i}." + (" Thank you for asking!" if source == "tuned" else "")
        rows.append(row)
    path = tmp_path / f"responses-{n}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def file_campaign(home, tmp_path, n=6, votes=2, **changes) -> campaigns.Campaign:
    cfg = CampaignConfig(name=f"c{n}", responses_file=responses_file(tmp_path, n), sources="", votes_per_pair=votes,
                         **changes)
    return campaigns.create_campaign(cfg, home=home)


def vote_all(campaign_id: str, labeler: str, home, rule=lambda left, right: "a") -> int:
    """Vote until nothing is left for ``labeler``; returns the number of votes cast."""
    cast = 0
    while (pair := serving.next_pair(campaign_id, labeler, home=home)) is not None:
        assert serving.vote(pair.token, labeler, rule(pair.left, pair.right), home=home)
        cast += 1
    return cast


def prefer_thanks(left: str, right: str) -> str:
    return "a" if "Thank you" in left else "b"


# --------------------------------------------------------------------------- campaigns


def test_file_campaign_is_open_with_one_pair_per_prompt(home, tmp_path):
    campaign = file_campaign(home, tmp_path, n=5)
    assert campaign.status == "open" and [s["name"] for s in campaign.sources] == ["base", "tuned"]
    pairs = Store(home).query("SELECT * FROM pairs WHERE campaign_id = ?", (campaign.id,))
    assert len(pairs) == 5 and all(p["ready"] == 1 and p["votes_wanted"] == 2 for p in pairs)


def test_three_sources_give_every_pair_of_them(home, tmp_path):
    cfg = CampaignConfig(responses_file=responses_file(tmp_path, 4, ("x", "y", "z")), sources="")
    campaign = campaigns.create_campaign(cfg, home=home)
    pairs = Store(home).query("SELECT source_1, source_2 FROM pairs WHERE campaign_id = ?", (campaign.id,))
    assert Counter((p["source_1"], p["source_2"]) for p in pairs) == {("x", "y"): 4, ("x", "z"): 4, ("y", "z"): 4}


def test_prompts_from_pasted_text_and_from_a_dataset_version(home, tiny_home, monkeypatch):
    pasted = campaigns.load_prompts(CampaignConfig(prompts="What is 2+2?\n\nName a colour."), home)
    assert pasted == [[{"role": "user", "content": "What is 2+2?"}], [{"role": "user", "content": "Name a colour."}]]
    from_version = campaigns.load_prompts(CampaignConfig(prompts="sample:sft", max_prompts=3), home)
    assert len(from_version) == 3 and all(p[-1]["role"] == "user" for p in from_version)


@pytest.mark.parametrize("cfg, message", [
    (CampaignConfig(sources="tiny", prompts="hi\nthere"), "two or more sources"),
    (CampaignConfig(votes_per_pair=0), "votes_per_pair must be at least 1"),
    (CampaignConfig(sources="tiny,tiny", prompts="hi\nthere"), "unique"),
    (CampaignConfig(sources="tiny,run:nope", prompts="hi\nthere"), "No run"),
])
def test_bad_campaigns_are_refused_with_the_reason(home, cfg, message):
    with pytest.raises(LabError, match=message):
        campaigns.create_campaign(cfg, home=home)
    assert not Store(home).query("SELECT * FROM campaigns")


def test_a_responses_file_without_a_prompt_column_is_named(home, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "q", "a": "x", "b": "y"}) + "\n")
    with pytest.raises(LabError, match="needs a 'prompt' column"):
        campaigns.create_campaign(CampaignConfig(responses_file=str(path), sources=""), home=home)


def test_a_responses_files_column_named_like_a_lab_model_is_refused(home, tmp_path):
    """Its answers would be counted as that model's in win rates and leaderboards."""
    for taken in ("tiny", "run:20261204-abcd", "tiny#2", "gold-a"):
        path = responses_file(tmp_path, 2, sources=("mine", taken))
        with pytest.raises(LabError, match=f"column {taken}, named like the lab's own"):
            campaigns.create_campaign(CampaignConfig(responses_file=path, sources=""), home=home)
    assert not Store(home).query("SELECT id FROM campaigns")
    assert campaigns.load_responses(responses_file(tmp_path, 2, sources=("tiny-llama", "my run")))[1].keys() == {
        "tiny-llama", "my run"}


def test_gold_pairs_are_checked_and_served(home, tmp_path):
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"prompt": "2+2?", "response_a": "4", "response_b": "5", "answer": "a"}) + "\n")
    campaign = file_campaign(home, tmp_path, n=2, votes=1, gold_file=str(gold))
    assert vote_all(campaign.id, "ann", home, rule=lambda left, right: "a" if left in ("4",) or "Thank" in left
                    else "b") == 3
    row = results.agreement(campaign.id, home=home)["per_labeler"][0]
    assert row["gold_votes"] == 1 and row["gold_accuracy"] == 1.0
    bad = tmp_path / "bad-gold.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "response_a": "x", "response_b": "y", "answer": "left"}) + "\n")
    with pytest.raises(LabError, match="answer must be a, b or tie"):
        file_campaign(home, tmp_path, n=2, gold_file=str(bad))


# --------------------------------------------------------------------------- serving and votes


def test_a_reload_shows_the_same_pair_and_the_page_never_learns_the_sources(home, tmp_path):
    campaign = file_campaign(home, tmp_path)
    first = serving.next_pair(campaign.id, "ann", home=home)
    again = serving.next_pair(campaign.id, "ann", home=home)
    assert first.token == again.token and first.left == again.left
    assert set(vars(first)) == {"token", "campaign_id", "prompt", "left", "right", "thumbs"}  # no source names


def test_a_labeler_never_gets_a_pair_twice_and_pairs_stop_at_their_votes(home, tmp_path):
    campaign = file_campaign(home, tmp_path, n=6, votes=2)
    assert vote_all(campaign.id, "ann", home) == 6
    assert vote_all(campaign.id, "ann", home) == 0  # nothing served twice
    assert vote_all(campaign.id, "bob", home) == 6
    assert vote_all(campaign.id, "cat", home) == 0  # every pair has its 2 votes
    per_pair = Store(home).query("SELECT pair_id, COUNT(*) AS n FROM votes GROUP BY pair_id")
    assert len(per_pair) == 6 and all(r["n"] == 2 for r in per_pair)


def test_double_votes_skips_and_foreign_tokens(home, tmp_path):
    campaign = file_campaign(home, tmp_path, n=3, votes=1)
    pair = serving.next_pair(campaign.id, "ann", home=home)
    with pytest.raises(LabError, match="another labeler"):
        serving.vote(pair.token, "bob", "a", home=home)
    assert serving.vote(pair.token, "ann", "tie", comment="same", home=home) is True
    assert serving.vote(pair.token, "ann", "a", home=home) is False  # a double click is not a second vote
    skipped = serving.next_pair(campaign.id, "ann", home=home)
    serving.skip(skipped.token, "ann", home=home)
    assert serving.next_pair(campaign.id, "ann", home=home).token != skipped.token
    assert serving.next_pair(campaign.id, "bob", home=home) is not None  # the skipped pair went back to others
    with pytest.raises(LabError, match="one of a, b, tie, both_bad"):
        serving.vote("x", "ann", "left", home=home)
    votes = Store(home).query("SELECT choice, comment FROM votes")
    assert votes == [{"choice": "tie", "comment": "same"}]


def test_a_skipped_pair_returns_last_so_two_labelers_finish_every_vote(home, tmp_path):
    """6 pairs × 2 votes with two labelers: a pair ann skipped comes back to her after her other pairs (it used to
    be gone for her for good, and the campaign stalled at 11 of 12 votes)."""
    campaign = file_campaign(home, tmp_path, n=6, votes=2)
    first = serving.next_pair(campaign.id, "ann", home=home)
    serving.skip(first.token, "ann", home=home)
    assert vote_all(campaign.id, "bob", home) == 6
    served = []
    while (pair := serving.next_pair(campaign.id, "ann", home=home)) is not None:
        served.append(pair.prompt)
        assert serving.vote(pair.token, "ann", "a", home=home)
    assert len(served) == 6 and served[-1] == first.prompt and first.prompt not in served[:-1]
    done = serving.progress(campaign.id, "ann", home=home)
    assert (done.votes, done.wanted, done.available) == (12, 12, 0)
    counts = campaigns.campaign_counts(home, campaign.id)[campaign.id]
    assert (counts.pairs, counts.ready, counts.votes, counts.wanted) == (6, 6, 12, 12)


def test_undo_appends_a_retraction_and_serves_the_pair_again(home, tmp_path):
    campaign = file_campaign(home, tmp_path, n=3, votes=1)
    with pytest.raises(LabError, match="Nothing to undo"):
        serving.undo(campaign.id, "ann", home=home)
    pair = serving.next_pair(campaign.id, "ann", home=home)
    assert serving.vote(pair.token, "ann", "a", home=home)
    looking_at = serving.next_pair(campaign.id, "ann", home=home)  # the next pair, leased: it goes back
    again = serving.undo(campaign.id, "ann", home=home)
    assert (again.prompt, again.left, again.right) == (pair.prompt, pair.left, pair.right)  # sides as they were
    assert serving.next_pair(campaign.id, "ann", home=home).token == again.token
    assert serving.progress(campaign.id, "ann", home=home).mine == 0
    assert results.campaign_votes(campaign.id, home) == []  # a retracted vote counts nowhere
    leases = Store(home).query("SELECT token FROM leases WHERE labeler = 'ann'")
    assert leases == [{"token": again.token}] and looking_at.token != again.token  # the pair looked at went back
    assert serving.vote(again.token, "ann", "b", home=home)
    assert serving.vote(again.token, "ann", "tie", home=home) is False  # a double click after the undo
    log = Store(home).query("SELECT choice FROM votes ORDER BY id")
    assert [v["choice"] for v in log] == ["a", "b"]  # the log keeps both: nothing updated or deleted
    assert len(Store(home).query("SELECT * FROM retractions")) == 1
    counted = results.campaign_votes(campaign.id, home)
    assert [v["choice"] for v in counted] == ["b"]
    assert results.agreement(campaign.id, home=home)["votes"] == 1
    assert campaigns.campaign_counts(home, campaign.id)[campaign.id].votes == 1
    campaigns.set_status(campaign.id, "closed", home=home)
    with pytest.raises(LabError, match="closed"):
        serving.undo(campaign.id, "ann", home=home)


def test_a_vote_undo_loop_is_cut_off_at_the_undo_limit(home, tmp_path, monkeypatch):
    """Every retracted vote stays in the log, so undos are limited per labeler and window; others are not held up."""
    monkeypatch.setattr(serving, "UNDO_LIMIT", 3)
    campaign = file_campaign(home, tmp_path, n=2, votes=2)
    token = serving.next_pair(campaign.id, "ann", home=home).token
    for _ in range(3):
        assert serving.vote(token, "ann", "a", home=home)
        token = serving.undo(campaign.id, "ann", home=home).token
    assert serving.vote(token, "ann", "a", home=home)
    with pytest.raises(LabError, match="undone 3 votes in the last 5 minutes"):
        serving.undo(campaign.id, "ann", home=home)
    assert serving.progress(campaign.id, "ann", home=home).mine == 1  # the last vote stands
    bob = serving.next_pair(campaign.id, "bob", home=home)
    assert serving.vote(bob.token, "bob", "b", home=home)
    serving.undo(campaign.id, "bob", home=home)
    with Store(home).write() as conn:
        conn.execute("UPDATE retractions SET created_at = '2000-01-01T00:00:00+00:00' WHERE labeler = 'ann'")
    serving.undo(campaign.id, "ann", home=home)  # the window has passed


def test_export_and_leaderboard_ignore_retracted_votes(home, tmp_path):
    campaign = file_campaign(home, tmp_path, n=4, votes=1)
    vote_all(campaign.id, "ann", home, rule=prefer_thanks)
    redo = serving.undo(campaign.id, "ann", home=home)  # the last vote, for 'tuned', becomes one for 'base'
    serving.vote(redo.token, "ann", "b" if "Thank you" in redo.left else "a", home=home)
    board = results.leaderboard(campaign.id, home=home)
    assert board["comparisons"] == 4 and board["win_rates"][board["models"].index("tuned")][
        board["models"].index("base")] == pytest.approx(3 / 4)
    version = results.export_preferences(campaign.id, name="labels-undo", home=home)
    from lab.data.versions import read_rows

    thanked = ["Thank you" in r["chosen"][0]["content"] for r in read_rows(version, "train", home)]
    assert sorted(thanked) == [False, True, True, True]  # the retracted vote's pair exported as re-voted
    # "Train DPO on this" after a reload: the campaign's newest export is found without the page that made it.
    assert results.latest_export(campaign.id, home) == version.ref
    newer = results.export_preferences(campaign.id, name="labels-undo-2", home=home)
    assert results.latest_export(campaign.id, home) == newer.ref and results.latest_export("none", home) is None


def test_state_text_follows_the_campaign(home, tmp_path):
    campaign = file_campaign(home, tmp_path, n=2, votes=1)
    counts = campaigns.campaign_counts(home)[campaign.id]
    assert campaigns.state_text(campaign, counts) == "open for labeling · 0/2 votes (0%)"
    vote_all(campaign.id, "ann", home)
    closed = campaigns.set_status(campaign.id, "closed", home=home)
    assert campaigns.state_text(closed, campaigns.campaign_counts(home)[campaign.id]) == \
        "closed: no pairs are served · 2/2 votes (100%)"
    generating = campaigns.Campaign(**{**vars(closed), "status": "generating", "generated": 1, "to_generate": 4})
    assert campaigns.state_text(generating).startswith("generating responses in the background: 1/4 done")


def test_sides_are_randomised(home, tmp_path):
    """400 pairs, one vote each: the source shown on the left is source_1 about half the time (binomial,
    sd 10; the bound is 4 sd) and the labeler's 'a' clicks follow the content, not the side."""
    campaign = file_campaign(home, tmp_path, n=400, votes=1)
    vote_all(campaign.id, "ann", home, rule=prefer_thanks)
    votes = Store(home).query("SELECT v.left_source, v.winner, v.choice, p.source_1 FROM votes v JOIN pairs p ON "
                              "p.id = v.pair_id")
    left_first = sum(v["left_source"] == v["source_1"] for v in votes)
    assert len(votes) == 400 and 160 <= left_first <= 240, left_first
    assert all(v["winner"] == "tuned" for v in votes)
    assert 160 <= sum(v["choice"] == "a" for v in votes) <= 240


def test_concurrent_labelers_lose_and_double_no_vote(home, tmp_path):
    campaign = file_campaign(home, tmp_path, n=60, votes=3)
    cast: Counter = Counter()
    errors: list[BaseException] = []

    def labeler(name: str) -> None:
        try:
            cast[name] = vote_all(campaign.id, name, home, rule=prefer_thanks)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=labeler, args=(f"l{i}",)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    rows = Store(home).query("SELECT pair_id, COUNT(*) AS n, COUNT(DISTINCT labeler) AS who FROM votes GROUP BY pair_id")
    assert sum(cast.values()) == 180 == sum(r["n"] for r in rows)  # every vote acknowledged is stored
    assert len(rows) == 60 and all(r["n"] == 3 == r["who"] for r in rows)  # none doubled, none over


# --------------------------------------------------------------------------- results


def test_agreement_leaderboard_and_export_follow_the_votes(home, tmp_path):
    campaign = file_campaign(home, tmp_path, n=8, votes=2)
    vote_all(campaign.id, "ann", home, rule=prefer_thanks)
    vote_all(campaign.id, "bob", home, rule=lambda left, right: prefer_thanks(left, right)
             if not left.startswith("14.") else "tie")  # prompt 7: 7 + 7
    report = results.agreement(campaign.id, home=home)
    assert report["votes"] == 16 and report["pairs_with_overlap"] == 8
    assert report["pairwise_agreement"] == pytest.approx(7 / 8)
    assert report["cohen_kappa"] is not None and {r["labeler"] for r in report["per_labeler"]} == {"ann", "bob"}
    board = results.leaderboard(campaign.id, home=home)
    assert [r["source"] for r in board["ratings"]] == ["tuned", "base"]
    assert board["win_rates"][board["models"].index("tuned")][board["models"].index("base")] == pytest.approx(15.5 / 16)
    version = results.export_preferences(campaign.id, name="labels-test", home=home)
    assert version.kind == "preference" and version.rows["train"] == 7
    assert version.card["counts"] == {"exported": 7, "no majority": 1} and version.card["labelers"] == ["ann", "bob"]
    from lab.data.versions import read_rows

    row = read_rows(version, "train", home)[0]
    assert "Thank you" in row["chosen"][0]["content"] and "Thank you" not in row["rejected"][0]["content"]
    strict = results.export_preferences(campaign.id, name="labels-strict", min_votes=2, home=home)
    assert strict.rows["train"] == 7
    with pytest.raises(LabError, match="no pair with a clear preference"):
        results.export_preferences(file_campaign(home, tmp_path, n=2).id, home=home)


# --------------------------------------------------------------------------- accounts


def test_accounts_hash_passwords_and_roles_decide(home):
    assert accounts.identify(None, sign_in=False, home=home).is_admin  # local mode
    accounts.add_account("boss", "admin", "admin password", home=home)  # the first account is an admin
    accounts.add_account("ann", "labeler", "correct horse", home=home)
    stored = Store(home).query("SELECT password_hash FROM accounts WHERE name = 'ann'")[0]["password_hash"]
    assert "correct horse" not in stored and stored.startswith("pbkdf2_sha256$")
    assert accounts.verify("ann", "correct horse", home=home) and not accounts.verify("ann", "wrong one", home=home)
    ann = accounts.identify("ann", sign_in=True, home=home)
    with pytest.raises(LabError, match="only an admin"):
        accounts.require_admin(ann)
    with pytest.raises(LabError, match="Sign in first"):
        accounts.identify("mallory", sign_in=True, home=home)
    with pytest.raises(LabError, match="at least 8"):
        accounts.add_account("bob", "labeler", "short", home=home)
    with pytest.raises(LabError, match="exists already"):
        accounts.add_account("ann", "admin", "another password", home=home)


# --------------------------------------------------------------------------- generation, CLI, W&B


def lab_cli(home, *args, env=None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "LAB_HOME": str(home.root), "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, env=full_env,
                          cwd=ROOT, timeout=300)


def test_cli_generates_responses_with_two_models_then_exports(home, tmp_path):
    from lab.models import tiny_model_path

    tiny = str(tiny_model_path(home))
    created = lab_cli(home, "label", "create", "--name", "gen", "--prompts", "What is 2+2?\nName a colour.\nSay hi.",
                      "--sources", f"tiny,{tiny}", "--max-new-tokens", "12", "--wait", "--json")
    assert created.returncode == 0, created.stderr
    campaign = json.loads(created.stdout)
    assert campaign["status"] == "open" and campaign["generated"] == 6 == campaign["to_generate"]
    texts = Store(home).query("SELECT COUNT(*) AS n FROM responses WHERE campaign_id = ?", (campaign["id"],))
    assert texts[0]["n"] == 6
    vote_all(campaign["id"], "ann", home, rule=lambda left, right: "a")
    status = json.loads(lab_cli(home, "label", "status", "gen", "--json").stdout)
    assert status["votes"] == 3 and status["agreement"]["per_labeler"][0]["labeler"] == "ann"
    board = json.loads(lab_cli(home, "label", "leaderboard", campaign["id"], "--json").stdout)
    assert {r["source"] for r in board["ratings"]} == {"tiny", tiny}
    exported = lab_cli(home, "label", "export", campaign["id"], "--json")
    assert exported.returncode == 0 and json.loads(exported.stdout)["rows"]["train"] == 3
    assert lab_cli(home, "label", "close", campaign["id"]).returncode == 0
    assert serving.next_pair(campaign["id"], "bob", home=home) is None  # closed: nothing served


def test_a_failing_source_fails_the_campaign_with_the_reason(home):
    campaign = campaigns.create_campaign(CampaignConfig(prompts="hi\nthere", sources="tiny,/no/such/model"),
                                         home=home)
    import time

    deadline = time.time() + 120
    while campaigns.get_campaign(campaign.id, home).status == "generating" and time.time() < deadline:
        time.sleep(0.5)
    failed = campaigns.get_campaign(campaign.id, home)
    assert failed.status == "failed" and "/no/such/model" in failed.error and "resume" in failed.error
    kept = Store(home).query("SELECT DISTINCT source FROM responses WHERE campaign_id = ?", (campaign.id,))
    assert kept == [{"source": "tiny"}]  # the first source's responses are kept


def test_a_generation_that_finishes_before_its_launch_is_recorded_stays_open(home, monkeypatch):
    """The worker may write its outcome before the launcher writes the pid; that outcome must stand."""
    def finished_at_once(module, argument, log, lab_home):  # the real worker, run to its end first
        env = {**os.environ, "LAB_HOME": str(lab_home.root), "PYTHONPATH": str(ROOT)}
        process = subprocess.Popen([sys.executable, "-m", module, argument], env=env, cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert process.wait(timeout=300) == 0
        return process.pid

    monkeypatch.setattr(campaigns, "launch_worker", finished_at_once)
    campaign = campaigns.create_campaign(CampaignConfig(prompts="hi\nthere", sources="tiny,tiny#2",
                                                        max_new_tokens=8), home=home)
    campaigns.reconcile(home)
    done = campaigns.get_campaign(campaign.id, home)
    assert done.status == "open" and done.error is None, (done.status, done.error)

    busy = subprocess.Popen(["sleep", "60"])  # stands for a worker still generating
    monkeypatch.setattr(campaigns, "launch_worker", lambda *args: busy.pid)
    try:
        assert campaigns.set_status(campaign.id, "generating", home=home).pid == busy.pid
        with pytest.raises(LabError, match="already generating"):
            campaigns.set_status(campaign.id, "generating", home=home)  # not a second worker beside it
    finally:
        busy.kill()
        busy.wait()


def test_cli_accounts_read_the_password_from_the_environment(home):
    assert lab_cli(home, "label", "user", "add", "boss", "--role", "admin", "--password-env", "PW",
                   env={"PW": "admin password"}).returncode == 0
    added = lab_cli(home, "label", "user", "add", "ann", "--password-env", "ANN_PW", "--json",
                    env={"ANN_PW": "labeler password"})
    assert added.returncode == 0, added.stderr
    listed = json.loads(lab_cli(home, "label", "user", "list", "--json").stdout)
    assert [(a["name"], a["role"]) for a in listed] == [("boss", "admin"), ("ann", "labeler")]
    assert accounts.verify("ann", "labeler password", home=home)


def test_wandb_log_is_written_offline(home, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    campaign = file_campaign(home, tmp_path, n=3, votes=1)
    vote_all(campaign.id, "ann", home, rule=prefer_thanks)
    from lab.label.report import log_to_wandb

    result = log_to_wandb(campaign.id, home=home)
    assert result["url"] is None and Path(result["offline_dir"]).is_dir()
    assert any(Path(result["offline_dir"]).glob("*.wandb"))


def test_a_tagged_source_is_the_same_model_with_its_own_random_stream():
    assert campaigns.model_of("run:abc#2") == "run:abc" and campaigns.model_of("tiny") == "tiny"
    assert campaigns.sample_seed("tiny", 7) == campaigns.sample_seed("run:abc", 7) == 7  # distinct models: one stream
    assert campaigns.sample_seed("tiny#2", 7) != 7 != campaigns.sample_seed("tiny#3", 7)
