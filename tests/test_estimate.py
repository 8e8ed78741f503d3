"""The pre-launch estimate: steps as the Trainer counts them, the scheduler's own learning rates,
trainable parameters as PEFT counts them, and memory components that add up."""

from __future__ import annotations

import math

import pytest

from lab.config import TrainConfig
from lab.models import load_model
from lab.train.estimate import estimate, memory, model_shape, schedule, trainable_params


def test_steps_and_effective_batch():
    plan = schedule(TrainConfig(batch_size=4, grad_accum=2, epochs=3), train_rows=100, gpus=2)
    assert plan.effective_batch == 16
    assert plan.steps_per_epoch == math.ceil(100 / 16) and plan.total_steps == 3 * 7
    assert schedule(TrainConfig(max_steps=5), train_rows=1000).total_steps == 5


def test_lr_curve_warms_up_then_decays_to_zero():
    cfg = TrainConfig(adapter="lora", warmup_ratio=0.1, max_steps=100)
    curve = dict(schedule(cfg, 1000).lr)
    peak = max(curve.values())
    assert curve[1] == 0.0 and peak == pytest.approx(2e-4)
    assert max(curve, key=curve.get) == 11  # the step after the 10 warm-up steps
    assert curve[100] < 2e-4 * 0.01


@pytest.mark.parametrize("targets", ["all-linear", "attention", "q_proj,v_proj"])
def test_lora_trainable_params_match_peft(tiny_home, monkeypatch, targets):
    from peft import LoraConfig, get_peft_model

    monkeypatch.setenv("LAB_HOME", str(tiny_home.root))
    cfg = TrainConfig(adapter="lora", lora_r=8, lora_targets=targets)
    peft_model = get_peft_model(load_model(home=tiny_home),
                                LoraConfig(r=8, lora_alpha=16, target_modules=cfg.lora_target_modules(),
                                           task_type="CAUSAL_LM"))
    expected = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert trainable_params(cfg, model_shape("tiny")) == expected


def test_memory_components(tiny_home, monkeypatch):
    monkeypatch.setenv("LAB_HOME", str(tiny_home.root))
    shape = model_shape("tiny")
    full = memory(TrainConfig(objective="sft"), shape)
    lora = memory(TrainConfig(adapter="lora"), shape)
    assert full.optimizer == shape.params * 8 and lora.optimizer < full.optimizer / 5
    checkpointed = memory(TrainConfig(objective="sft", gradient_checkpointing=True), shape)
    assert checkpointed.activations < full.activations
    dpo_full = memory(TrainConfig(objective="dpo", adapter="none", precompute_ref_log_probs="off"), shape)
    assert dpo_full.reference_model > 0 and memory(TrainConfig(objective="dpo", adapter="lora"), shape).reference_model == 0
    report = estimate(TrainConfig(adapter="lora"), 360)
    assert report["memory_gib"]["total"] == pytest.approx(sum(v for k, v in report["memory_gib"].items()
                                                              if k != "total"), abs=0.05)
    assert 0 < report["trainable_percent"] < 100


def test_largest_batch_is_the_last_that_fits(tiny_home, monkeypatch):
    import dataclasses

    from lab.train.estimate import GIB, LARGEST_BATCH_ASKED, largest_batch

    monkeypatch.setenv("LAB_HOME", str(tiny_home.root))
    shape = model_shape("tiny")
    cfg = TrainConfig(objective="sft", max_length=1024)
    budget = 2 * GIB
    fits = largest_batch(cfg, shape, budget, headroom=1.0)
    assert fits >= 1
    assert memory(dataclasses.replace(cfg, batch_size=fits), shape).total <= budget
    assert memory(dataclasses.replace(cfg, batch_size=fits + 1), shape).total > budget
    assert largest_batch(cfg, shape, 0.1 * GIB) == 0  # the framework overhead alone does not fit
    # Where even the largest batch it asks about fits, that batch and no odd number below it ("4096 or more").
    assert largest_batch(cfg, shape, 10**6 * GIB) == LARGEST_BATCH_ASKED


def test_checkpointing_and_a_precomputed_reference_lower_the_estimate(tiny_home, monkeypatch):
    monkeypatch.setenv("LAB_HOME", str(tiny_home.root))
    shape = model_shape("tiny")
    plain, checkpointed = (memory(TrainConfig(batch_size=8, max_length=1024, gradient_checkpointing=c), shape)
                           for c in (False, True))
    assert checkpointed.activations < plain.activations / 2.5
    held = memory(TrainConfig(objective="dpo", adapter="none", precompute_ref_log_probs="off"), shape)
    precomputed = memory(TrainConfig(objective="dpo", adapter="none"), shape)  # auto: on for full DPO
    assert held.reference_model > 0 and precomputed.reference_model == 0


def test_lora_dropout_keeps_no_copies_with_the_lab_s_dropout_kernels(tiny_home, monkeypatch):
    """On a GPU the fused layers drop out as their kernels read the input: the estimate keeps each distinct input
    once, as without dropout; PEFT's layers (fused_lora off) and ranks above the kernels' tiles keep a dropped-out
    copy and a one-byte mask per adapted layer (2 + 1 bytes of each input's width, against 2 once)."""
    monkeypatch.setenv("LAB_HOME", str(tiny_home.root))
    shape = model_shape("tiny")

    def kept(**settings):
        return memory(TrainConfig(adapter="lora", batch_size=4, max_length=512, **settings), shape).activations

    assert kept(lora_dropout=0.05) == kept(lora_dropout=0.0)
    copies = kept(lora_dropout=0.05, fused_lora="off")
    assert copies > 1.3 * kept(lora_dropout=0.05)
    assert kept(lora_dropout=0.05, lora_r=256, lora_alpha=512) == copies
