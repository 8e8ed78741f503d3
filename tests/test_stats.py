"""Dataset statistics on hand-made rows: lengths in words and tokens, turns, roles, summary."""

from __future__ import annotations

import pytest

from lab.data.canonical import Row
from lab.data.stats import dataset_stats

SFT = [
    Row({"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "What is two plus two?"},
                      {"role": "assistant", "content": "Four."}]}, 1),
    Row({"messages": [{"role": "user", "content": "Hi there"},
                      {"role": "assistant", "content": "Hello friend"},
                      {"role": "user", "content": "Name a colour"},
                      {"role": "assistant", "content": "Blue is a colour"}]}, 2),
]
PREFERENCE = [
    Row({"prompt": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Pick one, please"}],
         "chosen": [{"role": "assistant", "content": "The red one."}],
         "rejected": [{"role": "assistant", "content": "No"}]}, 1),
    Row({"prompt": [{"role": "user", "content": "Say hi"}],
         "chosen": [{"role": "assistant", "content": "Hi!"}],
         "rejected": [{"role": "assistant", "content": "Go away now"}]}, 2),
]


def word_tokenizer():
    """One token per word and per punctuation run, no template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "<s>": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", bos_token="<s>")


def test_sft_word_counts_turns_and_roles():
    stats = dataset_stats(SFT)
    assert (stats.n_rows, stats.kind, stats.unit) == (2, "sft", "words")
    assert stats.prompt_tokens == [2 + 5, 2 + 2 + 3]  # everything before the last reply, system included
    assert stats.response_tokens == [1, 4]
    assert stats.rejected_tokens == []
    assert stats.turns == [1, 2]
    assert stats.role_counts == {"system": 1, "user": 3, "assistant": 3}


def test_token_counts_with_a_tokenizer_count_punctuation_and_add_no_special_tokens():
    stats = dataset_stats(SFT, word_tokenizer())
    assert stats.unit == "tokens"
    assert stats.prompt_tokens == [3 + 6, 2 + 2 + 3]  # "Be brief." is 3 tokens, the question 6
    assert stats.response_tokens == [2, 4]


def test_preference_counts_chosen_as_response_and_keeps_rejected():
    stats = dataset_stats(PREFERENCE)
    assert stats.kind == "preference"
    assert stats.prompt_tokens == [2 + 3, 2]
    assert stats.response_tokens == [3, 1]
    assert stats.rejected_tokens == [1, 3]
    assert stats.turns == [1, 1]
    assert stats.role_counts == {"system": 1, "user": 2, "chosen": 2, "rejected": 2}


def test_summary_gives_mean_median_p95_and_max():
    summary = dataset_stats(SFT).summary()
    assert set(summary) == {"prompt_tokens", "response_tokens", "turns"}
    assert summary["response_tokens"] == {"mean": 2.5, "median": 2.5, "p95": pytest.approx(3.85), "max": 4.0}
    assert summary["prompt_tokens"]["max"] == 7.0
    assert set(dataset_stats(PREFERENCE).summary()) == {"prompt_tokens", "response_tokens", "rejected_tokens", "turns"}


def test_no_rows():
    stats = dataset_stats([])
    assert stats.n_rows == 0 and stats.prompt_tokens == [] and stats.role_counts == {} and stats.summary() == {}
