"""The preference flywheel on the tiny model, two rounds of it: SFT → round 1 → export → DPO (round 1's model)
→ round 2, made by ``rounds.next_round`` (that model against round 1's winner, SFT, on fresh prompts) → export →
DPO again from round 1's model (round 2's model) → round 3, also ``next_round``, which measures round 2's model
against round 1's on prompts neither round asked.

Three simulated labelers (``lab.label.simulate``) follow a known, learnable rule applied to the generated text
(prefer an answer of at most five words; 10% of their votes are random clicks); one of them votes against the rule
(an unreliable labeler), and the reliability table must flag them. Each pair wants two votes, and a split pair a
third (``extra_votes``); the exports drop the flagged labeler's votes. Nothing is staged: every response is
sampled by the campaigns' generation processes, every vote goes through the serving engine with its hidden,
shuffled sides, and the exported majorities are what DPO trains on: round 2's DPO on both rounds' pairs (the export
``earlier_rounds``), as a flywheel accumulates its data.

The built-in tiny model starts from random weights, so its own answers are noise; round 1 therefore asks base,
SFT and a second SFT sample (``run:<id>#2``), and the SFT-versus-SFT pairs carry the rule; the next rounds draw
two samples of each model likewise. Prompts come from the SFT sample's train split: 170 in round 1, 60 fresh ones in
round 2 and the 117 left in round 3 (``next_round`` holds out every prompt an earlier round asked).
"""

from __future__ import annotations

import time

import pytest

from lab.config import CampaignConfig, load_yaml
from lab.label import campaigns, reliability, results, rounds
from lab.label.simulate import Labeler, label
from lab.store import Store
from lab.train import runner

pytestmark = pytest.mark.timeout(1500)  # three generations and three trainings share the first test's setup

RULE_WORDS = 5
NOISE = 0.1
# Prompts of the 347 in the SFT sample's train split: round 1's, round 2's, and round 3 takes all that are left
# (117): the last round measures a smaller gain (the rule saturates), so it gets the most pairs.
FIRST_PROMPTS, SECOND_PROMPTS = 170, 60


def rule(text: str) -> bool:
    return 0 < len(text.split()) <= RULE_WORDS


def score(text: str) -> float:
    # The rule alone: a tie-break toward shorter answers made round 2's DPO chase ever shorter answers into garbage.
    return float(rule(text))


def labelers(seed: int) -> list[Labeler]:
    """Two honest labelers and one who votes against the rule, all with 10% random clicks."""
    return [Labeler("sim-ann", score, NOISE, seed), Labeler("sim-bob", score, NOISE, seed + 1),
            Labeler("sim-eve", score, NOISE, seed + 2, flip=True)]


def run(recipe: str, home, *overrides: str) -> runner.Run:
    cfg = load_yaml(f"recipes/{recipe}", overrides=["report_to=none", "eval_split=none", "save_steps=0",
                                                    "sample_prompts=0", *overrides])
    done = runner.wait(runner.create_run(cfg, home=home)[0].id, home)
    assert done.status == "succeeded", done.error
    return done


def opened(campaign: campaigns.Campaign, home) -> campaigns.Campaign:
    deadline = time.time() + 1200  # a bound for a stuck worker, not a speed test (a busy CI machine is slow)
    while campaigns.get_campaign(campaign.id, home).status == "generating" and time.time() < deadline:
        time.sleep(1)
    done = campaigns.get_campaign(campaign.id, home)
    assert done.status == "open", done.error
    return done


