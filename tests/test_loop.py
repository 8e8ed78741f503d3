"""The lab's whole promise in one test, on the tiny model: SFT → a blind labeling campaign → export → DPO →
a fresh blind round in which the DPO model's answers win.

The simulated labelers follow a known, learnable rule applied to the generated text (prefer an answer of at
most five words; 10% of votes are random), and nothing is staged: every response is sampled from the models
by the campaign's generation process, every vote goes through the serving engine with its hidden, shuffled
sides, and the exported majority is what DPO trains on.

The built-in tiny model starts from random weights, so its own answers are noise; the first round therefore
asks base, SFT and a second SFT sample (``run:<id>#2``, as RLHF data collection draws two samples from the
policy) and the SFT-versus-SFT pairs carry the rule. The second round is DPO against SFT, two samples of each,
on the validation prompts, which neither SFT nor DPO trained on; only DPO-versus-SFT pairs are counted.
"""

from __future__ import annotations

import math
import random
import time

from lab.config import CampaignConfig, load_yaml
from lab.label import campaigns, results, serving
from lab.store import Store
from lab.train import runner

RULE_WORDS = 5
NOISE = 0.1


def rule(text: str) -> bool:
    return 0 < len(text.split()) <= RULE_WORDS


def binomial_tail(wins: int, n: int) -> float:
    """P(at least ``wins`` of ``n``) for a fair coin: how often DPO would win this often if it were no better."""
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2 ** n


def run(recipe: str, home, *overrides: str) -> runner.Run:
    cfg = load_yaml(f"recipes/{recipe}", overrides=["report_to=none", "eval_split=none", "save_steps=0",
                                                    "sample_prompts=0", *overrides])
    done = runner.wait(runner.create_run(cfg, home=home)[0].id, home)
    assert done.status == "succeeded", done.error
    return done


def campaign(home, name: str, sources: str, split: str, max_prompts: int, seed: int) -> campaigns.Campaign:
    created = campaigns.create_campaign(CampaignConfig(
        name=name, prompts="sample:sft", prompts_split=split, max_prompts=max_prompts, sources=sources,
        temperature=1.0, top_p=1.0, max_new_tokens=40, seed=seed, votes_per_pair=1), home=home)
    deadline = time.time() + 600
    while campaigns.get_campaign(created.id, home).status == "generating" and time.time() < deadline:
        time.sleep(1)
    done = campaigns.get_campaign(created.id, home)
    assert done.status == "open", done.error
    return done


def simulated_labeler(home, campaign_id: str, name: str, rng: random.Random) -> None:
    while (pair := serving.next_pair(campaign_id, name, home=home)) is not None:
        left, right = rule(pair.left), rule(pair.right)
        choice = "a" if left and not right else "b" if right and not left else "tie"
        if rng.random() < NOISE:
            choice = rng.choice(["a", "b"])
        serving.vote(pair.token, name, choice, home=home)


def test_sft_then_human_preferences_then_dpo_wins_a_fresh_blind_round(home):
    sft = run("tiny-sft.yaml", home)

    first = campaign(home, "round-1", f"tiny,run:{sft.id},run:{sft.id}#2", "train", 300, seed=1)
    simulated_labeler(home, first.id, "sim-1", random.Random(1))
    export = results.export_preferences(first.id, name="loop-prefs", home=home)
    assert export.rows["train"] >= 200, export.card["counts"]

    dpo = run("tiny-dpo.yaml", home, f"model=run:{sft.id}", f"dataset={export.ref}", "epochs=2", "batch_size=4",
              "max_length=128", "max_prompt_length=64")

    policy, reference = f"run:{dpo.id}", f"run:{sft.id}"
    second = campaign(home, "round-2", f"{reference},{policy},{reference}#2,{policy}#2", "validation", 0, seed=2)
    simulated_labeler(home, second.id, "sim-2", random.Random(2))
    votes = [v for v in results.campaign_votes(second.id, home)
             if campaigns.model_of(v["source_1"]) != campaigns.model_of(v["source_2"])]  # DPO versus SFT only
    decided = [v for v in votes if v["winner"] is not None]
    dpo_wins = sum(campaigns.model_of(v["winner"]) == policy for v in decided)
    texts = Store(home).query("SELECT source, text FROM responses WHERE campaign_id = ?", (second.id,))
    rate = {model: sum(rule(t["text"]) for t in texts if campaigns.model_of(t["source"]) == model)
            / sum(campaigns.model_of(t["source"]) == model for t in texts) for model in (reference, policy)}
    print(f"round 2: {len(votes)} DPO-vs-SFT votes, DPO won {dpo_wins} of {len(decided)} decided; rule met: {rate}")
    assert len(decided) >= 30, votes
    # Sampling, the hidden sides and the 10% random votes differ from run to run (CI has seen DPO win 65% of 81,
    # locally 88% of 74): ask for a win that chance explains less than once in a hundred, and for the rule.
    assert binomial_tail(dpo_wins, len(decided)) < 0.01, (dpo_wins, len(decided), rate)
    assert rate[policy] >= rate[reference] + 0.1, rate
    board = results.leaderboard(second.id, home=home)
    assert {campaigns.model_of(r["source"]) for r in board["ratings"][:2]} == {policy}  # both DPO samples on top
