"""The fast path's GPU kernels against their reference (run through the device tool: ``pytest -m gpu``).

PyTorch's variable-length flash attention must give what one causal SDPA call per example gives, forward and
backward, with grouped-query heads; and the lab's generation path must answer what plain ``generate`` answers.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

try:
    import triton
    import triton.language as tl

    from lab.train.lora_dropout import _keep
except ImportError:  # no Triton (a CPU machine): the tests that need it skip with the GPU's
    triton = None
else:
    @triton.jit
    def _mask_kernel(out_ptr, T, K, seed, threshold, BT: tl.constexpr, BK: tl.constexpr):
        rows = tl.program_id(0) * BT + tl.arange(0, BT)
        cols = tl.program_id(1) * BK + tl.arange(0, BK)
        keep = _keep(seed, rows, cols, threshold)
        tl.store(out_ptr + rows[:, None] * K + cols[None, :], keep.to(tl.float32),
                 mask=(rows[:, None] < T) & (cols[None, :] < K))


def assert_per_example_attention(fast, lengths: list[int], heads: int, kv_heads: int, dim: int) -> None:
    """``fast(q, k, v, boundaries, scale)`` gives what one causal SDPA call per example gives, forward and
    backward, on bf16 inputs laid out as transformers hands them over: (1, heads, tokens, dim)."""
    from lab.train import speed

    torch.manual_seed(0)
    total = sum(lengths)
    q, k, v = (torch.randn(1, h, total, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for h in (heads, kv_heads, kv_heads))
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    got = fast(q, k, v, cu, dim**-0.5)
    reference = speed._per_example_sdpa(q, k, v, cu, dim**-0.5)
    assert got.shape == reference.shape == (1, total, heads, dim)
    torch.testing.assert_close(got, reference, atol=2e-2, rtol=2e-2)
    grad = torch.randn_like(got)
    for a, b in zip(torch.autograd.grad(got, (q, k, v), grad), torch.autograd.grad(reference, (q, k, v), grad),
                    strict=True):
        torch.testing.assert_close(a, b, atol=5e-2, rtol=5e-2)


def test_torch_varlen_matches_per_example_sdpa_forward_and_backward():
    """The flash operator with grouped-query k and v as they are and strided views (lab.train.speed._torch_varlen)."""
    from lab.train import speed

    if not speed.torch_varlen_available():
        pytest.skip("this torch has no torch.nn.attention.varlen")
    assert_per_example_attention(lambda q, k, v, cu, scale: speed._torch_varlen(q, k, v, cu, 2048, scale),
                                 [37, 512, 5, 1200], heads=14, kv_heads=2, dim=64)


def test_bucketed_attention_matches_per_example_sdpa_on_the_gpu():
    """``attention: bucketed``: the examples right-padded into batches for SDPA's fixed-length kernels (cuDNN on
    Hopper), grouped-query heads as the 0.5B has them."""
    from lab.train import bucketed_attention as buckets

    assert_per_example_attention(buckets.bucketed_attention, [37, 512, 5, 1200, 128, 129], heads=14, kv_heads=2,
                                 dim=64)


def test_equal_rows_take_one_batched_sdpa_call_with_the_per_example_answer():
    """Full-length rows (each example at the bound) go through SDPA's fixed-length kernels on the GPU."""
    from lab.train import speed

    assert_per_example_attention(lambda q, k, v, cu, scale: speed._equal_rows_sdpa(q, k, v, 4, scale),
                                 [512] * 4, heads=32, kv_heads=8, dim=128)


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
    """One LoRA layer over a 16-bit or an NF4 base, without dropout (with it, the GPU draws other masks than PEFT:
    next tests): the fused layer's output and gradients are PEFT's to bf16's rounding."""
    from peft import LoraConfig, get_peft_model

    from lab.train.fused_lora import fuse_lora

    if four_bit:
        bnb = pytest.importorskip("bitsandbytes")

    def run(fused: bool):
        torch.manual_seed(0)
        base = (bnb.nn.Linear4bit(512, 768, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4")
                if four_bit else torch.nn.Linear(512, 768, bias=True, dtype=torch.bfloat16))
        model = get_peft_model(torch.nn.Sequential(base).cuda(), LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["0"]), autocast_adapter_dtype=False)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=0.05)
        if fused:
            assert fuse_lora(model) == 1
        model.train()
        x = torch.randn(4, 256, 512, device="cuda", dtype=torch.bfloat16).requires_grad_()
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