def labelled_and_trained(campaign: campaigns.Campaign, home, seed: int, base: str) -> runner.Run:
    """The simulated labelers vote the round through; its export with the earlier rounds' pairs (flagged labelers
    dropped) trains DPO on ``base``."""
    label(campaign.id, labelers(seed), home=home)
    export = results.export_preferences(campaign.id, name=f"flywheel-r{campaign.round}", drop_unreliable=True,
                                        earlier_rounds=True, home=home)
    assert export.rows["train"] >= 60, export.card["counts"]
    rounds = export.card["rounds"]
    assert [r["round"] for r in rounds] == list(range(1, campaign.round + 1)), rounds
    assert sum(r["rows"] for r in rounds) == export.rows["train"] and all(r["rows"] > 0 for r in rounds), rounds
    return run("tiny-dpo.yaml", home, f"model={base}", f"dataset={export.ref}", "epochs=2", "batch_size=4",
               "max_length=128", "max_prompt_length=64")


def rule_rates(campaign_id: str, home) -> dict[str, float]:
    """Per model, the share of its answers in the campaign that meet the rule."""
    texts = Store(home).query("SELECT source, text FROM responses WHERE campaign_id = ?", (campaign_id,))
    models = {campaigns.model_of(t["source"]) for t in texts}
    return {m: round(sum(rule(t["text"]) for t in texts if campaigns.model_of(t["source"]) == m)
                     / sum(campaigns.model_of(t["source"]) == m for t in texts), 3) for m in models}


