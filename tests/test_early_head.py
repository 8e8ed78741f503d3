"""The early-gradient head (lab.train.early_head): the LM head's gradient taken in the forward gives TRL's fused head's outputs and gradients for
SFT's uniform upstream gradient, and fails loudly for any other."""

from __future__ import annotations

import pytest
import torch
from trl.kernels import ChunkedLogProbFunction

from lab.train import early_head
from lab.train.early_head import EarlyGradLogProb

OUTPUTS = ("entropy", "is_top1")


def inputs(tokens: int = 37, hidden: int = 16, vocab: int = 300, bias: bool = True):
    torch.manual_seed(0)
    h = torch.randn(tokens, hidden, dtype=torch.float64, requires_grad=True)
    w = (torch.randn(vocab, hidden, dtype=torch.float64) * 0.3).requires_grad_()
    b = (torch.randn(vocab, dtype=torch.float64) * 0.1).requires_grad_() if bias else None
    targets = torch.randint(0, vocab, (tokens,))
    return h, w, b, targets


def run(function, h, w, b, targets, upstream, softcap=None):
    leaves = [t for t in (h, w, b) if t is not None]
    for t in leaves:
        t.grad = None
    logprobs, entropy, _, _, is_top1 = function.apply(h, w, b, targets, 0.7, 64, softcap, 1.3, OUTPUTS)
    (logprobs * upstream).sum().backward()
    return logprobs.detach(), entropy.detach(), is_top1, [t.grad.clone() for t in leaves]


@pytest.mark.parametrize("softcap", [None, 5.0])
def test_outputs_and_gradients_are_trl_s_for_a_uniform_upstream_gradient(monkeypatch, softcap):
    """Several token tiles (37 tokens, tiles of 16) and TRL's several vocabulary tiles (300 entries, tiles of 64)."""
    monkeypatch.setattr(early_head, "TILE_TOKENS", 16)
    h, w, b, targets = inputs()
    upstream = torch.full((37,), -1 / 37, dtype=torch.float64)  # SFT: minus the mean
    expected = run(ChunkedLogProbFunction, h, w, b, targets, upstream, softcap)
    got = run(EarlyGradLogProb, h, w, b, targets, upstream, softcap)
    for e, g in zip(expected[:2], got[:2], strict=True):
        torch.testing.assert_close(g, e)
    assert torch.equal(expected[2], got[2])
    for e, g in zip(expected[3], got[3], strict=True):  # TRL sums in fp32 over its vocabulary tiles, here over one
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)


def test_a_non_uniform_upstream_gradient_poisons_the_weight_s_gradient_and_entropy_s_is_refused():
    h, w, _, targets = inputs(bias=False)
    upstream = torch.linspace(0.1, 1.0, 37, dtype=torch.float64)
    expected = run(ChunkedLogProbFunction, h, w, None, targets, upstream)
    got = run(EarlyGradLogProb, h, w, None, targets, upstream)
    torch.testing.assert_close(got[3][0], expected[3][0], rtol=1e-4, atol=1e-6)  # the hidden states' gradient is exact token by token
    assert torch.isnan(got[3][1]).all()  # the weight's is not computable from the forward: NaN, not wrong
    logprobs, entropy, *_ = EarlyGradLogProb.apply(h, w, None, targets, 1.0, 64, None, 1.0, OUTPUTS)
    with pytest.raises(RuntimeError, match="no gradient through the entropy"):
        (logprobs.sum() + entropy.sum()).backward()


def test_this_trl_has_the_internals_it_runs_on_and_install_puts_it_in_trl_s_place(monkeypatch):
    """The speed plan chooses it only where TRL's source defines them (a TRL upgrade that renames them turns it
    off, and this test says so); the names read from the source are the ones the module finds once imported;
    ``install`` swaps the function TRL's forward calls."""
    import trl.trainer.utils as trl_utils
    from trl.kernels import chunked_logprob

    from lab.train import speed

    assert speed.trl_head_internals()
    modules = {"kernels/chunked_logprob.py": chunked_logprob, "trainer/utils.py": trl_utils}
    assert all(hasattr(modules[m], name) for m, names in speed.TRL_HEAD_NAMES.items() for name in names)
    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", trl_utils._ChunkedLogProbFunction)
    early_head.install()
    assert trl_utils._ChunkedLogProbFunction is EarlyGradLogProb
