"""A run that cannot train is refused before launch, with settings that would; a run that did not train fails
after it ("The model did not change"), whatever the trainer returned. Real runs of the tiny model through the
CLI, and the steps counted against what the Trainer does."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lab.config import TrainConfig, from_dict
from lab.errors import LabError
from lab.home import lab_home
from lab.train.viability import count_steps, propose_dpo, refusal
from tests.test_train_runs import FAST, lab

PAIRS = 3


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One lab home: the tiny model, three preference pairs (the issue's export) and three short conversations."""
    from lab.models import tiny_model_path

    root = tmp_path_factory.mktemp("trains_home")
    home = lab_home(root)
    tiny_model_path(home)
    pairs = root / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Name colour {i}.", "chosen": "Blue is calm.", "rejected": "no"})
                             + "\n" for i in range(PAIRS)))
    short = root / "short.jsonl"
    short.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Hi {i}"},
                                                      {"role": "assistant", "content": "Hello."}]}) + "\n"
                             for i in range(3)))
    for path, name in ((pairs, "three-pairs"), (short, "three-short")):
        result = lab(home, "data", "import", str(path), "--name", name, "--val-fraction", "0", "--json")
        assert result.returncode == 0, result.stderr
    return home


def ref(home, name: str) -> str:
    from lab.data.versions import get_version

    return get_version(name, home).ref


def test_steps_are_counted_as_the_trainer_counts_them():
    cfg = TrainConfig(batch_size=4, grad_accum=4, warmup_ratio=0.03)
    assert dataclasses.astuple(count_steps(cfg, 3)) == (3, 1, 16, 1, 1, 1)
    # 5 rows, batches of 2 over 2 processes: 3 batches, 2 a process, one step each after accumulating 2.
    assert count_steps(TrainConfig(batch_size=2, grad_accum=2, epochs=3), 5, processes=2).total == 3
    assert count_steps(TrainConfig(max_steps=7), 3).total == 7
    assert count_steps(TrainConfig(lr_scheduler="constant", warmup_ratio=0.5), 3).warmup == 0  # no warm-up there
    assert count_steps(TrainConfig(), 0).total == 0


def test_a_schedule_with_no_step_at_a_rate_above_zero_is_refused_with_settings_that_train():
    cfg = TrainConfig(objective="dpo", adapter="lora", dataset="labels", batch_size=4, grad_accum=4)
    reason = refusal(cfg, count_steps(cfg, PAIRS))
    assert reason.startswith("This run would not train: the train split of labels has 3 rows, which make 1 "
                             "optimizer step"), reason
    assert "the learning rate is 0 on its only step" in reason
    assert "warmup_ratio 0 (1 step at 5e-06)" in reason and "batch_size 1, grad_accum 1, epochs 4" in reason
    assert "warm-up takes all 2" in refusal(cfg, count_steps(dataclasses.replace(cfg, warmup_ratio=0.9), 2 * 16))
    assert "has no rows" in refusal(cfg, count_steps(cfg, 0))
    assert refusal(cfg, count_steps(cfg, 1000)) is None


def test_the_issue_s_reproduction_is_refused_before_launch(home):
    runs = len(list(home.runs.iterdir())) if home.runs.exists() else 0
    result = lab(home, "train", "recipes/dpo-from-labels.yaml", "--set", "model=tiny", "--set", "dataset=three-pairs",
                 *FAST, "--json")
    assert result.returncode == 1 and "would not train" in json.loads(result.stdout)["error"]
    assert len(list(home.runs.iterdir())) == runs
    estimate = lab(home, "train", "recipes/dpo-from-labels.yaml", "--set", "model=tiny", "--set",
                   "dataset=three-pairs", "--estimate", "--json")
    document = json.loads(estimate.stdout)
    assert estimate.returncode == 1 and "would not train" in document["refusal"] and document["total_steps"] == 1
    # The estimate and Start name the same version, not one the name as typed and the other the version.
    split = f"the train split of {ref(home, 'three-pairs')} has 3 rows"
    assert split in document["refusal"] and split in json.loads(result.stdout)["error"], document["refusal"]


