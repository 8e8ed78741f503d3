"""The LM head's gradient taken in the forward pass, for SFT's loss: 6 rather than 8 FLOPs per head weight and token.

TRL's fused head (``trl.kernels.chunked_logprob.ChunkedLogProbFunction``) projects each tile of tokens onto the
vocabulary in the forward, keeps only per-token statistics, and in the backward projects every tile again to turn
it into the logits' gradient: two products forward (the projection and its recomputation) and two backward (the
gradients of the hidden states and of the weight). When the loss is a plain mean of the log-probabilities (SFT's
``nll``), the upstream gradient of every scored token is the same number, so the logits' gradient of a tile is
known, up to that number, as soon as its log-normaliser is: here each tile of tokens is projected onto the whole
vocabulary once, folded with TRL's own kernels, turned into ``d log p / d logits`` in place, and both gradient
products are taken at once. The backward scales them by the upstream gradient.

- The hidden states' gradient is exact for any upstream gradient (it is scaled token by token).
- The weight's gradient sums over tokens, so it is exact only for a uniform upstream gradient. Any other makes it
  NaN, so a misuse fails loudly in the gradient norm instead of training on a wrong gradient; a gradient through the
  entropy is refused outright.
- It costs one tile of ``tokens × vocabulary`` 16-bit logits (4,096 × 151,936 × 2 bytes = 1.2 GB for Qwen2.5) and the
  two fp32 gradients from the forward to the backward, which TRL allocates at the start of the backward anyway.

The speed plan chooses it (``lab.train.speed.early_head_choice``) for SFT on one GPU, where it was measured
faster (docs/benchmarks.md); :func:`install` puts it in TRL's place in the training worker.
"""

from __future__ import annotations

from typing import Any

import torch

from lab.train.speed import EARLY_HEAD_TILE_TOKENS as TILE_TOKENS  # the estimate counts the same tile


