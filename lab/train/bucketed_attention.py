"""Causal attention over a padding-free row through the fixed-length kernels: its examples grouped by length, each
group right-padded to one length and run as an ordinary batch (``attention: bucketed``).

Why: on an H200 the variable-length flash kernel (FlashAttention 2, the lab's ``varlen``) reaches about 90 TFLOP/s
on the packed 0.5B benchmark's examples (461 tokens on average, head dim 64), while SDPA's fixed-length kernel
(cuDNN on Hopper) runs rows of 2,048 at 375 TFLOP/s against flash's 201 (docs/benchmarks.md). cuDNN's own ragged
mode is not usable through torch 2.11 (a new graph for every batch, wrong gradients), hence the padding.

Why right padding is exact: under a causal mask a real query never sees the keys after it, padded ones included,
and a padded query's output is dropped, so its gradient is zero and adds nothing to any key's or value's gradient.
What it costs: the padded positions' work (examples are padded up to a multiple of ``BUCKET`` tokens, so at most
``BUCKET - 1`` rows each), copies into and out of the padded layout, and one read of the example lengths per batch
(a synchronisation, once per forward: the layout is kept for the next layers of the same batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

BUCKET = 128  # examples are padded up to a multiple of this many tokens


@dataclass(frozen=True)
class Layout:
    """Where each token of the row sits in the padded batches, and the batches: (first row, examples, length)."""

    tokens: int
    rows: int  # rows of the padded layout, all batches end to end
    dest: torch.Tensor  # (tokens,) each token's row in the padded layout
    batches: tuple[tuple[int, int, int], ...]


def layout(lengths: list[int], bucket: int = BUCKET, device: Any = None) -> Layout:
    """Group examples by their length rounded up to ``bucket``; each group is one batch of that length."""
    padded = [-(-n // bucket) * bucket for n in lengths]
    groups: dict[int, list[int]] = {}
    for i, length in enumerate(padded):
        groups.setdefault(length, []).append(i)
    starts = [0]
    for n in lengths:
        starts.append(starts[-1] + n)
    dest = torch.empty(starts[-1], dtype=torch.long)
    batches, row = [], 0
    for length in sorted(groups):
        members = groups[length]
        batches.append((row, len(members), length))
        for slot, i in enumerate(members):
            first = row + slot * length
            dest[starts[i]:starts[i + 1]] = torch.arange(first, first + lengths[i])
        row += len(members) * length
    return Layout(starts[-1], row, dest.to(device) if device is not None else dest, tuple(batches))


_last: tuple[Any, int, Layout] | None = None  # the boundaries tensor of the batch in flight, the bucket, the layout


def cached_layout(boundaries: torch.Tensor, device: Any, bucket: int = BUCKET) -> Layout:
    """The layout of this batch: computed at its first layer (reading the lengths back), reused by the others,
    which receive the same boundaries tensor."""
    global _last
    if _last is not None and _last[0] is boundaries and _last[1] == bucket:
        return _last[2]
    lengths = boundaries.diff().tolist()
    made = layout([int(n) for n in lengths], bucket, device)
    _last = (boundaries, bucket, made)
    return made


def bucketed_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, boundaries: torch.Tensor,
                       scaling: float | None, bucket: int = BUCKET) -> torch.Tensor:
    """``query`` (1, heads, tokens, dim), ``key``/``value`` (1, kv heads, tokens, dim), examples between
    ``boundaries``; returns (1, tokens, heads, dim), each example having attended causally to itself only."""
    place = cached_layout(boundaries, query.device, bucket)
    q, k, v = (t.squeeze(0).transpose(0, 1) for t in (query, key, value))  # (tokens, heads, dim) views

    def padded(t: torch.Tensor) -> torch.Tensor:  # in place on fresh zeros: the out-of-place copy would clone them
        return t.new_zeros((place.rows, *t.shape[1:])).index_copy_(0, place.dest, t)

    qp, kp, vp = padded(q), padded(k), padded(v)
    outs = []
    for first, examples, length in place.batches:
        def batch(t: torch.Tensor, first: int = first, examples: int = examples, length: int = length) -> Any:
            return t[first:first + examples * length].view(examples, length, *t.shape[1:]).transpose(1, 2)

        out = torch.nn.functional.scaled_dot_product_attention(batch(qp), batch(kp), batch(vp), is_causal=True,
                                                               scale=scaling, enable_gqa=q.shape[1] != k.shape[1])
        outs.append(out.transpose(1, 2).reshape(examples * length, *q.shape[1:]))
    return torch.cat(outs).index_select(0, place.dest).unsqueeze(0)