def test_the_dpo_proposal_trains_on_three_pairs_and_the_adapter_moves(home):
    proposal = propose_dpo("three-pairs", "tiny", home)
    cfg = from_dict(TrainConfig, proposal.values)  # every key a TrainConfig field
    steps = count_steps(cfg, PAIRS)
    assert steps.total >= 10 and steps.warmup == 0 and cfg.warmup_ratio == 0 and cfg.objective == "dpo"
    assert proposal.text.startswith(f"3 pairs of {ref(home, 'three-pairs')} make {steps.total} optimizer steps")
    assert "at learning rate 0.0005" in proposal.text  # the tiny model's usual DPO rate, not a 7B model's
    # Laid over a form that still holds an SFT run's settings (as "Train DPO on this" does), it still trains.
    sft_form = dataclasses.asdict(TrainConfig(max_steps=40, max_length=256, eval_split="validation"))
    laid_over = from_dict(TrainConfig, {**sft_form, **proposal.values})
    laid_over.validate(cuda=False)  # raises on max_prompt_length >= max_length, as Start did
    assert count_steps(laid_over, PAIRS).total == steps.total and laid_over.eval_split == "none"
    with pytest.raises(LabError, match="needs preference pairs"):
        propose_dpo("three-short", "tiny", home)
    printed = lab(home, "train", "--propose-dpo", "three-pairs", "--model", "tiny")
    recipe = Path(home.root, "proposal.yaml")
    recipe.write_text(printed.stdout)
    result = lab(home, "train", str(recipe), *FAST, "--set", "max_length=128", "--set", "max_prompt_length=64",
                 "--set", "sample_prompts=0", "--wait", "--json")
    done = json.loads(result.stdout)
    assert result.returncode == 0 and done["status"] == "succeeded", done
    from safetensors.torch import load_file

    weights = load_file(str(Path(done["run_dir"], "final", "adapter_model.safetensors")))
    assert any(name.endswith("lora_B.weight") and tensor.abs().sum() > 0 for name, tensor in weights.items())


def test_a_run_whose_weights_did_not_move_fails(home):
    """learning_rate 1e-30 passes every check before launch, and the weights stay equal to the bit."""
    result = lab(home, "train", "recipes/tiny-sft.yaml", *FAST, "--set", "max_steps=2", "--set",
                 "learning_rate=1e-30", "--set", "sample_prompts=0", "--wait", "--json")
    done = json.loads(result.stdout)
    assert result.returncode == 1 and done["status"] == "failed"
    assert done["error"].startswith("The model did not change: its trainable weights are exactly as they were "
                                    "after 2 steps"), done["error"]
    assert "raise learning_rate" in done["error"]


def test_a_packed_run_left_with_one_warm_up_step_fails(home):
    """Packing folds three short rows into one sequence: the check before launch counts three steps (one of them
    warm-up), the Trainer takes one, at a learning rate of 0."""
    result = lab(home, "train", "recipes/tiny-sft.yaml", *FAST, "--set", "dataset=three-short", "--set",
                 "batch_size=1", "--set", "epochs=1", "--set", "warmup_ratio=0.5", "--set", "packing=true",
                 "--set", "eval_split=none", "--set", "sample_prompts=0", "--wait", "--json")
    done = json.loads(result.stdout)
    assert done["status"] == "failed" and "the learning rate was 0 on every one of its 1 optimizer step" in \
        done["error"], done


def test_a_server_without_training_refuses_runs_with_its_reason(home, monkeypatch):
    from lab.train.runner import create_run

    monkeypatch.setenv("LAB_NO_TRAINING", "This Space runs on a CPU: training is off, labeling works.")
    with pytest.raises(LabError, match="This Space runs on a CPU"):
        create_run(TrainConfig(), home=home)


def test_a_run_resumed_from_its_last_step_is_not_called_unchanged():
    """Resuming a run whose checkpoint is its last step takes no step, and its result is that checkpoint's weights,
    trained before; a fresh run that takes no step did not train."""
    import types

    import torch
    from transformers import TrainerState

    from lab.train.callbacks import ChangeWatch

    holder = types.SimpleNamespace(model=torch.nn.Linear(2, 2), optimizer=None)  # what ChangeWatch reads of a trainer
    for global_step, expected in ((10, None), (0, "The model did not change: the run took no optimizer step")):
        watch = ChangeWatch(holder)
        watch.on_train_begin(None, TrainerState(max_steps=10, global_step=global_step), None)
        verdict = watch.verdict()
        assert verdict == expected if expected is None else verdict.startswith(expected), verdict


def test_an_sft_run_whose_replies_are_all_cut_by_max_length_is_refused_before_launch(home):
    """Every reply beyond max_length: no token would carry loss, the trainer would drop every row. Refused with the
    length that keeps them, before a run exists; a max_length that keeps them passes the check."""
    from lab.train.runner import create_run

    cfg = TrainConfig(dataset=ref(home, "three-short"), max_length=6, report_to="none", epochs=4, batch_size=1,
                      warmup_ratio=0.0)
    runs = len(list(home.runs.iterdir())) if home.runs.exists() else 0
    with pytest.raises(LabError, match=r"max_length 6 cuts every assistant reply out of the first 3 rows .* raise "
                                       r"max_length to about \d+"):
        create_run(cfg, home=home)
    assert (len(list(home.runs.iterdir())) if home.runs.exists() else 0) == runs
    from lab.train.objectives.sft import precheck

    precheck(dataclasses.replace(cfg, max_length=64), home)  # the replies fit: nothing to refuse