class EarlyGradLogProb(torch.autograd.Function):
    """``ChunkedLogProbFunction``'s outputs, with the gradients of the hidden states and the weight computed in the
    forward for a unit upstream gradient and scaled in the backward (same arguments, same outputs)."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                targets: torch.Tensor, temperature: float, chunk_size: int,
                final_logit_softcapping: float | None = None, logit_scale: float = 1.0,
                outputs: tuple[str, ...] = ()) -> tuple[torch.Tensor | None, ...]:
        from trl.kernels import chunked_logprob as trl_head

        ctx.set_materialize_grads(False)
        device, (tokens, vocab) = hidden.device, (hidden.shape[0], weight.shape[0])
        compute = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else hidden.dtype
        args = {"logit_scale": logit_scale, "softcap": final_logit_softcapping or 1.0, "inv_t": 1 / temperature,
                "HAS_SOFTCAP": final_logit_softcapping is not None}
        flags = {f"HAS_{name.upper()}": name in outputs for name in trl_head.OPTIONAL_OUTPUTS}
        running_max = torch.full((tokens,), float("-inf"), device=device, dtype=torch.float32)
        max_before_target = torch.full((tokens,), float("-inf"), device=device, dtype=torch.float32)
        sum_exp, x_sum_exp, sq_sum_exp, z_sum, target_logit = (
            torch.zeros((tokens,), device=device, dtype=torch.float32) for _ in range(5))
        grad_hidden = torch.zeros(hidden.shape, device=device, dtype=torch.float32) if ctx.needs_input_grad[0] \
            else None
        grad_weight = torch.zeros(weight.shape, device=device, dtype=torch.float32) if ctx.needs_input_grad[1] \
            else None
        grad_bias = torch.zeros(bias.shape, device=device, dtype=torch.float32) \
            if bias is not None and ctx.needs_input_grad[2] else None
        w = weight.to(compute)
        tile_buffer = torch.empty((min(tokens, TILE_TOKENS), vocab), device=device, dtype=compute)
        unit = torch.ones((min(tokens, TILE_TOKENS),), device=device, dtype=torch.float32)
        triton = trl_head._use_triton(device)
        for first in range(0, tokens, TILE_TOKENS):
            rows = slice(first, min(first + TILE_TOKENS, tokens))
            n = rows.stop - first
            chunk = hidden[rows].to(compute)
            tile = tile_buffer[:n]
            torch.mm(chunk, w.t(), out=tile)
            if bias is not None:
                tile.add_(bias.to(compute))
            fold = trl_head._forward_kernel[(n,)] if triton else trl_head._forward_tile
            fold(tile, tile.stride(0), targets[rows], running_max[rows], sum_exp[rows], x_sum_exp[rows],
                 sq_sum_exp[rows], z_sum[rows], max_before_target[rows], target_logit[rows], 0, vocab,
                 BLOCK_SIZE=trl_head._BLOCK_SIZE, **flags, **args)
            log_z = running_max[rows] + torch.log(sum_exp[rows])  # final: the tile holds the whole vocabulary
            to_gradient = (trl_head._backward_kernel[(n, -(-vocab // trl_head._BLOCK_SIZE))] if triton
                           else trl_head._backward_tile)
            to_gradient(tile, tile.stride(0), targets[rows], log_z, log_z, unit[:n], log_z, 0, vocab,
                        HAS_LOGPROB_GRAD=True, HAS_ENTROPY_GRAD=False, BLOCK_SIZE=trl_head._BLOCK_SIZE, **args)
            if grad_hidden is not None:
                trl_head._addmm_fp32(grad_hidden[rows], tile, w)
            if grad_weight is not None:
                trl_head._addmm_fp32(grad_weight, tile.t(), chunk)
            if grad_bias is not None:
                grad_bias += tile.sum(dim=0, dtype=torch.float32)
        log_z = running_max + torch.log(sum_exp)
        logprobs = target_logit - log_z
        entropy = log_z - x_sum_exp / sum_exp if "entropy" in outputs else None
        log_sum_sq_probs = torch.log(sq_sum_exp) - 2 * torch.log(sum_exp) if "log_sum_sq_probs" in outputs else None
        mean_logits = z_sum / vocab if "mean_logits" in outputs else None
        is_top1 = (target_logit >= running_max) & (target_logit > max_before_target) if "is_top1" in outputs \
            else None
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.dtypes = hidden.dtype, weight.dtype, bias.dtype if bias is not None else None
        ctx.mark_non_differentiable(*(x for x in (log_sum_sq_probs, mean_logits, is_top1) if x is not None))
        return logprobs, entropy, log_sum_sq_probs, mean_logits, is_top1

    @staticmethod
    def backward(ctx: Any, grad_logprobs: torch.Tensor | None, grad_entropy: torch.Tensor | None,
                 *_: Any) -> tuple[torch.Tensor | None, ...]:
        if grad_entropy is not None:
            raise RuntimeError("the early-gradient LM head (lab.train.early_head) takes no gradient through the "
                               "entropy; the speed plan should not have chosen it for this loss")
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        if grad_logprobs is None:
            return (None,) * 9
        g = grad_logprobs.float()
        # the weight's and bias's gradients sum over tokens: exact for a uniform upstream gradient, NaN otherwise
        uniform = torch.where(g.amax() == g.amin(), g[0], torch.full_like(g[0], float("nan"))) if g.numel() \
            else g.new_zeros(())
        hidden_dtype, weight_dtype, bias_dtype = ctx.dtypes
        return ((grad_hidden * g[:, None]).to(hidden_dtype) if grad_hidden is not None else None,
                (grad_weight * uniform).to(weight_dtype) if grad_weight is not None else None,
                (grad_bias * uniform).to(bias_dtype) if grad_bias is not None else None,
                None, None, None, None, None, None)


def install() -> None:
    """Make TRL's fused head forward (``trl.trainer.utils``) use :class:`EarlyGradLogProb` in this process."""
    import trl.trainer.utils as trl_utils

    trl_utils._ChunkedLogProbFunction = EarlyGradLogProb