def hashed_mask(tokens: int, width: int, p: float, seed: int) -> torch.Tensor:
    """The keep mask lab.train.lora_dropout's kernels use, written out (1.0 kept, 0.0 dropped)."""
    from lab.train import lora_dropout

    out = torch.empty(tokens, width, device="cuda")
    threshold, _ = lora_dropout._settings(p)
    _mask_kernel[(triton.cdiv(tokens, 32), triton.cdiv(width, 32))](out, tokens, width, seed, threshold, BT=32,
                                                                    BK=32)
    return out


def test_hashed_dropout_kernels_match_their_torch_reference():
    """The three kernels against torch with the same mask written out; the mask keeps 1 - p of the elements,
    independently of another seed's; a ragged shape (rows and width not multiples of the tiles), rank 8."""
    from lab.train import lora_dropout

    torch.manual_seed(0)
    tokens, width, rank, p = 1000, 4160, 8, 0.1
    x = torch.randn(tokens, width, device="cuda", dtype=torch.bfloat16)
    a = torch.randn(rank, width, device="cuda", dtype=torch.bfloat16) * 0.02
    g = torch.randn(tokens, rank, device="cuda", dtype=torch.bfloat16)
    mask = hashed_mask(tokens, width, p, seed=1234)
    assert abs(mask.mean().item() - (1 - p)) < 0.002
    other = hashed_mask(tokens, width, p, seed=1235)
    assert abs((mask == other).float().mean().item() - ((1 - p) ** 2 + p ** 2)) < 0.002
    dropped = (x.float() * mask / (1 - p)).to(torch.bfloat16)
    torch.testing.assert_close(lora_dropout.dropped_down(x, a, p, 1234).float(), dropped.float() @ a.float().t(),
                               atol=0.02, rtol=0.02)
    torch.testing.assert_close(lora_dropout.dropped_grad_a(g, x, p, 1234), g.float().t() @ dropped.float(),
                               atol=0.05, rtol=0.01)
    torch.testing.assert_close(lora_dropout.dropped_grad_x(g, a, p, 1234).float(),
                               (g.float() @ a.float()) * mask / (1 - p), atol=0.01, rtol=0.02)


