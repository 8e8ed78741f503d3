"""RMSNorm's backward pass over blocks of rows: Liger's arithmetic with the memory parallelism its kernel lacks.

For widths above 256, Liger's RMSNorm backward (``liger_kernel.ops.rms_norm``) runs one program per SM, each
walking its share of the rows one at a time (its block-of-rows kernel serves only narrower norms). One row of
Qwen2.5-0.5B's 896 or Llama's 4,096 values in flight per SM is too little to keep the memory busy: the packed 0.5B
step spent 21 ms a step in it, about four times what its bytes take at the H200's bandwidth (docs/benchmarks.md).
This kernel reads blocks of rows (``TILE`` values at a time), over ``PROGRAMS_PER_SM`` programs per SM, and sums
the weight's gradient per program as Liger does, so the arithmetic and the rounding are Liger's:

    m  = dy · (w + offset)                      (in fp32)
    dx = rstd · m − rstd³ / n · (m · x) x       (x in fp32, stored in x's dtype)
    dw = Σ_rows dy · (x · rstd in x's dtype)    (summed in fp32)

It takes Liger's place for the 'llama' casting mode (Llama, Qwen2, Mistral: the models Liger patches for the lab)
with a weight; every other case goes to Liger's own function. ``install`` swaps the function Liger's autograd
function calls, in the training worker, wherever the speed plan uses Liger's kernels. Measured on an H200
(``bench/rms_norm.py``): 0.451 -> 0.223 ms at 65,536 x 896 and 0.195 -> 0.168 ms at 8,192 x 4,096, the packed 0.5B
step 1.5% faster (docs/benchmarks.md); tests/test_speed_gpu.py checks it against Liger's on the GPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import triton
import triton.language as tl

TILE = 4096  # values of x (and of dy) read at a time by one program
PROGRAMS_PER_SM = 4
NARROWEST = 257  # Liger's block-of-rows kernel already serves widths up to 256
LLAMA = 0  # liger_kernel.ops.rms_norm._CASTING_MODE_LLAMA


@triton.jit
def _backward_kernel(dy_ptr, dx_ptr, x_ptr, w_ptr, rstd_ptr, dw_ptr, n_rows, n_cols, offset,
                     dy_stride, dx_stride, x_stride,
                     BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr, COMPUTE_DW: tl.constexpr):
    program, programs = tl.program_id(0), tl.num_programs(0)
    cols = tl.arange(0, BLOCK_COLS)
    inside_cols = cols < n_cols
    w = tl.load(w_ptr + cols, mask=inside_cols, other=0.0).to(tl.float32) + offset
    dw = tl.zeros((BLOCK_COLS,), dtype=tl.float32)
    for start in range(program * BLOCK_ROWS, n_rows, programs * BLOCK_ROWS):
        rows = start + tl.arange(0, BLOCK_ROWS)
        inside_rows = rows < n_rows
        inside = inside_rows[:, None] & inside_cols[None, :]
        rows64 = rows.to(tl.int64)[:, None]
        dy = tl.load(dy_ptr + rows64 * dy_stride + cols[None, :], mask=inside, other=0.0)
        x = tl.load(x_ptr + rows64 * x_stride + cols[None, :], mask=inside, other=0.0)
        rstd = tl.load(rstd_ptr + rows, mask=inside_rows, other=0.0)[:, None]
        xf = x.to(tl.float32)
        m = (dy * w[None, :]).to(tl.float32)
        dot = tl.sum(m * xf, axis=1)[:, None]
        dx = rstd * m - rstd * (rstd * rstd * dot / n_cols) * xf
        tl.store(dx_ptr + rows64 * dx_stride + cols[None, :], dx.to(x.dtype), mask=inside)
        if COMPUTE_DW:
            dw += tl.sum((dy * (xf * rstd).to(x.dtype)).to(tl.float32), axis=0)
    if COMPUTE_DW:
        tl.store(dw_ptr + program * n_cols + cols, dw, mask=inside_cols)


def handles(x: torch.Tensor, w: torch.Tensor | None, casting_mode: int) -> bool:
    """Whether this kernel takes the call: a weighted 'llama'-mode norm wider than 256 on a CUDA tensor."""
    return (w is not None and casting_mode == LLAMA and x.shape[-1] >= NARROWEST
            and (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"))


def rms_norm_backward(dy: torch.Tensor, x: torch.Tensor, w: torch.Tensor, rstd: torch.Tensor, offset: float,
                      in_place: bool, needs_dw: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(dx, dw) of ``y = x · rstd · (w + offset)``, with ``rstd`` saved by the forward; ``dx`` overwrites ``dy`` when
    ``in_place`` (Liger's default: ``dy`` is not needed after)."""
    shape = dy.shape
    dy, x = dy.reshape(-1, shape[-1]), x.reshape(-1, shape[-1])
    n_rows, n_cols = dy.shape
    block_cols = triton.next_power_of_2(n_cols)
    block_rows = max(1, TILE // block_cols)
    programs = max(1, min(triton.cdiv(n_rows, block_rows), PROGRAMS_PER_SM * multiprocessors(dy.device)))
    dx = dy if in_place else torch.empty_like(dy)
    dw_partial = torch.empty((programs, n_cols), dtype=torch.float32, device=dy.device) if needs_dw else None
    _backward_kernel[(programs,)](
        dy, dx, x, w, rstd, dw_partial if needs_dw else dy, n_rows, n_cols, float(offset),
        dy.stride(0), dx.stride(0), x.stride(0),
        BLOCK_ROWS=block_rows, BLOCK_COLS=block_cols, COMPUTE_DW=needs_dw, num_warps=8 if block_cols <= 8192 else 16)
    dw = dw_partial.sum(dim=0).to(w.dtype) if needs_dw else None
    return dx.view(*shape), dw


def multiprocessors(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1


def install() -> bool:
    """Route Liger's RMSNorm backward here where :func:`handles` says so; False where Liger is missing."""
    try:
        from liger_kernel.ops import rms_norm as liger
    except ImportError:
        return False
    if getattr(liger.rms_norm_backward, "lab_rows", False):
        return True
    liger.rms_norm_backward = routed(liger.rms_norm_backward)
    return True


def routed(liger_backward: Callable[..., Any]) -> Callable[..., Any]:
    """Liger's ``rms_norm_backward`` with the calls :func:`handles` takes sent to :func:`rms_norm_backward`."""
    def backward(dY, X, W, RSTD, offset, casting_mode, BLOCK_SIZE, num_warps, in_place, row_mode,
                 needs_dw=None):
        if row_mode or not handles(X, W, casting_mode):
            return liger_backward(dY, X, W, RSTD, offset, casting_mode, BLOCK_SIZE, num_warps, in_place, row_mode,
                                  needs_dw)
        return rms_norm_backward(dY, X, W, RSTD, offset, in_place, needs_dw=True if needs_dw is None else needs_dw)

    backward.lab_rows = True
    return backward
