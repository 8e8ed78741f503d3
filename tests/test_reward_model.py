"""Reward models on the tiny model: one trained through the real run machinery (create_run, the worker process) on
the bundled preference sample ranks held-out pairs far better than chance (measured here, by the lab's own scorer,
not only by the trainer's log); it then scores answers as an Eval job (every prompt's score kept), in Compare
(each answer and each checkpoint's mean), from the CLI and through the web app's API."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gradio_client import Client

from lab.config import TrainConfig, load_yaml
from lab.errors import LabError
from lab.home import lab_home
from lab.train import runner

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from lab.models import tiny_model_path

    home = lab_home(tmp_path_factory.mktemp("reward") / "home")
    tiny_model_path(home)
    return home


@pytest.fixture(scope="module")
def pairs(home) -> str:
    """The bundled preference sample with 30% held out (90 pairs): its own 10% split (30 pairs) is too few to tell
    a 0.75 accuracy from a coin by a wide margin."""
    from lab.config import DataConfig
    from lab.data.pipeline import import_file
    from lab.data.samples import SAMPLE_PREFERENCE

    return import_file(SAMPLE_PREFERENCE, DataConfig(name="preference-sample", val_fraction=0.3), home=home).ref


@pytest.fixture(scope="module")
def reward_run(home, pairs) -> runner.Run:
    """recipes/tiny-reward.yaml (a LoRA adapter and a new score head on the tiny model), without W&B, on those
    pairs; evaluated at step 20 and, though 30 is no multiple of 20, at the last step."""
    cfg = dataclasses.replace(load_yaml(str(ROOT / "recipes" / "tiny-reward.yaml")), report_to="none",
                              dataset=pairs, eval_steps=20)
    run = runner.wait(runner.create_run(cfg, home=home)[0].id, home, timeout_s=600)
    assert run.status == "succeeded", (run.error, (run.run_dir / "log.txt").read_text()[-3000:])
    return run


def lab(home, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAB_HOME": str(home.root), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300, check=False)


def binomial_tail(successes: int, n: int) -> float:
    """P(X >= successes) for X ~ Binomial(n, 1/2): how likely a coin ranks this many pairs right."""
    return sum(math.comb(n, k) for k in range(successes, n + 1)) / 2 ** n


def test_a_reward_model_is_a_one_output_classifier_whose_score_head_trains_beside_lora(home, tmp_path):
    from peft import get_peft_model

    from lab.train.convert import peft_config, trainer_config
    from lab.train.loading import load_for_training

    cfg = TrainConfig(objective="reward", adapter="lora", reward_center_coefficient=0.01)
    tokenizer, model = load_for_training(cfg, home, cuda=False, precision="fp32")
    assert type(model).__name__ == "LlamaForSequenceClassification" and model.config.num_labels == 1
    assert model.config.pad_token_id == tokenizer.pad_token_id is not None  # the score is read before the padding
    wrapped = get_peft_model(model, peft_config(cfg))
    trainable = {name for name, p in wrapped.named_parameters() if p.requires_grad}
    assert any(".score." in name for name in trainable) and any("lora_A" in name for name in trainable)
    args = trainer_config(cfg, tmp_path)
    assert type(args).__name__ == "RewardConfig" and args.center_rewards_coefficient == 0.01
    bad = TrainConfig(objective="reward", dataset="sample:preference", reward_center_coefficient=-1, report_to="none")
    with pytest.raises(LabError, match="reward_center_coefficient"):
        runner.create_run(bad, home=home, start=False)
    with pytest.raises(LabError, match="preference"):  # a reward model learns from pairs
        runner.create_run(TrainConfig(objective="reward", dataset="sample:sft"), home=home, start=False)


def test_the_reward_model_ranks_held_out_pairs_far_better_than_chance(home, pairs, reward_run):
    from safetensors import safe_open

    from lab.catalog import model_choices, reward_model_choices
    from lab.data.versions import read_rows
    from lab.train.reward_model import is_reward_model, load_scorer

    final = reward_run.run_dir / "final"
    with safe_open(str(final / "adapter_model.safetensors"), "pt") as saved:
        tensors = list(saved.keys())  # a safetensors file, not a dict
    assert any(".score." in name for name in tensors)  # the trained head travels with the adapter

    held_out = read_rows(pairs, "validation", home)
    scorer = load_scorer(f"run:{reward_run.id}", home)
    prompts = [[{"role": m["role"], "content": m["content"]} for m in p["prompt"]] for p in held_out]
    chosen = scorer.score(prompts, [p["chosen"][-1]["content"] for p in held_out])
    rejected = scorer.score(prompts, [p["rejected"][-1]["content"] for p in held_out])
    right, n = sum(c > r for c, r in zip(chosen, rejected)), len(held_out)
    # Measured at about 0.8 (a quarter of the rejected replies differ from the chosen only in a wrong number, which
    # the tiny model cannot check); a coin reaches 0.68 of 90 pairs with a chance below 1 in 1,000.
    assert n >= 80 and right / n >= 0.68 and binomial_tail(right, n) < 0.001, (right, n)

    rows = [json.loads(line) for line in (reward_run.run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval_accuracy" in r]
    assert [r["step"] for r in evals] == [20, 30]  # the run ends with its held-out accuracy
    # The trainer averages per-batch accuracies (the last batch is short): close to the per-pair count, not equal.
    assert abs(evals[-1]["eval_accuracy"] - right / n) < 0.1 and evals[-1]["eval_margin"] > 0
    assert not (reward_run.run_dir / "samples.json").exists()  # a reward model writes no before/after answers

    assert is_reward_model(f"run:{reward_run.id}", home) and not is_reward_model("tiny", home)
    assert is_reward_model(str(final), home)
    assert reward_model_choices(home) == [(reward_model_choices(home)[0][0], f"run:{reward_run.id}")]
    # ...and it is no model that answers prompts: the chat, Compare, Eval and campaign pickers leave it out
    assert f"run:{reward_run.id}" not in [value for _, value in model_choices(home)]
    with pytest.raises(LabError, match="not a reward model"):
        load_scorer("tiny", home)
    # Typed by its name, a reward run is pointed to by its id; a word that is no folder and no owner/name is no
    # reward model at once (the hub client would retry for about 25 s offline).
    from lab.train.rewards import precheck

    grpo = TrainConfig(objective="grpo", dataset="sample:prompts", rewards="reward_model:1", batch_size=8)
    for typed, said in ((reward_run.name, f"is a run's name: write run:{reward_run.id}"),
                        ("no-such-model", "'no-such-model' is not a reward model")):
        with pytest.raises(LabError, match=said):
            precheck(dataclasses.replace(grpo, reward_model=typed), home)


def test_the_reward_eval_scores_every_answer_and_keeps_each_prompt_s_score(home, reward_run):
    from lab.eval import jobs

    reward = f"run:{reward_run.id}"
    job = jobs.wait(jobs.create_eval("reward", "tiny", "sample:sft", reward_model=reward, max_rows=4,
                                     max_new_tokens=12, home=home).id, home, timeout=300)
    assert job.status == "succeeded", job.error
    r = job.results
    assert r["rows"] == len(r["per_prompt"]) == 4 and r["reward_model"] == reward
    assert all(isinstance(p["reward"], float) and "answer" in p and "reference_reward" in p for p in r["per_prompt"])
    assert r["mean_reward"] == pytest.approx(sum(p["reward"] for p in r["per_prompt"]) / 4, abs=1e-3)
    assert r["reward_model_name"] == reward_run.name and reward_run.name in job.headline_text
    assert r["reference_mean_reward"] == pytest.approx(sum(p["reference_reward"] for p in r["per_prompt"]) / 4,
                                                       abs=1e-3)  # the SFT replies, scored beside the answers
    from lab.eval.summary import summary

    (row,) = [m for m in summary(home)["models"] if m["model"] == "tiny"]  # beside the other kinds' numbers
    assert (row["reward"], row["reward_model"]) == (r["mean_reward"], reward_run.name)

    with pytest.raises(LabError, match="not a reward model"):
        jobs.create_eval("reward", "tiny", "sample:sft", reward_model="tiny", home=home, start=False)
    with pytest.raises(LabError, match="is a reward model"):
        jobs.create_eval("reward", reward, "sample:sft", reward_model=reward, home=home, start=False)

    shown = lab(home, "eval", "reward", "--model", "tiny", "--dataset", "sample:preference", "--reward-model", reward,
                "--max-rows", "3", "--max-new-tokens", "8", "--wait", "--json")
    assert shown.returncode == 0, shown.stderr
    (document,) = json.loads(shown.stdout)
    assert document["results"]["rows"] == 3 and document["results"]["references"] == 3  # chosen replies scored


def test_compare_scores_each_answer_and_each_checkpoint_s_mean(home, reward_run):
    from lab.compare import Sampling, check_request, comparison_document, side_by_side, to_html, to_markdown
    from lab.train.reward_model import load_scorer

    reward = f"run:{reward_run.id}"
    prompts = [[{"role": "user", "content": "What is 7 times 8?"}], [{"role": "user", "content": "Say hello."}]]
    settings = Sampling(max_new_tokens=8)
    answers = list(side_by_side(["tiny"], prompts, settings, home))
    document = comparison_document(["tiny"], prompts, settings, answers, home, reward_model=reward)
    (tiny,) = document["answers"]
    assert tiny["rewards"] == load_scorer(reward, home).score(prompts, tiny["answers"])
    assert tiny["mean_reward"] == pytest.approx(sum(tiny["rewards"]) / 2, abs=1e-3)
    assert f"Scored by the reward model {reward_run.name}" in to_markdown(document)
    assert f"reward {tiny['rewards'][1]:+.3f}" in to_html(document)
    with pytest.raises(LabError, match="is a reward model"):
        check_request([reward], prompts, home=home)
    with pytest.raises(LabError, match="not a reward model"):
        check_request(["tiny"], prompts, "tiny", home)

    shown = lab(home, "compare", "run", "--source", "tiny", "--prompt", "Hi", "--max-new-tokens", "6",
                "--reward-model", reward)
    assert shown.returncode == 0, shown.stderr
    assert f"scored by {reward_run.name}: tiny mean reward" in shown.stdout


@pytest.fixture(scope="module")
def app(home, reward_run):
    """The real app on this module's home, which holds the reward run."""
    from tests.app_server import start_app, stop_app

    server = start_app(Path(home.root))
    yield server
    stop_app(server.process)


def test_the_app_scores_with_the_reward_model_in_eval_and_compare(home, reward_run, app):
    client = Client(app.url, verbose=False)
    reward = f"run:{reward_run.id}"
    status, answers, *_ = client.predict(["tiny"], "Say hello.", 6, 0, 1, 0, reward, api_name="/compare_run")
    assert f"scored by {reward_run.name}" in status
    assert "mean reward" in answers["value"]["headers"][1] and answers["value"]["data"][0][1].startswith("[reward ")

    status, *_ = client.predict(["tiny"], "sample:sft", "validation", reward, 2, 6, 4, 0, 0,
                                api_name="/eval_reward")
    assert "Started 1 evaluation" in status
