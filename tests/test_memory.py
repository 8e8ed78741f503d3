"""Memory savers (lab.train.memory): offloaded checkpoints and tiled MLPs give the same loss and gradients as
plain training, and with LoRA dropout the recomputed pieces draw the masks their forward drew (each replays its
random-number state). A tiled MLP draws its dropout masks tile by tile, so with dropout it is compared with
itself under checkpointing rather than with an untiled model. The estimate counts what they save, and the plan
turns them on only when a batch would not fit otherwise."""

from __future__ import annotations

import pytest

from lab.config import TrainConfig
from lab.errors import LabError
from lab.train import speed


def loss_and_grads(home, *, checkpointing=False, offload=False, tile=0, dropout=0.3):
    import torch
    from peft import LoraConfig, get_peft_model

    from lab.models import load_model
    from lab.train.memory import offload_checkpoints, tile_mlps

    torch.manual_seed(0)
    model = get_peft_model(load_model(home=home), LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout,
                                                             target_modules="all-linear"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.05)
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    layers = offload_checkpoints(model) if offload else 0
    tiled = tile_mlps(model, tile=tile) if tile else 0
    model.train()
    ids = torch.randint(5, 200, (2, 23), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, layers, tiled


@pytest.mark.parametrize("reference, variant", [
    (dict(), dict(checkpointing=True)),
    (dict(), dict(checkpointing=True, offload=True)),
    (dict(dropout=0.0), dict(tile=7, dropout=0.0)),
    (dict(tile=7), dict(checkpointing=True, offload=True, tile=7)),
], ids=["checkpointing", "offloaded", "tiled", "offloaded+tiled"])
def test_memory_savers_give_the_same_loss_and_gradients(tiny_home, reference, variant):
    import torch

    loss, grads, _, _ = loss_and_grads(tiny_home, **reference)
    other, other_grads, layers, tiled = loss_and_grads(tiny_home, **variant)
    if variant.get("offload"):
        assert layers >= 2  # every decoder layer took the offloading checkpoint
    if variant.get("tile"):
        assert tiled >= 2  # 46 tokens in tiles of 7: seven tiles per MLP
    assert grads.keys() == other_grads.keys() and grads
    torch.testing.assert_close(other, loss)
    for name in grads:
        torch.testing.assert_close(other_grads[name], grads[name], atol=1e-6, rtol=1e-4)


def test_without_replayed_random_state_the_recomputed_dropout_drifts(tiny_home):
    """What the equalities above rest on: a recomputation that drew fresh dropout masks gives other gradients."""
    import torch

    from lab.train import memory

    _, grads, _, _ = loss_and_grads(tiny_home, tile=7)
    original = memory.set_rng_state
    memory.set_rng_state = lambda state, device: None
    try:
        _, drifted, _, _ = loss_and_grads(tiny_home, tile=7)
    finally:
        memory.set_rng_state = original
    assert any(not torch.allclose(grads[n], drifted[n], atol=1e-6, rtol=1e-4) for n in grads)


def test_estimate_counts_offloaded_inputs_and_tiled_mlps():
    from lab.train.estimate import GIB, memory, model_shape

    shape = model_shape("bench/configs/llama-3.1-8b.json")
    at = dict(adapter="qlora", batch_size=1, max_length=65536)
    checkpointed = memory(TrainConfig(**at, gradient_checkpointing="on"), shape).activations
    offloaded = memory(TrainConfig(**at, gradient_checkpointing="on", offload_activations="on"), shape).activations
    tiled = memory(TrainConfig(**at, gradient_checkpointing="on", offload_activations="on", tiled_mlp="on"),
                   shape).activations
    inputs = 65536 * 4096 * 2 * 32  # every layer's input, bf16
    assert checkpointed - offloaded == pytest.approx(inputs)
    assert tiled < 0.6 * offloaded  # the MLP's intermediate tensors are most of one layer's recomputation
    assert offloaded / GIB > 10 > tiled / GIB


def test_plan_adds_memory_savers_one_at_a_time_as_the_budget_shrinks():
    from lab.train.estimate import GIB, model_shape

    shape = model_shape("bench/configs/llama-3.1-8b.json")
    machine = dict(cuda=True, model_type="llama", varlen=True, flash_attn=False, liger=False, shape=shape)
    cfg = TrainConfig(adapter="qlora", batch_size=1, max_length=32768)
    chosen = {}
    for gib in (300, 30, 18, 12):  # estimates: 255 GiB plain, 22 checkpointed, 14 offloaded, 9.9 tiled
        p = speed.plan(cfg, gpu_bytes=gib * GIB, **machine)
        chosen[gib] = (p.gradient_checkpointing, p.offload_activations, p.tiled_mlp)
    assert chosen == {300: (False, False, False), 30: (True, False, False), 18: (True, True, False),
                      12: (True, True, True)}
    capped = speed.plan(TrainConfig(adapter="qlora", batch_size=1, max_length=32768, gpu_memory_gib=18),
                        gpu_bytes=140 * GIB, **machine)
    assert (capped.gradient_checkpointing, capped.offload_activations, capped.tiled_mlp) == (True, True, False)
    assert "cap of 18 GiB" in capped.reasons["offload_activations"]
    several = speed.plan(cfg, gpu_bytes=12 * GIB, processes=2, **machine)
    assert not several.offload_activations and "several processes" in several.reasons["offload_activations"]


@pytest.mark.parametrize("settings, words", [
    (dict(offload_activations="on", gradient_checkpointing="off"), "needs gradient_checkpointing"),
    (dict(tiled_mlp="on", gpus="2"), "one process"),
    (dict(gpu_memory_gib=-1), "gpu_memory_gib"),
])
def test_impossible_memory_settings_say_what_to_change(settings, words):
    with pytest.raises(LabError, match=words):
        TrainConfig(adapter="lora", **settings).validate(cuda=True)


def test_out_of_memory_names_the_memory_savers_still_off():
    import torch

    from lab.train.worker import human_error

    cfg = TrainConfig(gradient_checkpointing="on", offload_activations="off", tiled_mlp="off", gpu_memory_gib=16)
    text = human_error(torch.OutOfMemoryError("CUDA out of memory"), 3, cfg)
    assert "step 3" in text and "capped at 16 GiB" in text
    assert text.endswith("turn on offload_activations / tiled_mlp.")
    every = TrainConfig(gradient_checkpointing="on", offload_activations="on", tiled_mlp="on")
    assert "already on" in human_error(torch.OutOfMemoryError("CUDA out of memory"), 0, every)


def test_the_estimate_plans_for_the_gpu_memory_cap(tiny_home, monkeypatch):
    from lab.train import distributed
    from lab.train.estimate import estimate_run

    monkeypatch.setenv("LAB_HOME", str(tiny_home.root))
    monkeypatch.setattr(distributed, "visible_gpus", lambda: [distributed.Gpu(0, "u0", "NVIDIA H200", 140.4, 0.0)])
    cfg = TrainConfig(adapter="lora", gpu_memory_gib=16.0, max_length=512, batch_size=4)
    text = estimate_run(cfg, tiny_home).text
    assert "fits GPU 0 (16 GiB by gpu_memory_gib)" in text
    assert "Offload activations: **off** · batch 4 × 512 fits the cap of 16 GiB without it" in text


def test_the_estimate_says_how_much_cpu_memory_offloading_takes_and_warns_when_the_machine_lacks_it(
        tiny_home, monkeypatch):
    from lab.train import distributed, estimate
    from lab.train.estimate import GIB, estimate_run, model_shape

    monkeypatch.setenv("LAB_HOME", str(tiny_home.root))
    monkeypatch.setattr(distributed, "visible_gpus", lambda: [distributed.Gpu(0, "u0", "NVIDIA H200", 140.4, 0.0)])
    cfg = TrainConfig(adapter="lora", gradient_checkpointing="on", offload_activations="on", max_length=512,
                      batch_size=4)
    shape = model_shape("tiny", tiny_home)
    inputs = 4 * 512 * shape.hidden * 2 * shape.layers  # every layer's input, bf16
    assert estimate.offloaded_bytes(cfg, shape) == inputs
    big = TrainConfig(adapter="qlora", gradient_checkpointing="on", offload_activations="on", max_length=344064,
                      batch_size=1)
    assert estimate.offloaded_bytes(big, model_shape("bench/configs/llama-3.1-8b.json")) / GIB == 84  # the H200 run
    monkeypatch.setattr(estimate, "host_memory_available", lambda: inputs * 2)
    plenty = estimate_run(cfg, tiny_home)
    assert "offloaded_cpu_gib" in plenty.report and "of layer inputs in page-locked CPU memory" in plenty.text
    assert not any("CPU memory" in w for w in plenty.warnings)
    monkeypatch.setattr(estimate, "host_memory_available", lambda: inputs / 2)
    short = estimate_run(cfg, tiny_home)
    assert any("activation offloading needs" in w and "lower max_length or batch_size" in w for w in short.warnings)
    assert "activation offloading needs" in short.text
    off = estimate_run(TrainConfig(adapter="lora", gradient_checkpointing="on", max_length=512), tiny_home)
    assert "offloaded_cpu_gib" not in off.report and "page-locked" not in off.text
