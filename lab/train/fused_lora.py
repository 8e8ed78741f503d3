"""LoRA layers as one autograd function: ``base(x) + s · B(A(dropout(x)))`` for a frozen base (16-bit or 4-bit),
with a backward written for it (``fused_lora``, auto = on for LoRA and QLoRA).

PEFT builds the layer from separate operators: the base's product, a dropout, the adapter's two products, a scale and
an addition. Autograd then runs each one's backward and adds the input's two gradients (the base's and the
adapter's) in a separate pass. On an 8B model that is 224 layers, each passing several tokens × width tensors
through memory that the products could have carried:

- forward: the adapter's product is added onto the base's output inside one ``addmm``;
- backward: the input's gradient through the adapter (with dropout's mask applied) is computed first and the base's
  product accumulates into it (``addmm_``), so the two paths' sum costs no pass of its own; the scale is folded
  into the rank-sized tensors.

On a CUDA GPU with Triton, LoRA dropout runs in :mod:`lab.train.lora_dropout`'s kernels, which drop out the input
as they read it: the layer keeps only its input (shared by q, k and v, and by gate and up) and the rank-sized
down-projection, not PEFT's dropped-out copy and mask per layer, more than half of an 8B LoRA step's activation
memory. Elsewhere (a CPU, 32-bit inputs) the mask is drawn as PEFT's is (one per layer, from the same generator) and
kept with the dropped input, so the same seed gives PEFT's loss and gradients. The base's 16-bit weight is the
layer's own (a 4-bit weight is dequantised again in the backward, as bitsandbytes does). Anything but one plain
adapter in training (DoRA and other variants, several or disabled adapters, merged weights, mixed-adapter batches,
an adapter bias, a base whose weight or bias trains) goes through PEFT's own forward.
"""

from __future__ import annotations

import importlib.util
import types
from typing import Any

import torch

from lab.train.speed import MAX_HASHED_RANK

TRITON = importlib.util.find_spec("triton") is not None


def fuse_lora(model: Any) -> int:
    """Replace the forward of every PEFT LoRA linear layer (16-bit and 4-bit bases) with :func:`fused_lora_forward`;
    returns how many were replaced. Applied once PEFT has wrapped the model."""
    from peft.tuners.lora import Linear

    kinds: tuple[type, ...] = (Linear,)
    try:
        from peft.tuners.lora.bnb import Linear4bit

        kinds += (Linear4bit,)
    except ImportError:  # bitsandbytes is not installed: no quantised layers to meet
        pass
    count = 0
    for module in model.modules():
        if isinstance(module, kinds) and "_lab_peft_forward" not in module.__dict__:
            module.__dict__["_lab_peft_forward"] = module.forward
            module.forward = types.MethodType(fused_lora_forward, module)
            count += 1
    return count


def fused_lora_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """The layer's forward through :class:`LoraLinear` where it is one plain adapter over a frozen base; else PEFT's."""
    active = self.active_adapters
    name = active[0] if len(active) == 1 else None
    base = self.get_base_layer()
    plain = (name is not None and not args and not kwargs and not self.disable_adapters and not self.merged
             and name in self.lora_A and name not in self.lora_variant and self.lora_B[name].bias is None
             and not base.weight.requires_grad and (base.bias is None or not base.bias.requires_grad)
             and getattr(self.lora_dropout[name], "p", 0.0) < 1
             and (torch.is_autocast_enabled(x.device.type) or x.dtype == self.lora_A[name].weight.dtype))
    if not plain:
        return self.__dict__["_lab_peft_forward"](x, *args, **kwargs)
    dropout = self.lora_dropout[name]
    p = dropout.p if isinstance(dropout, torch.nn.Dropout) and dropout.training else 0.0
    return LoraLinear.apply(x, base.weight, base.bias, self.lora_A[name].weight, self.lora_B[name].weight,
                            self.scaling[name], p)


