"""The fast path's GPU kernels against their reference (run through the device tool: ``pytest -m gpu``).

PyTorch's variable-length flash attention must give what one causal SDPA call per example gives, forward and
backward, with grouped-query heads; and the lab's generation path must answer what plain ``generate`` answers.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_torch_varlen_matches_per_example_sdpa_forward_and_backward():
    from lab.train import speed

    if not speed.torch_varlen_available():
        pytest.skip("this torch has no torch.nn.attention.varlen")
    torch.manual_seed(0)
    lengths = [37, 512, 5, 1200]
    total, heads, kv_heads, dim = sum(lengths), 14, 2, 64
    q = torch.randn(1, heads, total, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(1, kv_heads, total, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(1, kv_heads, total, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    fast = speed._torch_varlen(q, k, v, cu, 2048, dim**-0.5)
    reference = speed._per_example_sdpa(q, k, v, cu, dim**-0.5)
    assert fast.shape == reference.shape == (1, total, heads, dim)
    torch.testing.assert_close(fast, reference, atol=2e-2, rtol=2e-2)
    grad = torch.randn_like(fast)
    fast_grads = torch.autograd.grad(fast, (q, k, v), grad)
    ref_grads = torch.autograd.grad(reference, (q, k, v), grad)
    for a, b in zip(fast_grads, ref_grads):
        torch.testing.assert_close(a, b, atol=5e-2, rtol=5e-2)


def test_equal_rows_take_one_batched_sdpa_call_with_the_per_example_answer():
    """Full-length rows (each example at the bound) go through SDPA's fixed-length kernels on the GPU."""
    from lab.train import speed

    torch.manual_seed(0)
    rows, length, heads, kv_heads, dim = 4, 512, 32, 8, 128
    shape = (1, heads, rows * length, dim)
    q = torch.randn(*shape, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(1, kv_heads, rows * length, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(1, kv_heads, rows * length, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    cu = torch.arange(0, rows * length + 1, length, dtype=torch.int32, device="cuda")
    fast = speed._equal_rows_sdpa(q, k, v, rows, dim**-0.5)
    reference = speed._per_example_sdpa(q, k, v, cu, dim**-0.5)
    torch.testing.assert_close(fast, reference, atol=2e-2, rtol=2e-2)
    grad = torch.randn_like(fast)
    for a, b in zip(torch.autograd.grad(fast, (q, k, v), grad), torch.autograd.grad(reference, (q, k, v), grad)):
        torch.testing.assert_close(a, b, atol=5e-2, rtol=5e-2)


def test_fast_generation_answers_like_plain_generate(tiny_home):
    from lab.models import generate_with, load_for_generation

    model, tokenizer = load_for_generation("tiny", tiny_home)
    prompts = [[{"role": "user", "content": f"Question number {i}: what is {i} plus {i}?" * (1 + i % 3)}]
               for i in range(5)]
    import os

    os.environ["LAB_FAST_GENERATION"] = "0"
    try:
        plain = generate_with(model, tokenizer, prompts, max_new_tokens=16)
    finally:
        del os.environ["LAB_FAST_GENERATION"]
    fast = generate_with(model, tokenizer, prompts, max_new_tokens=16)
    same = sum(a == b for a, b in zip(plain, fast))
    assert same >= 4, list(zip(plain, fast))  # bf16 batches of other shapes may flip a near-tie in one reply


@pytest.mark.parametrize("four_bit", [False, True], ids=["16-bit base", "4-bit base"])
def test_fused_lora_layer_matches_peft_on_the_gpu(four_bit):
    """One LoRA layer over a 16-bit or an NF4 base (bf16 adapters, so PEFT drops out the same bf16 input and
    draws the same mask): the fused layer's output and gradients are PEFT's to bf16's rounding."""
    from peft import LoraConfig, get_peft_model

    from lab.train.fused_lora import fuse_lora

    if four_bit:
        bnb = pytest.importorskip("bitsandbytes")

    def run(fused: bool):
        torch.manual_seed(0)
        base = (bnb.nn.Linear4bit(512, 768, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4")
                if four_bit else torch.nn.Linear(512, 768, bias=True, dtype=torch.bfloat16))
        model = get_peft_model(torch.nn.Sequential(base).cuda(), LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.1, target_modules=["0"]), autocast_adapter_dtype=False)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=0.05)
        if fused:
            assert fuse_lora(model) == 1
        model.train()
        x = torch.randn(4, 256, 512, device="cuda", dtype=torch.bfloat16).requires_grad_()
        torch.manual_seed(1)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x)
        out.float().pow(2).mean().backward()
        grads = {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None}
        return out.float(), x.grad.float(), grads, type(out.grad_fn).__name__

    out, grad_x, grads, _ = run(False)
    fused_out, fused_grad_x, fused_grads, node = run(True)
    assert node == "LoraLinearBackward" and grads.keys() == fused_grads.keys() and len(grads) == 2
    torch.testing.assert_close(fused_out, out, atol=0.03, rtol=0.02)
    for expected, got in [(grad_x, fused_grad_x), *((grads[n], fused_grads[n]) for n in grads)]:
        assert torch.nn.functional.cosine_similarity(expected.flatten(), got.flatten(), dim=0) > 0.999
