"""The decoder's step captured as a CUDA graph (lab.decode, ``mode="graph"``) against transformers' ``generate``, on
a GPU (run through the device tool: ``pytest -m gpu tests/test_decode_gpu.py``). The CPU tests (tests/
test_decode.py) check the same step uncaptured; here the capture itself: that replaying it gives the same tokens,
that a second call replays the graph it captured, and that a model the graph cannot hold still answers."""

from __future__ import annotations

import logging

import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

NEW_TOKENS = 40  # past CHECK_EVERY, so the host's stop check runs between replays


def qwen2_like():
    """A small random Qwen2 (grouped-query attention, biased projections) in float32, whose greedy replies change
    token by token (untied, larger weights), so a near tie between kernels is unlikely to flip a token."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         initializer_range=0.2, tie_word_embeddings=False)
    return Qwen2ForCausalLM(config).to("cuda").eval()


def left_padded_batch(rows: int, width: int = 24):
    """Random prompts of different lengths, padded on the left with id 0."""
    generator = torch.Generator().manual_seed(rows)
    ids = torch.randint(3, 500, (rows, width), generator=generator)
    mask = torch.ones_like(ids)
    for row in range(rows):
        pad = (row * 7) % (width - 2)
        mask[row, :pad] = 0
        ids[row, :pad] = 0
    return ids.cuda(), mask.cuda()


def greedy_generate(model, ids, mask):
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False,
                             pad_token_id=0, eos_token_id=None)
    return out[:, ids.shape[1]:].tolist()


def decode(model, ids, mask, mode: str = "graph"):
    from lab.decode import generate_static

    return generate_static(model, ids, mask, max_new_tokens=NEW_TOKENS, eos_token_id=None, pad_token_id=0,
                           mode=mode).tolist()


def decoder_of(model, ids):
    return model.__dict__["_lab_decoders"].shapes[(ids.shape[0], ids.shape[1] + NEW_TOKENS, "lab_decode")]


@pytest.fixture(scope="module")
def model():
    return qwen2_like()


@pytest.mark.parametrize("rows", [1, 8, 32])
def test_the_captured_step_answers_as_generate(model, rows, caplog):
    ids, mask = left_padded_batch(rows)
    with caplog.at_level(logging.WARNING, logger="lab.decode"):
        ours = decode(model, ids, mask)
    assert not caplog.records  # captured, not fallen back to eager
    assert decoder_of(model, ids).graph is not None
    assert ours == greedy_generate(model, ids, mask)
    assert ours == decode(model, ids, mask, mode="eager")  # the same kernels, replayed or launched


def test_a_second_call_replays_the_graph_it_captured(model):
    ids, mask = left_padded_batch(8, width=40)
    first = decode(model, ids, mask)
    decoder = decoder_of(model, ids)
    graph = decoder.graph
    other_ids, other_mask = left_padded_batch(8, width=40)
    other_ids[:, -5:] = 7  # other prompts, same shape
    second = decode(model, other_ids, other_mask)
    assert decoder_of(model, ids) is decoder and decoder.graph is graph  # no new capture
    assert second == greedy_generate(model, other_ids, other_mask) and second != first
    assert decode(model, ids, mask) == first


def test_the_compiled_step_answers_as_generate(model):
    """The path LAB_FAST_GENERATION=compile takes (torch.compile, about half a minute here)."""
    ids, mask = left_padded_batch(4)
    assert decode(model, ids, mask, mode="compile") == greedy_generate(model, ids, mask)
    assert not model.__dict__.get("_lab_compile_failed")


def test_a_model_that_waits_for_the_host_falls_back_to_eager_decoding(caplog):
    """A forward that reads a value on the host cannot be captured: the call warns, decodes eagerly, and gives
    the same tokens; later calls do not try again."""
    model = qwen2_like()
    norm = model.model.norm
    plain = norm.forward

    def syncing(hidden):
        if float(hidden.abs().sum()) < 0:  # a host read, as some architectures make in their forward
            raise AssertionError
        return plain(hidden)

    norm.forward = syncing
    ids, mask = left_padded_batch(4)
    with caplog.at_level(logging.WARNING, logger="lab.decode"):
        ours = decode(model, ids, mask)
    assert any("decoding eagerly" in r.getMessage() for r in caplog.records)
    assert model.__dict__.get("_lab_graph_failed")
    assert ours == greedy_generate(model, ids, mask)
    assert decode(model, ids, mask) == ours  # eager from now on, no second capture
