"""The fast decoder (lab.decode) gives what transformers' ``generate`` gives: checked on the CPU, where the step that
a GPU captures as a CUDA graph (``Decoder.step``, on its static buffers) runs uncaptured, so any difference is in
the loop itself (cache positions, the step's own mask, padding, bucketing, stopping), not in kernels. The captured
step is checked on a GPU in tests/test_decode_gpu.py."""

from __future__ import annotations

import pytest

from lab.decode import generate_static
from lab.models import PROMPT_BUCKET, chat_texts, fast_replies, left_padded, load_tokenizer

PROMPTS = ["What is the capital of France?", "Hi", "Write a short poem about the sea, with a rhyme in each line."]


def varied_model(tokenizer):
    """A random Llama over the tiny tokenizer whose greedy replies change token by token. The tiny model itself
    (tied embeddings, small weights) repeats one token whatever it is shown, so it would not notice a step that
    saw the wrong positions or keys."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         initializer_range=0.2, tie_word_embeddings=False, bos_token_id=None,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def model_and_batch(tiny_home):
    tokenizer = load_tokenizer("tiny", home=tiny_home)
    model = varied_model(tokenizer)
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
                           eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, mode="eager")
    assert batch["attention_mask"][1].sum() < batch["attention_mask"][2].sum()  # really padded
    for ours, theirs in zip(fast.tolist(), reference.tolist()):
        assert tokenizer.decode(ours, skip_special_tokens=True) == tokenizer.decode(theirs, skip_special_tokens=True)


def test_a_second_call_reuses_the_cache_and_answers_the_same(model_and_batch):
    model, tokenizer, batch = model_and_batch
    args = dict(max_new_tokens=12, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                mode="eager")
    first = generate_static(model, batch["input_ids"], batch["attention_mask"], **args).tolist()
    decoder = model.__dict__["_lab_decoders"].shapes[(3, batch["input_ids"].shape[1] + 12, "lab_decode")]
    assert generate_static(model, batch["input_ids"], batch["attention_mask"], **args).tolist() == first
    assert model.__dict__["_lab_decoders"].shapes[(3, batch["input_ids"].shape[1] + 12, "lab_decode")] is decoder


def test_sampling_with_a_tiny_top_p_keeps_only_the_likeliest_token(model_and_batch):
    import torch

    model, tokenizer, batch = model_and_batch
    args = dict(max_new_tokens=10, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                mode="eager")
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
                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, mode="eager")
    assert model.config._attn_implementation == "sdpa"


QUESTIONS = [f"Question {i}: " + " ".join(["what is the capital of France and why"] * (1 + i % 4)) for i in range(11)]


def greedy_alone(model, tokenizer, text: str, new_tokens: int) -> list[int]:
    """``generate``'s greedy reply to one prompt, without any padding, cut after its end of sequence."""
    import torch

    batch = left_padded(tokenizer, [text], model.device)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return out[0, batch["input_ids"].shape[1]:].tolist()


@pytest.mark.parametrize("n", [1, 3, 5, 11])
def test_bucketed_batches_answer_each_prompt_as_generate_does_alone(model_and_batch, n):
    """fast_replies pads batches to powers of two (repeating a prompt) and prompts to multiples of PROMPT_BUCKET,
    sorts by length and puts the replies back in order: each reply is the one ``generate`` gives the prompt alone."""
    model, tokenizer, _ = model_and_batch
    texts = chat_texts(tokenizer, [[{"role": "user", "content": q}] for q in QUESTIONS[:n]])
    model.__dict__.pop("_lab_decoders", None)  # only this call's shapes
    replies = fast_replies(model, tokenizer, texts, max_new_tokens=16, temperature=0.0, top_p=1.0)
    expected = [tokenizer.decode(greedy_alone(model, tokenizer, t, 16), skip_special_tokens=True).strip() for t in texts]
    assert replies == expected
    batches = {key[0] for key in model.__dict__["_lab_decoders"].shapes}
    assert 1 << (n - 1).bit_length() in batches  # n prompts decode as one batch of the next power of two
    assert all((length - 16) % PROMPT_BUCKET == 0 for _, length, _ in model.__dict__["_lab_decoders"].shapes)


def test_batches_beyond_gpu_batch_are_split_and_answer_the_same(model_and_batch, monkeypatch):
    import lab.models

    model, tokenizer, _ = model_and_batch
    texts = chat_texts(tokenizer, [[{"role": "user", "content": q}] for q in QUESTIONS[:6]])
    whole = fast_replies(model, tokenizer, texts, max_new_tokens=8, temperature=0.0, top_p=1.0)
    monkeypatch.setattr(lab.models, "GPU_BATCH", 4)
    assert fast_replies(model, tokenizer, texts, max_new_tokens=8, temperature=0.0, top_p=1.0) == whole


def test_eager_attention_takes_the_step_mask_as_scores_and_answers_as_generate(model_and_batch):
    """With the "eager" implementation the step's mask is added to the scores (0 or the dtype's minimum)."""
    import torch

    model, tokenizer, batch = model_and_batch
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            reference = model.generate(**batch, max_new_tokens=12, do_sample=False,
                                       pad_token_id=tokenizer.pad_token_id)[:, batch["input_ids"].shape[1]:]
        fast = generate_static(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=12,
                               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, mode="eager")
    finally:
        model.set_attn_implementation("sdpa")
    for ours, theirs in zip(fast.tolist(), reference.tolist()):
        assert tokenizer.decode(ours, skip_special_tokens=True) == tokenizer.decode(theirs, skip_special_tokens=True)


def test_sliding_window_models_are_left_to_generate():
    """Their cache layers track their length on the host and need a windowed mask: the decoder says so, and
    generate_static refuses them with that reason."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from lab.decode import unsupported
    from lab.errors import LabError

    config = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, use_sliding_window=True, sliding_window=8,
                         max_window_layers=0, layer_types=["sliding_attention", "full_attention"])
    model = Qwen2ForCausalLM(config)
    reason = unsupported(model)
    assert reason and "Sliding" in reason
    import torch

    ids = torch.ones(1, 4, dtype=torch.long)
    with pytest.raises(LabError, match="cannot answer"):
        generate_static(model, ids, ids, max_new_tokens=2, eos_token_id=None, pad_token_id=0)
    config.use_sliding_window, config.layer_types = False, ["full_attention"] * 2
    assert unsupported(Qwen2ForCausalLM(config)) is None
