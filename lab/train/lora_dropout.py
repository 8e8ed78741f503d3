"""LoRA's dropout without its copies: Triton kernels that drop out the adapter's input as they read it.

PEFT (and :class:`lab.train.fused_lora.LoraLinear` on a CPU) makes a dropped-out copy of every adapted layer's
input and a one-byte mask, keeps both for the backward pass, and reads and writes them again there: on Llama-3.1-8B
with LoRA dropout that is more than half of a LoRA step's activation memory (seven copies and masks a layer), and
seven passes over a tokens × width tensor a layer that the products do not need. Here the keep-or-drop decision of
element (t, c) is a hash of (seed, t, c), computed where the element is read:

- :func:`dropped_down`: ``dropout(x) Aᵀ``, reading x once (the forward);
- :func:`dropped_grad_a`: ``gᵀ dropout(x)``, the gradient of A, reading x again (the backward);
- :func:`dropped_grad_x`: ``(g A) ⊙ mask / (1 - p)``, the input's gradient through the adapter, written once.

So only x is kept (shared by q, k and v, and by gate and up), and the mask is never stored. Each element is kept
with probability 1 - p, independently (a 32-bit hash, compared with p · 2³²), as PEFT's dropout keeps it; the
random numbers are the lab's, not torch's, so a seed gives other masks than PEFT's. The seed comes from torch's CPU
generator, so ``torch.manual_seed`` repeats a run and gradient checkpointing's recomputation (which restores that
generator) draws the same masks.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_T, BLOCK_K = 64, 128
SPLIT_T = 8  # row ranges the gradient of A is summed over in parallel, then added


@triton.jit
def _mix(h):
    """murmur3's 32-bit finaliser: every input bit reaches every output bit."""
    h ^= h >> 16
    h *= 0x85EBCA6B
    h ^= h >> 13
    h *= 0xC2B2AE35
    h ^= h >> 16
    return h


@triton.jit
def _keep(seed, rows, cols, threshold):
    """Whether element (row, col) survives: a (rows × cols) block of booleans, the same in every kernel."""
    row_key = _mix(rows.to(tl.uint32) * 0x9E3779B1 + seed)
    return _mix(row_key[:, None] ^ (cols.to(tl.uint32) * 0x85EBCA77)[None, :]).to(tl.int64) >= threshold


@triton.jit
def _dropped_tile(x_ptr, rows, cols, T, K, seed, threshold, scale):
    """The (rows × cols) block of x (tokens × K, row-major) with dropout applied, in x's dtype: zeros outside x."""
    inside = (rows[:, None] < T) & (cols[None, :] < K)
    x = tl.load(x_ptr + rows[:, None].to(tl.int64) * K + cols[None, :], mask=inside, other=0.0)
    return tl.where(_keep(seed, rows, cols, threshold), x.to(tl.float32) * scale, 0.0).to(x_ptr.dtype.element_ty)