def dense_weight(weight: torch.Tensor, quant_state: Any, dtype: torch.dtype) -> torch.Tensor:
    """A base layer's weight (out × in) in ``dtype``; a 4-bit one (with its ``quant_state``) dequantised, as
    bitsandbytes' own product does it."""
    if quant_state is not None:
        import bitsandbytes.functional as bnb

        weight = bnb.dequantize_4bit(weight, quant_state)
    return weight.to(dtype)


def hashed_dropout(flat: torch.Tensor, rank: int) -> bool:
    """Whether the dropout runs in :mod:`lab.train.lora_dropout`'s kernels: on a CUDA GPU with Triton, for a 16-bit
    input and a rank the kernels' tiles hold, outside torch.compile (which traces torch's own dropout)."""
    return (flat.is_cuda and flat.dtype in (torch.bfloat16, torch.float16) and rank <= MAX_HASHED_RANK and TRITON
            and not torch.compiler.is_compiling())


class LoraLinear(torch.autograd.Function):
    """``x Wᵀ + bias + scaling · dropout(x) Aᵀ Bᵀ`` with W and the bias frozen; gradients for x, A and B."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lora_a: torch.Tensor,
                lora_b: torch.Tensor, scaling: float, p: float) -> torch.Tensor:
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        quant_state = getattr(weight, "quant_state", None)
        seed = None
        with torch.autocast(device, enabled=False):
            flat = x.reshape(-1, x.shape[-1]).to(dtype)
            a, b = lora_a.to(dtype), lora_b.to(dtype)
            if p and hashed_dropout(flat, a.shape[0]):  # keeps x itself (shared by q, k and v): no copy, no mask
                from lab.train import lora_dropout

                seed, kept, mask = lora_dropout.new_seed(), flat.contiguous(), None
                down = lora_dropout.dropped_down(kept, a, p, seed)
            else:
                kept, mask = torch.native_dropout(flat, p, True) if p else (flat, None)
                down = kept @ a.t()
            base = torch.nn.functional.linear(flat, dense_weight(weight, quant_state, dtype),
                                              bias.to(dtype) if bias is not None else None)
            out = torch.addmm(base, down, b.t(), alpha=scaling)
        ctx.save_for_backward(weight, a, b, kept, mask, down)
        ctx.quant_state, ctx.scaling, ctx.p, ctx.seed = quant_state, scaling, p, seed
        ctx.x_shape, ctx.x_dtype, ctx.param_dtypes = x.shape, x.dtype, (lora_a.dtype, lora_b.dtype)
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight, a, b, kept, mask, down = ctx.saved_tensors
        hashed = ctx.seed is not None
        if hashed:
            from lab.train import lora_dropout
        g = grad.reshape(-1, grad.shape[-1]).to(a.dtype)
        g_down = g @ (b * ctx.scaling)  # tokens × rank: the scale folded in where it is cheap
        grad_a = grad_b = grad_x = None
        if ctx.needs_input_grad[3]:
            grad_a = lora_dropout.dropped_grad_a(g_down, kept, ctx.p, ctx.seed) if hashed else g_down.t() @ kept
            grad_a = grad_a.to(ctx.param_dtypes[0])
        if ctx.needs_input_grad[4]:
            grad_b = (g.t() @ (down * ctx.scaling)).to(ctx.param_dtypes[1])
        if ctx.needs_input_grad[0]:
            if hashed:
                through_adapter = lora_dropout.dropped_grad_x(g_down, a, ctx.p, ctx.seed)
            else:
                through_adapter = g_down @ a
                if mask is not None:
                    through_adapter = torch.ops.aten.native_dropout_backward(through_adapter, mask, 1 / (1 - ctx.p))
            # the base's product accumulates onto the adapter's path: the two gradients' sum costs no pass of its own
            dense = dense_weight(weight, ctx.quant_state, a.dtype)
            grad_x = through_adapter.addmm_(g, dense).view(ctx.x_shape).to(ctx.x_dtype)
        return grad_x, None, None, grad_a, grad_b, None, None
