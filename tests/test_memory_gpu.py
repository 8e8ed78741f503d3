"""Activation offloading on the GPU (run through the device tool: ``pytest -m gpu``): the offloaded layers' inputs
go to page-locked buffers of the size asked (not torch's power-of-two pinned blocks), which the next step reuses,
and the loss and gradients are those of checkpointing that keeps the inputs on the GPU."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def step(model, ids):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(2)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_offloaded_inputs_use_exact_page_locked_buffers_reused_by_the_next_step(tiny_home):
    from peft import LoraConfig, get_peft_model

    from lab.models import load_model
    from lab.train.memory import HOST_BUFFERS, offload_checkpoints

    torch.manual_seed(0)
    model = get_peft_model(load_model(home=tiny_home).cuda(), LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.3, target_modules="all-linear"))
    # gradient_checkpointing_enable in the GPU machine's transformers 5.17, activation_checkpointing_enable in newer
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable({"use_reentrant": False})
    model.train()
    ids = torch.randint(5, 200, (2, 2000), generator=torch.Generator().manual_seed(1)).cuda()
    loss, grads = step(model, ids)

    layers = offload_checkpoints(model)
    assert layers >= 2
    HOST_BUFFERS.release()
    other, other_grads = step(model, ids)
    torch.testing.assert_close(other, loss)
    for name in grads:
        torch.testing.assert_close(other_grads[name], grads[name], atol=1e-5, rtol=1e-3)

    hidden = ids.numel() * model.config.hidden_size * 4  # fp32 hidden states of the tiny model
    buffers = list(HOST_BUFFERS.free)
    assert len(buffers) == layers  # each layer's input waited in one, and each came back
    assert all(b.is_pinned() and hidden <= b.numel() <= hidden * 9 / 8 for b in buffers)
    step(model, ids[:, :1500])  # a shorter batch takes the same buffers
    assert {b.data_ptr() for b in HOST_BUFFERS.free} == {b.data_ptr() for b in buffers}