@triton.jit
def _down_kernel(x_ptr, a_ptr, out_ptr, T, K, R, seed, threshold, scale,
                 BT: tl.constexpr, BK: tl.constexpr, BR: tl.constexpr):
    rows = tl.program_id(0) * BT + tl.arange(0, BT)
    ranks = tl.arange(0, BR)
    acc = tl.zeros((BT, BR), dtype=tl.float32)
    for block in range(tl.cdiv(K, BK)):
        cols = block * BK + tl.arange(0, BK)
        x = _dropped_tile(x_ptr, rows, cols, T, K, seed, threshold, scale)
        a = tl.load(a_ptr + ranks[None, :] * K + cols[:, None], mask=(ranks[None, :] < R) & (cols[:, None] < K),
                    other=0.0)
        acc += tl.dot(x, a)
    tl.store(out_ptr + rows[:, None].to(tl.int64) * R + ranks[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=(rows[:, None] < T) & (ranks[None, :] < R))


@triton.jit
def _grad_a_kernel(g_ptr, x_ptr, out_ptr, T, K, R, rows_per_split, seed, threshold, scale,
                   BT: tl.constexpr, BK: tl.constexpr, BR: tl.constexpr):
    cols = tl.program_id(0) * BK + tl.arange(0, BK)
    split = tl.program_id(1)
    ranks = tl.arange(0, BR)
    acc = tl.zeros((BR, BK), dtype=tl.float32)
    for block in range(tl.cdiv(rows_per_split, BT)):
        rows = split * rows_per_split + block * BT + tl.arange(0, BT)
        x = _dropped_tile(x_ptr, rows, cols, T, K, seed, threshold, scale)
        g = tl.load(g_ptr + rows[None, :].to(tl.int64) * R + ranks[:, None],
                    mask=(rows[None, :] < T) & (ranks[:, None] < R), other=0.0)
        acc += tl.dot(g, x)
    tl.store(out_ptr + split * R * K + ranks[:, None] * K + cols[None, :], acc,
             mask=(ranks[:, None] < R) & (cols[None, :] < K))


@triton.jit
def _grad_x_kernel(g_ptr, a_ptr, out_ptr, T, K, R, seed, threshold, scale,
                   BT: tl.constexpr, BK: tl.constexpr, BR: tl.constexpr):
    rows = tl.program_id(0) * BT + tl.arange(0, BT)
    cols = tl.program_id(1) * BK + tl.arange(0, BK)
    ranks = tl.arange(0, BR)
    g = tl.load(g_ptr + rows[:, None].to(tl.int64) * R + ranks[None, :],
                mask=(rows[:, None] < T) & (ranks[None, :] < R), other=0.0)
    a = tl.load(a_ptr + ranks[:, None] * K + cols[None, :], mask=(ranks[:, None] < R) & (cols[None, :] < K),
                other=0.0)
    product = tl.dot(g, a)
    product = tl.where(_keep(seed, rows, cols, threshold), product * scale, 0.0)
    tl.store(out_ptr + rows[:, None].to(tl.int64) * K + cols[None, :], product.to(out_ptr.dtype.element_ty),
             mask=(rows[:, None] < T) & (cols[None, :] < K))


def _settings(p: float) -> tuple[int, float]:
    """(the hash's threshold below which an element is dropped, the survivors' scale)."""
    return min(int(p * 2**32), 2**32 - 1), 1.0 / (1.0 - p)


def _rank_block(rank: int) -> int:
    return max(16, triton.next_power_of_2(rank))  # tl.dot's smallest side is 16


def new_seed() -> int:
    """A mask's seed, from torch's CPU generator (no GPU synchronisation; checkpointing restores it)."""
    return int(torch.randint(0, 2**31 - 1, (1,)).item())


def dropped_down(x: torch.Tensor, a: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """``dropout(x) @ a.T`` for x (tokens × in, contiguous) and a (rank × in), in x's dtype."""
    tokens, width = x.shape
    rank = a.shape[0]
    out = torch.empty(tokens, rank, device=x.device, dtype=x.dtype)
    threshold, scale = _settings(p)
    _down_kernel[(triton.cdiv(tokens, BLOCK_T),)](x, a.contiguous(), out, tokens, width, rank, seed, threshold,
                                                  scale, BT=BLOCK_T, BK=BLOCK_K, BR=_rank_block(rank))
    return out


def dropped_grad_a(g_down: torch.Tensor, x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """``g_down.T @ dropout(x)`` (rank × in, fp32) with the forward's mask."""
    tokens, width = x.shape
    rank = g_down.shape[1]
    parts = torch.empty(SPLIT_T, rank, width, device=x.device, dtype=torch.float32)
    rows_per_split = triton.cdiv(triton.cdiv(tokens, SPLIT_T), BLOCK_T) * BLOCK_T
    threshold, scale = _settings(p)
    _grad_a_kernel[(triton.cdiv(width, BLOCK_K), SPLIT_T)](g_down.contiguous(), x, parts, tokens, width, rank,
                                                           rows_per_split, seed, threshold, scale, BT=BLOCK_T,
                                                           BK=BLOCK_K, BR=_rank_block(rank))
    return parts.sum(0)


def dropped_grad_x(g_down: torch.Tensor, a: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """``(g_down @ a) ⊙ mask / (1 - p)`` (tokens × in, in g_down's dtype) with the forward's mask."""
    tokens, rank = g_down.shape
    width = a.shape[1]
    out = torch.empty(tokens, width, device=g_down.device, dtype=g_down.dtype)
    threshold, scale = _settings(p)
    _grad_x_kernel[(triton.cdiv(tokens, BLOCK_T), triton.cdiv(width, BLOCK_K))](
        g_down.contiguous(), a.contiguous(), out, tokens, width, rank, seed, threshold, scale, BT=BLOCK_T,
        BK=BLOCK_K, BR=_rank_block(rank))
    return out
