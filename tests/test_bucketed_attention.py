"""Bucketed attention (lab.train.bucketed_attention, ``attention: bucketed``): examples grouped by length and
right-padded for SDPA's fixed-length kernels give each example's own causal attention, forward and backward."""

from __future__ import annotations

import pytest
import torch

from lab.config import TrainConfig, from_dict
from lab.errors import LabError
from lab.train import bucketed_attention as buckets
from lab.train import speed


def test_layout_groups_examples_by_padded_length_and_places_every_token_once():
    place = buckets.layout([5, 128, 130, 1, 300], bucket=128)
    assert place.batches == ((0, 3, 128), (384, 1, 256), (640, 1, 384))  # (first row, examples, length)
    assert place.rows == 1024 and place.tokens == 564
    dest = place.dest.tolist()
    assert len(set(dest)) == len(dest) and max(dest) < place.rows
    assert dest[:5] == [0, 1, 2, 3, 4]  # the first example opens the 128-token batch
    assert dest[5:133] == list(range(128, 256))  # the second, exactly 128 long, is its second row
    assert dest[133] == 384 and dest[263] == 256  # 130 tokens pad to 256; the 1-token example is the third 128 row


@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (6, 2)])
def test_outputs_and_gradients_are_each_example_s_own_causal_attention(heads, kv_heads):
    torch.manual_seed(0)
    lengths, dim = [37, 128, 1, 200, 129, 64], 16
    total = sum(lengths)
    boundaries = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    q = torch.randn(1, heads, total, dim, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, kv_heads, total, dim, dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, kv_heads, total, dim, dtype=torch.float64, requires_grad=True)
    got = buckets.bucketed_attention(q, k, v, boundaries, 0.3)
    expected = speed._per_example_sdpa(q, k, v, boundaries, 0.3)
    assert got.shape == expected.shape == (1, total, heads, dim)
    torch.testing.assert_close(got, expected)
    grad = torch.randn_like(got)
    for a, b in zip(torch.autograd.grad(got, (q, k, v), grad), torch.autograd.grad(expected, (q, k, v), grad),
                    strict=True):
        torch.testing.assert_close(a, b)


def test_the_layout_is_read_once_per_batch_and_made_again_for_the_next():
    boundaries = torch.tensor([0, 3, 10], dtype=torch.int32)
    first = buckets.cached_layout(boundaries, "cpu")
    assert buckets.cached_layout(boundaries, "cpu") is first  # the other layers of the same batch
    other = torch.tensor([0, 3, 10], dtype=torch.int32)
    assert buckets.cached_layout(other, "cpu") is not first  # a new batch, even with the same lengths


def test_the_plan_takes_bucketed_for_padding_free_batches_and_refuses_it_for_padded_ones():
    plan = speed.plan(from_dict(TrainConfig, {"packing": True, "attention": "bucketed"}), cuda=False,
                      model_type="llama", varlen=False, flash_attn=False, liger=False)
    assert plan.attention == speed.BUCKETED
    with pytest.raises(LabError, match="serves padding-free batches only"):
        speed.plan(from_dict(TrainConfig, {"padding_free": "off", "attention": "bucketed"}), cuda=False,
                   model_type="llama", varlen=False, flash_attn=False, liger=False)
