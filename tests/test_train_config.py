"""Run configs: recipes load, defaults by method, validation before launch, and the config → TRL/PEFT
conversion (pure functions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.config import TrainConfig, from_dict, load_yaml
from lab.errors import LabError
from lab.train.convert import peft_config, precision, trainer_config

RECIPES = sorted(Path(__file__).resolve().parents[1].joinpath("recipes").rglob("*.yaml"))


def test_there_are_recipes():
    assert {"tiny-sft.yaml", "tiny-lora.yaml", "tiny-dpo.yaml"} <= {p.name for p in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads_and_opens_with_its_command(path):
    cfg = load_yaml(str(path))
    assert isinstance(cfg, TrainConfig)
    assert path.read_text().startswith("# python -m lab ") or path.read_text().startswith("# ")
    assert "python -m lab" in path.read_text().splitlines()[0] + path.read_text().splitlines()[1]
    cfg.validate(cuda=True)  # recipes for GPUs must be valid where they are meant to run


def test_set_overrides_are_typed(tmp_path):
    cfg = load_yaml("recipes/tiny-sft.yaml", overrides=["learning_rate=1e-4", "packing=true", "max_steps=7"])
    assert (cfg.learning_rate, cfg.packing, cfg.max_steps) == (1e-4, True, 7)
    with pytest.raises(LabError, match="batch_size must be int"):
        load_yaml("recipes/tiny-sft.yaml", overrides=["batch_size=lots"])
    with pytest.raises(LabError, match="objective must be one of"):
        load_yaml("recipes/tiny-sft.yaml", overrides=["objective=ppo"])


@pytest.mark.parametrize("method, objective, adapter, lr", [("sft", "sft", "none", 2e-5), ("lora", "sft", "lora", 2e-4),
                                                            ("qlora", "sft", "qlora", 2e-4), ("dpo", "dpo", "lora", 5e-6)])
def test_configs_written_with_method_still_load(method, objective, adapter, lr):
    """Recipes and stored runs from before objective × adapter: ``method`` (and DPO's ``dpo_adapter``) map onto both;
    the usual learning rate follows the objective and the adapter."""
    cfg = from_dict(TrainConfig, {"method": method})
    assert (cfg.objective, cfg.adapter, cfg.lr, cfg.method) == (objective, adapter, lr,
                                                                 method if objective == "sft" else "dpo-lora")
    assert from_dict(TrainConfig, {"method": "dpo", "dpo_adapter": "none"}).adapter == "none"
    assert TrainConfig(objective="dpo", adapter="none").lr == 5e-7
    with pytest.raises(LabError, match="objective must be one of"):
        from_dict(TrainConfig, {"method": "ppo"})


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_no_shipped_recipe_is_flagged(path):
    """Measured where the model is local (the tiny recipes), taken as real-size where it is a hub id."""
    cfg = load_yaml(str(path))
    assert cfg.validate(cuda=True) == []


def test_the_usual_learning_rate_depends_on_the_model_s_size():
    real = TrainConfig(model="meta-llama/Llama-3.1-8B-Instruct", learning_rate=1e-3)
    assert "more than 10× away from the usual 2e-05 for SFT on a real-size model" in real.validate(cuda=False)[0]
    assert real.validate(cuda=False, params=3_000_000) == []  # a few-million-parameter model learns at 1e-3
    assert TrainConfig(model="tiny", learning_rate=1e-3).validate(cuda=False) == []
    assert "usual 0.001 for SFT on a small test model" in TrainConfig(learning_rate=1.0).validate(cuda=False)[0]
    assert TrainConfig(model="tiny").lr == 2e-5  # learning_rate 0 still means the method's usual


def test_risky_learning_rate_warns_and_impossible_settings_fail():
    assert "more than 10×" in TrainConfig(model="Qwen/Qwen2.5-0.5B", adapter="lora",
                                          learning_rate=5e-2).validate(cuda=False)[0]
    for bad, message in ((dict(adapter="qlora"), "needs a CUDA GPU"), (dict(warmup_ratio=1.5), "warmup_ratio"),
                         (dict(objective="dpo", adapter="lora", packing=True), "packing does not apply to DPO"),
                         (dict(eval_split="none", early_stopping_patience=2), "needs evaluation"),
                         (dict(objective="dpo", adapter="lora", max_prompt_length=2048, max_length=1024), "max_prompt_length")):
        with pytest.raises(LabError, match=message):
            TrainConfig(**bad).validate(cuda=False)


def test_peft_config_presets():
    assert peft_config(TrainConfig(objective="sft")) is None
    attention = peft_config(TrainConfig(adapter="lora", lora_targets="attention", lora_r=8))
    assert set(attention.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"} and attention.r == 8
    assert peft_config(TrainConfig(objective="dpo", adapter="lora")).target_modules == "all-linear"


def test_sft_and_dpo_args(tmp_path):
    sft = trainer_config(TrainConfig(adapter="lora", eval_steps=0, gradient_checkpointing=False), tmp_path)
    assert sft.assistant_only_loss and sft.learning_rate == 2e-4 and not sft.gradient_checkpointing
    assert sft.eval_strategy == "epoch" and not sft.bf16 and sft.use_cpu
    best = trainer_config(TrainConfig(early_stopping_patience=2, eval_steps=20, save_steps=100), tmp_path)
    assert best.load_best_model_at_end and best.save_steps == 20 and best.metric_for_best_model == "eval_loss"
    dpo = trainer_config(TrainConfig(objective="dpo", adapter="lora", dpo_beta=0.3, dpo_loss_type="ipo"), tmp_path)
    assert dpo.beta == 0.3 and dpo.loss_type == ["ipo"] and dpo.learning_rate == 5e-6
    assert precision(TrainConfig(), cuda=True, bf16_supported=False) == "fp16"
    assert precision(TrainConfig(), cuda=False, bf16_supported=False) == "fp32"
