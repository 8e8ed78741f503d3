"""Rounds of the preference flywheel on a real store: the next round (the run trained on a round's export
against its winner, on held-out prompts, with its settings), its refusals, the chain of rounds, the
head-to-head with its interval, the Markdown/HTML report, the W&B log and the CLI.

One module fixture holds a first round of ready responses, voted and exported, and one short real DPO run on
that export (the tiny model): the challenger that ``next_round`` must find."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.config import CampaignConfig, load_yaml
from lab.errors import LabError
from lab.home import Home, lab_home
from lab.label import campaigns, results, rounds, serving, stats
from lab.store import Store
from lab.train import runner

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [f"Question number {i}: what is {i} + {i}?" for i in range(8)]
SETTINGS = {"votes_per_pair": 2, "max_new_tokens": 6, "temperature": 0.9, "guidelines": "Prefer *thanks*.",
            "rubric": "A thank-you is worth it.", "graded": True, "aspects": "helpful,polite", "serving": "active",
            "extra_votes": 0, "max_prompts": 2}


def responses_file(folder: Path, prompts: list[str], name: str = "responses.jsonl") -> str:
    """Ready responses: 'tuned' always thanks, 'base' never."""
    path = folder / name
    path.write_text("".join(json.dumps({"prompt": p, "base": f"{i}.", "tuned": f"{i}. Thank you for asking!"}) + "\n"
                            for i, p in enumerate(prompts)))
    return str(path)


def vote_all(campaign_id: str, labeler: str, home: Home, rule) -> None:
    while (pair := serving.next_pair(campaign_id, labeler, home=home)) is not None:
        assert serving.vote(pair.token, labeler, rule(pair.left, pair.right), home=home)


def prefer_thanks(left: str, right: str) -> str:
    return "a" if "Thank you" in left else "b" if "Thank you" in right else "tie"


def wait_open(campaign_id: str, home: Home) -> campaigns.Campaign:
    deadline = time.time() + 300
    while (campaign := campaigns.get_campaign(campaign_id, home)).status == "generating" and time.time() < deadline:
        time.sleep(0.5)
    assert campaign.status == "open", campaign.error
    return campaign


def lab_cli(home: Home, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAB_HOME": str(home.root)}
    return subprocess.run([sys.executable, "-m", "lab", *args], check=False, capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Round 1 (ready responses, voted by one labeler, exported) and a short real DPO run on its export."""
    folder = tmp_path_factory.mktemp("rounds")
    home = lab_home(folder / "lab_home")
    one = campaigns.create_campaign(CampaignConfig(name="thanks", sources="", responses_file=responses_file(
        folder, PROMPTS[:4]), **SETTINGS), home=home)
    vote_all(one.id, "ann", home, prefer_thanks)
    export = results.export_preferences(one.id, home=home)
    cfg = load_yaml("recipes/tiny-dpo.yaml", overrides=[
        "report_to=none", "eval_split=none", "save_steps=0", "sample_prompts=0", f"dataset={export.ref}",
        "batch_size=2", "max_steps=2", "max_length=64", "max_prompt_length=32"])
    run = runner.wait(runner.create_run(cfg, home=home)[0].id, home)
    assert run.status == "succeeded", run.error
    return {"home": home, "folder": folder, "campaign": one, "export": export, "run": run}


@pytest.fixture(scope="module")
def second(first: dict) -> campaigns.Campaign:
    """Round 2, made by next_round: the DPO run against tiny, on pasted prompts that repeat two of round 1's."""
    home = first["home"]
    pasted = "\n".join([PROMPTS[0], PROMPTS[4], PROMPTS[1], PROMPTS[5], PROMPTS[6]])
    made = wait_open(rounds.next_round(first["campaign"].id, incumbent="tiny", prompts=pasted, home=home).id, home)
    for labeler in ("ann", "bob"):  # whatever they pick: the chain reports it as head_to_head counts it
        vote_all(made.id, labeler, home, lambda left, right: "a")
    return made


def test_next_round_puts_the_trained_run_against_the_incumbent_on_fresh_prompts(first, second):
    home, one, run = first["home"], first["campaign"], first["run"]
    assert (second.round, second.previous_id, second.name) == (2, one.id, "thanks-r2")
    assert second.model_sources == [f"run:{run.id}", "tiny"]  # challenger first, one sample each as round 1 drew
    cfg = second.config
    assert {k: cfg[k] for k in SETTINGS} == SETTINGS and cfg["previous"] == one.id and cfg["responses_file"] == ""
    asked = [json.loads(r["prompt"])[0]["content"] for r in Store(home).query(
        "SELECT prompt FROM campaign_prompts WHERE campaign_id = ? ORDER BY idx", (second.id,))]
    assert asked == [PROMPTS[4], PROMPTS[5]]  # round 1's prompts held out, then max_prompts (2) carried