def test_fused_lora_layer_with_dropout_keeps_its_input_not_a_copy_and_repeats_under_a_seed():
    """With dropout on a GPU the layer keeps x itself for the backward (no dropped copy, no mask); its output and
    gradients are the torch reference's with the kernels' mask; the same torch seed draws the same mask (as
    gradient checkpointing's recomputation needs)."""
    from lab.train import lora_dropout
    from lab.train.fused_lora import LoraLinear

    torch.manual_seed(0)
    x = torch.randn(2, 300, 512, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    weight = torch.randn(768, 512, device="cuda", dtype=torch.bfloat16) * 0.03
    a = (torch.randn(16, 512, device="cuda") * 0.05).requires_grad_()
    b = (torch.randn(768, 16, device="cuda") * 0.05).requires_grad_()

    def run():
        torch.manual_seed(7)
        seed = torch.randint(0, 2**31 - 1, (1,)).item()  # the draw the layer makes
        torch.manual_seed(7)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = LoraLinear.apply(x, weight, None, a, b, 2.0, 0.1)
        return out, seed

    out, seed = run()
    saved = [t for t in out.grad_fn.saved_tensors if t is not None]
    assert any(t.data_ptr() == x.data_ptr() for t in saved) and not any(t.dtype == torch.bool for t in saved)
    out.float().pow(2).mean().backward()
    grads = x.grad.float(), a.grad.clone(), b.grad.clone()
    again, _ = run()
    assert torch.equal(again, out)
    mask = hashed_mask(600, 512, 0.1, seed)
    x_ref, a_ref, b_ref = (t.detach().clone().requires_grad_() for t in (x, a, b))
    dropped = (x_ref.reshape(600, 512).float() * mask / 0.9).to(torch.bfloat16)
    reference = (x_ref.reshape(600, 512) @ weight.t()).float() + 2.0 * (
        (dropped.float() @ a_ref.t()) @ b_ref.t())
    torch.testing.assert_close(out.reshape(600, 768).float(), reference, atol=0.05, rtol=0.03)
    reference.pow(2).mean().backward()
    for expected, got in zip((x_ref.grad.float(), a_ref.grad, b_ref.grad), grads, strict=True):
        assert torch.nn.functional.cosine_similarity(expected.flatten(), got.flatten(), dim=0) > 0.995
    assert lora_dropout.new_seed() != lora_dropout.new_seed()


def test_the_early_gradient_head_matches_trl_s_fused_head_on_the_gpu():
    """The early-gradient head through TRL's Triton kernels, bf16 under autocast, a Qwen-sized vocabulary over two
    token tiles: TRL's outputs and, for SFT's uniform upstream gradient, its gradients to bf16 rounding."""
    from trl.kernels import ChunkedLogProbFunction

    from lab.train.early_head import EarlyGradLogProb

    torch.manual_seed(0)
    tokens, width, vocab = 5000, 896, 151936
    hidden = torch.randn(tokens, width, device="cuda", requires_grad=True)
    weight = (torch.randn(vocab, width, device="cuda") * 0.02).requires_grad_()
    targets = torch.randint(0, vocab, (tokens,), device="cuda")

    def run(function):
        hidden.grad = weight.grad = None
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logprobs, entropy, *_ = function.apply(hidden, weight, None, targets, 1.0, 32768, None, 1.0,
                                                   ("entropy",))
        (-logprobs.sum() / tokens).backward()
        return logprobs.detach(), entropy.detach(), hidden.grad.clone(), weight.grad.clone()

    expected, got = run(ChunkedLogProbFunction), run(EarlyGradLogProb)
    torch.testing.assert_close(got[0], expected[0], atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(got[1], expected[1], atol=2e-3, rtol=1e-3)
    for e, g in zip(expected[2:], got[2:], strict=True):
        assert torch.nn.functional.cosine_similarity(e.flatten(), g.flatten(), dim=0) > 0.9999
        torch.testing.assert_close(g, e, atol=1e-4, rtol=0.02)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("width", [896, 4096, 3000])
def test_rms_norm_backward_over_row_blocks_matches_liger_s(dtype, width):
    """The lab's RMSNorm backward gives Liger's dx and dw (the same arithmetic, another order of dw's sum), in place
    and not, through Liger's own autograd function once installed."""
    liger = pytest.importorskip("liger_kernel.ops.rms_norm")
    from lab.train import rms_norm_backward as rows

    torch.manual_seed(0)
    dtype = getattr(torch, dtype)
    x = torch.randn(4099, width, device="cuda", dtype=dtype)
    w = (torch.randn(width, device="cuda") * 0.1 + 1).requires_grad_()
    dy = torch.randn_like(x)
    _, saved, rstd, block, warps, mode = liger.rms_norm_forward(x, w.detach(), 1e-6, 0.0, "llama", None)
    want_dx, want_dw = liger.rms_norm_backward(dy.clone(), saved, w.detach(), rstd, 0.0, mode, block, warps, False,
                                               None)
    dx, dw = rows.rms_norm_backward(dy.clone(), saved, w.detach(), rstd, 0.0, in_place=False)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(dx, want_dx, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(dw, want_dw, rtol=1e-4, atol=1e-3)
    assert rows.install()
    xg = x.clone().requires_grad_()
    liger.LigerRMSNormFunction.apply(xg, w, 1e-6).backward(dy)
    torch.testing.assert_close(xg.grad, want_dx, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(w.grad, want_dw, rtol=1e-4, atol=1e-3)