@pytest.fixture(scope="module")
def flywheel(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from lab.home import lab_home

    home = lab_home(tmp_path_factory.mktemp("flywheel") / "lab_home")
    sft = run("tiny-sft.yaml", home)
    first = opened(campaigns.create_campaign(CampaignConfig(
        name="flywheel", prompts="sample:sft", prompts_split="train", max_prompts=FIRST_PROMPTS,
        sources=f"tiny,run:{sft.id},run:{sft.id}#2", temperature=1.0, top_p=1.0, max_new_tokens=40, seed=1,
        votes_per_pair=2), home=home), home)
    dpo_1 = labelled_and_trained(first, home, seed=10, base=f"run:{sft.id}")
    second = opened(rounds.next_round(first.id, max_prompts=SECOND_PROMPTS, home=home), home)
    dpo_2 = labelled_and_trained(second, home, seed=20, base=f"run:{dpo_1.id}")
    third = opened(rounds.next_round(second.id, max_prompts=0, home=home), home)
    label(third.id, labelers(30), home=home)
    chain = rounds.chain(third.id, home=home)
    for entry in chain:
        print(f"round {entry['round']}: {' vs '.join(entry['contenders']) or '-'} {entry['head_to_head']} "
              f"κ {entry['kappa']}; rule met: {rule_rates(entry['id'], home)}")
    return {"home": home, "sft": sft, "dpo": [dpo_1, dpo_2], "rounds": [first, second, third], "chain": chain}


def test_next_round_measures_each_new_model_against_the_last_winner(flywheel):
    sft, (dpo_1, dpo_2) = flywheel["sft"], flywheel["dpo"]
    first, second, third = flywheel["chain"]
    assert [e["round"] for e in flywheel["chain"]] == [1, 2, 3]
    assert [r["id"] for r in first["runs"]] == [dpo_1.id] and [r["id"] for r in second["runs"]] == [dpo_2.id]
    # the newest run on the last round's export, against that round's best model (#2 samples are the same model)
    assert second["contenders"] == [f"run:{dpo_1.id}", f"run:{sft.id}"]
    assert third["contenders"] == [f"run:{dpo_2.id}", f"run:{dpo_1.id}"]


def test_round_two_model_beats_round_one_model_on_fresh_prompts(flywheel):
    """Round 1's model against SFT is measured in round 2, round 2's model against round 1's in round 3, each on
    prompts no earlier round asked, on the pairs people decided (not tied: most pairs tie once both models meet the
    rule). Round 2's model beats round 1's with its Wilson 95% interval above 50%: the stated margin.

    Round 2's DPO trains on both rounds' pairs (``earlier_rounds``). Trained on round 2's 60 prompts alone, it did
    not beat round 1's model reliably: six runs of 2026-12-04 gave 0.34 to 0.88 of the decided pairs. On both
    rounds' pairs, five runs gave 0.83 to 0.92 (the interval's lower bound 0.76 at the lowest), and round 2's model
    met the rule in 94-98% of its answers against round 1's 54-76% (docs/benchmarks.md)."""
    _, second, third = flywheel["chain"]
    beat_sft, beat_last = second["head_to_head"], third["head_to_head"]
    assert beat_sft["n"] >= 100 and beat_last["n"] >= 100, (beat_sft, beat_last)
    assert beat_sft["decided_rate"] > 0.5, beat_sft
    assert beat_last["decided_low"] > 0.5, (beat_sft, beat_last)


def rule_decided_share(campaign_id: str, home) -> float:
    """The share of a campaign's pairs whose two answers differ on the rule: the only pairs on which a labeler who
    votes against the rule disagrees with the others (on the rest all three tie, bar random clicks)."""
    store = Store(home)
    text = {(r["prompt_idx"], r["source"]): r["text"]
            for r in store.query("SELECT prompt_idx, source, text FROM responses WHERE campaign_id = ?", (campaign_id,))}
    pairs = store.query("SELECT prompt_idx, source_1, source_2 FROM pairs WHERE campaign_id = ? AND gold IS NULL",
                        (campaign_id,))
    return sum(rule(text[p["prompt_idx"], p["source_1"]]) != rule(text[p["prompt_idx"], p["source_2"]])
               for p in pairs) / len(pairs)


def test_the_unreliable_labeler_is_flagged(flywheel, monkeypatch):
    """sim-eve, who votes against the rule, is flagged wherever the rule decides enough pairs to tell, and there
    agrees with the others less than the honest labelers do; the honest labelers are never flagged.

    Rounds 1 and 2 set base and SFT against trained models, so the rule decides many pairs. Round 3 sets round 2's
    model (meeting the rule in 94-98% of its answers) against round 1's: when round 1's model meets it often too,
    most pairs are ties for everybody, sim-eve included, and she passes most checks. CI's machine once drew such a
    round 3 (nobody flagged, rightly: nothing told her apart). With a share ``d`` of pairs decided by the rule she
    passes about 0.9 - 0.8 d of her checks, so from d = 1/3 (about 63%, on hundreds of checks) the flag must come.

    The flag measured here is the checks'; the position-bias flag is left out: serving draws each pair's sides at
    random, so by design it flags an honest labeler in about one campaign of a hundred, and these three rounds with
    two honest labelers once drew it (sim-ann, the right answer on the left in 66% of 104 decided votes; a full
    suite of the sixteenth session). ``tests/test_reliability.py`` tests that flag with seeded votes."""
    monkeypatch.setattr(reliability, "SIDE_P", 0.0)  # no p-value is below 0
    for campaign in flywheel["rounds"]:
        table = {r["labeler"]: r for r in reliability.labelers(campaign.id, home=flywheel["home"])}
        decided = rule_decided_share(campaign.id, flywheel["home"])
        flagged = {name for name, row in table.items() if row["flagged"]}
        why = (campaign.round, round(decided, 3), {name: row["why"] for name, row in table.items()})
        assert flagged <= {"sim-eve"}, why
        # Where the rule decides few pairs, her ~0.8 d lower agreement is within the 10% random clicks' noise (a
        # round 3 with d = 0.04 once had her at 81% between the honest labelers' 80% and 84%).
        if campaign.round < 3 or decided >= 1 / 3:
            assert flagged == {"sim-eve"}, why
            assert all(table["sim-eve"]["majority_agreement"] < table[honest]["majority_agreement"]
                       for honest in ("sim-ann", "sim-bob")), why


def test_the_chain_report_shows_every_round(flywheel):
    home, third = flywheel["home"], flywheel["rounds"][2]
    md = rounds.report(third.id, "md", home=home)
    assert all(f"## Round {n}: " in md for n in (1, 2, 3)) and "flywheel-r2" in md