def test_a_round_needs_a_trained_run_an_incumbent_and_fresh_prompts(first, second, tmp_path):
    home = first["home"]
    lone = campaigns.create_campaign(CampaignConfig(name="lone", sources="", responses_file=responses_file(
        tmp_path, PROMPTS[:2], "lone.jsonl"), votes_per_pair=1), home=home)
    with pytest.raises(LabError, match="export this round and train DPO/KTO on it first"):
        rounds.next_round(lone.id, incumbent="tiny", home=home)
    with pytest.raises(LabError, match="--incumbent"):  # ready responses only: no model to measure against
        rounds.next_round(first["campaign"].id, home=home)
    with pytest.raises(LabError, match="same model"):
        rounds.next_round(second.id, challenger="tiny", incumbent="tiny#2", home=home)
    with pytest.raises(LabError, match="used by an earlier round"):  # round 1's and round 2's prompts only
        rounds.next_round(second.id, challenger="tiny", incumbent=f"run:{first['run'].id}",
                          prompts="\n".join([PROMPTS[0], PROMPTS[5]]), home=home)


def test_head_to_head_decides_each_pair_by_its_majority_and_counts_ties_half(first, tmp_path):
    home = first["home"]
    made = campaigns.create_campaign(CampaignConfig(name="duel", sources="", responses_file=responses_file(
        tmp_path, PROMPTS[:5], "duel.jsonl"), votes_per_pair=2, extra_votes=0), home=home)
    assert rounds.head_to_head(made.id, "tuned", "base", home=home)["n"] == 0  # no votes yet: no rate
    against = {"a": "b", "b": "a", "tie": "tie"}
    # by prompt: 0 and 1 both prefer tuned (wins), 2 split (tie), 3 both say both bad (tie), 4 both prefer base
    plans = {"ann": {0: "thanks", 1: "thanks", 2: "thanks", 3: "both_bad", 4: "against"},
             "bob": {0: "thanks", 1: "thanks", 2: "tie", 3: "both_bad", 4: "against"}}
    for labeler, plan in plans.items():
        def rule(left: str, right: str, plan=plan) -> str:
            how = plan[int(left.split(".")[0])]
            thanks = prefer_thanks(left, right)
            return {"thanks": thanks, "against": against[thanks]}.get(how, how)
        vote_all(made.id, labeler, home, rule)
    h2h = rounds.head_to_head(made.id, "tuned#2", "base", home=home)  # a tag names the same model
    low, high = stats.wilson_interval(2 + 2 / 2, 5)
    decided_low, decided_high = stats.wilson_interval(2, 3)
    assert h2h == {"wins": 2, "losses": 1, "ties": 2, "n": 5, "rate": 0.6, "low": round(low, 4),
                   "high": round(high, 4), "decided_rate": round(2 / 3, 4), "decided_low": round(decided_low, 4),
                   "decided_high": round(decided_high, 4), "dropped": []}  # too few checks to flag anyone
    assert rounds.head_to_head(made.id, "base", "tuned", home=home)["rate"] == 0.4  # the other side of the pairs
    assert rounds.head_to_head(made.id, "tuned", "tiny", home=home)["n"] == 0  # no such pairs


def test_chain_follows_the_rounds_both_ways_and_the_report_shows_them(first, second):
    home, run, export = first["home"], first["run"], first["export"]
    entries = rounds.chain(first["campaign"].id, home=home)
    assert rounds.chain(second.id, home=home) == entries
    one, two = entries
    assert [e["round"] for e in entries] == [1, 2] and one["id"] == first["campaign"].id and two["id"] == second.id
    assert one["exports"] == [{"ref": export.ref, "kind": "preference", "rows": 4}]
    assert [(r["id"], r["objective"], r["status"], r["scores"]) for r in one["runs"]] == [
        (run.id, "dpo", "succeeded", {})]  # no eval of it: no scores shown
    assert one["leader"] == "tuned" and one["votes"] == 4 and one["head_to_head"] is None
    assert two["contenders"] == [f"run:{run.id}", "tiny"] and two["contender_names"] == [run.name, "tiny"]
    assert two["head_to_head"] == rounds.head_to_head(second.id, f"run:{run.id}", "tiny", home=home)
    assert two["head_to_head"]["n"] == 2 and two["votes"] == 4

    md = rounds.report(second.id, "md", home=home)
    assert md.startswith("# Preference rounds: thanks") and "| Round | Campaign |" in md
    assert "## Round 2: thanks-r2" in md and f"{run.name} vs tiny" in md and export.ref in md
    page = rounds.report(second.id, "html", home=home)
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page and "thanks-r2" in page
    assert "src=" not in page and "href=" not in page  # self-contained: nothing to fetch
    with pytest.raises(LabError, match="md or html"):
        rounds.report(second.id, "pdf", home=home)


