"""The fast decoder (lab.decode) gives what transformers' ``generate`` gives: checked on the CPU, where nothing is
compiled, so any difference is in the loop itself (cache positions, padding, stopping), not in kernels."""

from __future__ import annotations

import pytest

from lab.decode import generate_static
from lab.models import left_padded, load_for_generation

PROMPTS = ["What is the capital of France?", "Hi", "Write a short poem about the sea, with a rhyme in each line."]


@pytest.fixture(scope="module")
def model_and_batch(tiny_home):
    model, tokenizer = load_for_generation("tiny", tiny_home)
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in PROMPTS]
    return model, tokenizer, left_padded(tokenizer, texts, model.device)


def test_greedy_static_decoding_equals_generate_on_a_left_padded_batch(model_and_batch):
    import torch

    model, tokenizer, batch = model_and_batch
    with torch.no_grad():
        reference = model.generate(**batch, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    reference = reference[:, batch["input_ids"].shape[1]:]
    fast = generate_static(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=24,
                           eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, compile=False)
    assert batch["attention_mask"][1].sum() < batch["attention_mask"][2].sum()  # really padded
    for ours, theirs in zip(fast.tolist(), reference.tolist()):
        assert tokenizer.decode(ours, skip_special_tokens=True) == tokenizer.decode(theirs, skip_special_tokens=True)


def test_a_second_call_reuses_the_cache_and_answers_the_same(model_and_batch):
    model, tokenizer, batch = model_and_batch
    args = dict(max_new_tokens=12, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                compile=False)
    first = generate_static(model, batch["input_ids"], batch["attention_mask"], **args).tolist()
    assert generate_static(model, batch["input_ids"], batch["attention_mask"], **args).tolist() == first
    assert len(model.__dict__["_lab_static_caches"]) >= 1


def test_sampling_with_a_tiny_top_p_keeps_only_the_likeliest_token(model_and_batch):
    import torch

    model, tokenizer, batch = model_and_batch
    args = dict(max_new_tokens=10, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                compile=False)
    greedy = generate_static(model, batch["input_ids"], batch["attention_mask"], **args)
    torch.manual_seed(0)
    nucleus = generate_static(model, batch["input_ids"], batch["attention_mask"], temperature=0.7, top_p=1e-6, **args)
    assert nucleus.tolist() == greedy.tolist()
    torch.manual_seed(0)
    sampled = generate_static(model, batch["input_ids"], batch["attention_mask"], temperature=5.0, **args)
    assert sampled.tolist() != greedy.tolist()  # a hot sample of a random model wanders off the greedy path


def test_decode_attention_reads_each_key_value_head_once_and_matches_sdpa():
    """The packed one-token path gives SDPA's answer (keys repeated per query head) under a padding mask."""
    import types

    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from lab.decode import decode_attention

    torch.manual_seed(0)
    module = types.SimpleNamespace(num_key_value_groups=3, is_causal=True)
    query, key, value = torch.randn(4, 6, 1, 8), torch.randn(4, 2, 10, 8), torch.randn(4, 2, 10, 8)
    mask = torch.ones(4, 1, 1, 10, dtype=torch.bool)
    mask[0, ..., :4] = False  # a left-padded row
    mask[2, ..., 7:] = False  # positions not written yet
    ours, _ = decode_attention(module, query, key, value, mask, scaling=0.3)
    theirs, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.3)
    assert ours.shape == theirs.shape == (4, 1, 6, 8)
    assert torch.allclose(ours, theirs, atol=1e-6)
    prefill, _ = decode_attention(module, torch.randn(4, 6, 10, 8), key, value, None, scaling=0.3)
    assert prefill.shape == (4, 10, 6, 8)  # longer queries go to SDPA unchanged


def test_decoding_switches_attention_only_for_the_call(model_and_batch):
    model, tokenizer, batch = model_and_batch
    assert model.config._attn_implementation == "sdpa"
    assert model.config.num_attention_heads > model.config.num_key_value_heads  # the packed path is exercised
    generate_static(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=4,
                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, compile=False)
    assert model.config._attn_implementation == "sdpa"
