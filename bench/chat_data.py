"""Synthetic data for the GPU benchmarks, with the lengths of real chat data and a fixed seed.

Speed and memory do not depend on what the words mean, only on how many tokens there are, so the rows are
made of words that the lab's tiny tokenizer encodes as one token each (the benchmark models use that
tokenizer: its ids fit inside every real vocabulary). Lengths follow a log-normal distribution with a mean of
about 450 tokens, clipped to [32, max_length], as in chat datasets; a quarter of each row is the user's turn.

    rows = sft_rows(tokenizer, n=1600, seed=0)              # [{"messages": [...]}, ...]
    pairs = preference_rows(tokenizer, n=800, seed=0)       # [{"prompt": [...], "chosen": [...], ...}]
    full = sft_rows(tokenizer, n=400, full_length=2048)     # every row longer than 2048 tokens
"""

from __future__ import annotations

import math
import random
from typing import Any

MEAN_TOKENS = 450
SIGMA = 0.6  # log-normal spread: the median row is ~375 tokens, one in a hundred is over 1,500


def single_token_words(tokenizer: Any) -> list[str]:
    """Words that encode as exactly one token after a space."""
    words = []
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id])
        if text.startswith(" ") and text[1:].isalpha() and len(text) > 3:
            if len(tokenizer(text, add_special_tokens=False)["input_ids"]) == 1:
                words.append(text[1:])
    if len(words) < 100:
        raise RuntimeError(f"only {len(words)} single-token words in this tokenizer; the benchmark needs 100+")
    return words


def lengths(n: int, rng: random.Random, max_length: int, mean: int = MEAN_TOKENS) -> list[int]:
    mu = math.log(mean) - SIGMA**2 / 2
    return [min(max_length, max(32, int(rng.lognormvariate(mu, SIGMA)))) for _ in range(n)]


def text(rng: random.Random, words: list[str], tokens: int) -> str:
    return " ".join(rng.choice(words) for _ in range(max(1, tokens)))


def sft_rows(tokenizer: Any, n: int, *, seed: int = 0, max_length: int = 2048,
             full_length: int = 0) -> list[dict[str, Any]]:
    """Chat rows of log-normal length; with ``full_length``, every row is longer than that (so truncation makes
    every sequence exactly ``full_length`` tokens)."""
    rng = random.Random(seed)
    words = single_token_words(tokenizer)
    sizes = [full_length + 64] * n if full_length else lengths(n, rng, max_length)
    rows = []
    for size in sizes:
        user = max(8, size // 4) if not full_length else 48
        rows.append({"messages": [{"role": "user", "content": text(rng, words, user - 6)},
                                  {"role": "assistant", "content": text(rng, words, size - user - 6)}]})
    return rows


def preference_rows(tokenizer: Any, n: int, *, seed: int = 0, max_length: int = 2048) -> list[dict[str, Any]]:
    """Preference pairs: a prompt of about 110 tokens and two replies of about 340 each (log-normal)."""
    rng = random.Random(seed)
    words = single_token_words(tokenizer)
    rows = []
    for prompt_len, chosen_len, rejected_len in zip(lengths(n, rng, max_length // 4, 110),
                                                    lengths(n, rng, max_length // 2, 340),
                                                    lengths(n, rng, max_length // 2, 340)):
        rows.append({"prompt": [{"role": "user", "content": text(rng, words, prompt_len - 6)}],
                     "chosen": [{"role": "assistant", "content": text(rng, words, chosen_len - 6)}],
                     "rejected": [{"role": "assistant", "content": text(rng, words, rejected_len - 6)}]})
    return rows


def chat_tokens(tokenizer: Any, messages: list[dict[str, str]], max_length: int) -> int:
    """Tokens of a conversation as the trainer sees it (the chat template applied, truncated)."""
    return min(max_length, len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)))