def test_wandb_log_carries_the_chain(first, second, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    from lab.label.report import log_to_wandb

    result = log_to_wandb(second.id, home=first["home"])

    def logged() -> bytes:
        return b"".join(p.read_bytes() for p in Path(result["offline_dir"]).rglob("*") if p.is_file())

    # wandb's service process writes the offline files; on a busy machine the last records can land a moment
    # after finish() returns (this failed once in a full-suite run and passed alone)
    deadline = time.time() + 20
    while not (b"win_rate/round_2" in logged() and b"Challenger vs incumbent" in logged()) and time.time() < deadline:
        time.sleep(0.5)
    assert b"win_rate/round_2" in logged() and b"Challenger vs incumbent" in logged()


def test_cli_next_round_chain_and_report(first, second):
    home, run = first["home"], first["run"]
    refused = lab_cli(home, "label", "next-round", first["campaign"].id)
    assert refused.returncode == 1 and "--incumbent" in refused.stderr
    made = lab_cli(home, "label", "next-round", second.id, "--challenger", "tiny", "--incumbent", f"run:{run.id}",
                   "--prompts", PROMPTS[7], "--wait", "--json")
    assert made.returncode == 0, made.stderr
    third = json.loads(made.stdout)
    assert third["round"] == 3 and third["name"] == "thanks-r3" and third["status"] == "open"
    chain = json.loads(lab_cli(home, "label", "chain", "thanks", "--json").stdout)
    assert [e["name"] for e in chain] == ["thanks", "thanks-r2", "thanks-r3"]
    shown = lab_cli(home, "label", "chain", third["id"])
    assert shown.returncode == 0 and "Win rate [95% CI]:" in shown.stdout
    out = first["folder"] / "chain.html"
    written = lab_cli(home, "label", "report", third["id"], "--format", "html", "--out", str(out))
    assert written.returncode == 0 and "thanks-r3" in out.read_text()


def test_an_export_with_earlier_rounds_carries_every_round_s_pairs_so_far(first, second):
    from lab.data.versions import read_rows

    home = first["home"]
    alone = results.export_preferences(first["campaign"].id, name="r1-alone", home=home)
    made = lab_cli(home, "label", "export", second.id, "--earlier-rounds", "--name", "r1-and-r2", "--json")
    assert made.returncode == 0, made.stderr
    both = json.loads(made.stdout)
    rounds_ = both["card"]["rounds"]
    assert [(r["round"], r["id"]) for r in rounds_] == [(1, first["campaign"].id), (2, second.id)]
    assert rounds_[0]["rows"] == alone.rows["train"] > 0
    assert sum(r["rows"] for r in rounds_) == both["rows"]["train"]
    assert f"Rounds: thanks {alone.rows['train']} rows, thanks-r2 {rounds_[1]['rows']} rows." in \
        both["card"]["rule"]["text"]
    # round 1's pairs are exactly those its own export has, and each row says which round it came from
    lines = {r["line"]: r["source"] for r in read_rows(both["ref"], home=home)}
    ones = {r["line"] for r in read_rows(alone.ref, home=home)}
    assert ones <= set(lines) and {lines[n] for n in ones} == {f"campaign:{first['campaign'].id}"}
    assert {lines[n] for n in set(lines) - ones} <= {f"campaign:{second.id}"}
    # without it, round 2's pairs only; unpaired exports do not take earlier rounds
    if rounds_[1]["rows"]:
        assert "rounds" not in results.export_preferences(second.id, name="r2-alone", home=home).card
    else:  # round 2's two labelers split every pair: alone it has nothing to export
        with pytest.raises(LabError, match="has no pair with a clear preference"):
            results.export_preferences(second.id, name="r2-alone", home=home)
    refused = lab_cli(home, "label", "export", second.id, "--earlier-rounds", "--kind", "unpaired")
    assert refused.returncode == 1 and "preference pairs only" in refused.stderr
