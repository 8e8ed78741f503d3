"""Cleaning steps: exact and near dedup, filters, split, and ``clean`` counting each step."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lab.data.canonical import Row
from lab.data.quality import (DuplicatePair, bucket_pairs, choose_drops, clean, drop_rows, exact_duplicates,
                              filter_by_tokens, filter_by_turns, minhash_signatures, near_duplicates, part_signatures,
                              shingle_hashes,
                              split, token_lengths, turn_count, verify, whole_signatures)
from lab.errors import LabError


def chat(*turns: str, system: str | None = None) -> Row:
    """An SFT row from alternating user/assistant texts."""
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
    return Row({"messages": messages}, line=0)


def pair_row(prompt: str, chosen: str, rejected: str) -> Row:
    return Row({"prompt": [{"role": "user", "content": prompt}], "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}]}, line=0)


def words(rng: random.Random, n: int, prefix: str = "w") -> list[str]:
    return [f"{prefix}{rng.randrange(10**9)}" for _ in range(n)]


def word_tokenizer(template: str | None = None):
    """A tiny offline tokenizer: one token per word or punctuation run."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "<s>": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", bos_token="<s>")
    tokenizer.chat_template = template
    return tokenizer


# ---------------------------------------------------------------- exact

def test_whitespace_and_unicode_variants_are_exact_duplicates():
    rows = [chat("Hello  world", "Café au lait"), chat("  Hello world\n", "Cafe\u0301 au\tlait "),
            chat("hello world", "Café au lait")]
    assert exact_duplicates(rows) == [DuplicatePair(0, 1, 1.0)]  # the lowercase one keeps its case difference


def test_same_text_in_other_roles_is_not_an_exact_duplicate():
    a = Row({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}, 1)
    b = Row({"messages": [{"role": "system", "content": "Hi"}, {"role": "user", "content": "Hello"}]}, 2)
    assert exact_duplicates([a, b]) == []


def test_every_copy_points_at_the_first():
    rows = [chat("a", "b"), chat("x", "y"), chat("a", "b"), chat("a ", " b")]
    assert [(p.keep, p.drop) for p in exact_duplicates(rows)] == [(0, 2), (0, 3)]
    assert drop_rows(rows, exact_duplicates(rows)) == rows[:2]


# ---------------------------------------------------------------- near

def test_one_word_edit_of_a_long_text_is_a_near_duplicate_and_unrelated_texts_are_not():
    rng = random.Random(0)
    text = words(rng, 200)
    edited = list(text)
    edited[100] = "changed"
    rows = [chat(" ".join(text), "ok"), chat(" ".join(words(rng, 200)), "ok"), chat(" ".join(edited), "ok"),
            chat(" ".join(words(rng, 200)), "ok")]
    pairs = near_duplicates(rows)
    assert [(p.keep, p.drop) for p in pairs] == [(0, 2)]
    assert 0.85 <= pairs[0].similarity <= 1.0  # true Jaccard 192/202 = 0.95


def test_threshold_decides_a_pair_at_jaccard_0_7():
    rng = random.Random(1)
    text = words(rng, 100)
    other = text[:83] + words(rng, 17, "x")  # shared 5-grams 79 of 113: Jaccard 0.699
    rows = [chat(" ".join(text)), chat(" ".join(other))]
    found = near_duplicates(rows, threshold=0.6)
    assert [(p.keep, p.drop) for p in found] == [(0, 1)]
    assert 0.55 <= found[0].similarity <= 0.85
    assert near_duplicates(rows, threshold=0.9) == []


def test_minhash_estimates_are_unbiased_with_binomial_spread():
    rng = random.Random(2)
    texts = []
    for _ in range(300):
        text = words(rng, 100)
        texts += [" ".join(text), " ".join(text[:83] + words(rng, 17, "x"))]
    generator = np.random.default_rng(0)
    hashes, counts = shingle_hashes(texts, 5, generator)
    signatures = minhash_signatures(hashes, counts, 128, generator)
    estimates = (signatures[0::2] == signatures[1::2]).mean(axis=1)
    jaccard = 79 / 113
    assert abs(estimates.mean() - jaccard) < 0.01
    assert 0.7 < estimates.std() / np.sqrt(jaccard * (1 - jaccard) / 128) < 1.3


def test_case_and_punctuation_do_not_matter_and_short_texts_use_shorter_ngrams():
    rows = [chat("Hi there!"), chat("hi, THERE"), chat("Hi you")]
    assert [(p.keep, p.drop, p.similarity) for p in near_duplicates(rows)] == [(0, 1, 1.0)]


def test_texts_without_words_are_never_near_duplicates():
    assert near_duplicates([chat("???"), chat("!!!"), chat("...")]) == []


def test_each_row_is_dropped_once_and_points_at_a_kept_row():
    rng = random.Random(3)
    base = words(rng, 150)
    rows = []
    for i in range(6):
        variant = list(base)
        variant[20 * i] = f"edit{i}"
        rows.append(chat(" ".join(variant)))
        rows.append(chat(" ".join(words(rng, 150))))
    pairs = near_duplicates(rows)
    drops = [p.drop for p in pairs]
    assert drops == sorted(set(drops))
    assert set(drops) == {2, 4, 6, 8, 10}
    assert all(p.keep == 0 and p.keep < p.drop for p in pairs)  # the earliest variant stays


def test_a_chain_drops_the_middle_row_only():
    rng = random.Random(6)
    a = words(rng, 100)
    b = a[:87] + words(rng, 13, "b")  # Jaccard(a, b) = 83/109 = 0.76
    c = words(rng, 13, "c") + b[13:]  # Jaccard(b, c) = 0.76, Jaccard(a, c) = 70/122 = 0.57
    rows = [chat(" ".join(a)), chat(" ".join(b)), chat(" ".join(c))]
    # c resembles only b, which goes: c is not a duplicate of anything kept
    assert [(p.keep, p.drop) for p in near_duplicates(rows, threshold=0.67, num_perm=256)] == [(0, 1)]


def test_verification_rejects_candidates_below_the_threshold():
    signatures = np.zeros((3, 128), np.uint32)
    signatures[1, :25] = 1  # 103 of 128 equal to row 0: 0.805
    signatures[2, :28] = 2  # 100 of 128: 0.78
    keep, drop, similarity = verify([(signatures, np.ones(3, bool))], np.array([[0, 1], [0, 2], [1, 2]]), [0.8])
    assert (keep.tolist(), drop.tolist()) == ([0], [1])
    assert similarity.tolist() == [103 / 128]


def test_verification_needs_every_part_above_its_floor_and_an_empty_part_only_matches_another():
    whole = (np.zeros((3, 128), np.uint32), np.ones(3, bool))  # the whole rows alike
    replies = np.zeros((3, 128), np.uint32)
    replies[1, :70] = 1  # row 1 answers less than half alike: 58/128
    pairs = np.array([[0, 1], [0, 2], [1, 2]])
    keep, _, _ = verify([whole, (replies, np.array([True, True, False]))], pairs, [0.8, 0.5])
    assert keep.tolist() == []  # row 1's reply is too unlike; row 2 has none
    keep, drop, similarity = verify([whole, (replies, np.array([True, False, False]))], pairs, [0.8, 0.5])
    assert (keep.tolist(), drop.tolist(), similarity.tolist()) == ([1], [2], [1.0])  # neither has a reply: alike


def test_the_whole_rows_signature_is_the_minimum_over_its_parts():
    asks, answers = ["the quick brown fox jumps over it", ""], ["", "the quick brown fox jumps over it"]
    whole, words = whole_signatures([asks, answers], 5, 64, seed=3)
    assert words.tolist() == [True, True] and (whole[0] == whole[1]).all()
    assert (whole[0] == part_signatures(asks[:1], 5, 64, seed=3)[0][0]).all()


def test_a_text_s_signature_does_not_depend_on_the_texts_beside_it():
    """Near-dedup signs the parts of the rows in a candidate pair again, apart from the rest: a text's signature must
    be the one it had among all of them (the permutations come from the seed alone; word hashes from the words)."""
    rng = random.Random(3)
    texts = [" ".join(words(rng, rng.randint(1, 60), "w")) for _ in range(300)] + ["", "!!!"]
    every, has = part_signatures(texts, 5, 128, seed=0)
    picked = [301, 7, 299, 150, 0, 300]
    some, some_has = part_signatures([texts[i] for i in picked], 5, 128, seed=0)
    assert (some_has == has[picked]).all() and some_has.sum() == 4
    assert (some[some_has] == every[picked][some_has]).all()  # a text without words has no signature to compare


def test_rows_sharing_a_long_system_prompt_or_a_prompt_are_not_near_duplicates():
    """A long system prompt on every row, several comparisons of one prompt, several labelled replies to one prompt:
    all distinct rows (whole-row texts once made 20 such rows 1). A light edit of both question and answer is still
    a near duplicate, and so is the same exchange under another system prompt."""
    rng = random.Random(7)
    system = " ".join(words(rng, 400, "s"))
    rows = [chat(" ".join(words(rng, 12, "q")), " ".join(words(rng, 25, "a")), system=system) for _ in range(20)]
    assert near_duplicates(rows) == []
    question, answer = words(rng, 40, "q"), words(rng, 40, "a")
    edited = chat(" ".join(question[:-1] + ["changed"]), " ".join(answer[:-1] + ["changed"]), system="Be brief.")
    assert [(p.keep, p.drop) for p in near_duplicates([*rows, chat(" ".join(question), " ".join(answer)), edited])] \
        == [(20, 21)]
    post = " ".join(words(rng, 300, "p"))
    comparisons = [pair_row(post, " ".join(words(rng, 30, "c")), " ".join(words(rng, 30, "r"))) for _ in range(15)]
    assert near_duplicates(comparisons) == []
    stock = [pair_row(" ".join(words(rng, 20, "q")), "I cannot help with that request, sorry.", "Sure.")
             for _ in range(5)]
    assert near_duplicates(stock) == []


def test_a_dropped_row_points_at_its_most_similar_kept_row():
    pairs = choose_drops(np.array([0, 1, 0]), np.array([2, 2, 3]), np.array([0.85, 0.95, 0.9]))
    assert pairs == [DuplicatePair(1, 2, 0.95), DuplicatePair(0, 3, 0.9)]


def test_every_pair_in_a_bucket_is_a_candidate():
    n = 10
    codes = bucket_pairs(np.array([1, 4, 6, 8]), np.array([7, 7, 7, 9], np.uint64), n)
    assert sorted((c // n, c % n) for c in set(codes.tolist())) == [(1, 4), (1, 6), (4, 6)]


def test_a_huge_bucket_pairs_each_row_with_the_first_and_its_recent_neighbours():
    n = 1000
    pairs = {(c // n, c % n) for c in bucket_pairs(np.arange(n), np.zeros(n, np.uint64), n).tolist()}
    assert (0, 999) in pairs and (998, 999) in pairs and (900, 999) not in pairs
    assert len(pairs) < 40 * n  # linear, not n * (n - 1) / 2


def test_near_dedup_is_deterministic_and_handles_preference_rows():
    rng = random.Random(4)
    text = " ".join(words(rng, 60))
    rows = [pair_row(text, "yes indeed", "no"), pair_row(text + " again", "yes indeed", "no"),
            pair_row(" ".join(words(rng, 60)), "yes", "no")]
    first = near_duplicates(rows)
    assert first == near_duplicates(rows)
    assert [(p.keep, p.drop) for p in first] == [(0, 1)]


def test_bad_threshold_is_a_lab_error():
    with pytest.raises(LabError, match="threshold"):
        near_duplicates([chat("a"), chat("b")], threshold=1.5)


# ---------------------------------------------------------------- filters

def test_token_lengths_use_the_chat_template_and_the_longer_preference_side():
    tokenizer = word_tokenizer("{% for m in messages %}{{ m['role'] }} {{ m['content'] }}\n{% endfor %}")
    rows = [chat("one two three", "four five"), pair_row("a b", "c d e f", "g")]
    # role word + content words per message
    assert token_lengths(rows, tokenizer) == [1 + 3 + 1 + 2, 1 + 2 + 1 + 4]


def test_token_lengths_without_a_template_count_the_joined_text():
    assert token_lengths([chat("one two three", "four five")], word_tokenizer()) == [5]


def test_token_filter_bounds_are_inclusive():
    rows = [chat(str(i)) for i in range(5)]
    kept, removed = filter_by_tokens(rows, [5, 10, 15, 20, 25], min_tokens=10, max_tokens=20)
    assert kept == rows[1:4] and removed == [rows[0], rows[4]]
    assert filter_by_tokens(rows, [5, 10, 15, 20, 25], max_tokens=12) == (rows[:2], rows[2:])
    with pytest.raises(LabError, match="lengths"):
        filter_by_tokens(rows, [1, 2], min_tokens=1)


def test_turns_count_user_messages_and_filter():
    rows = [chat("q", "a"), chat("q", "a", "q", "a", system="s"), chat("q", "a", "q", "a", "q", "a"),
            pair_row("q", "a", "b")]
    assert [turn_count(r) for r in rows] == [1, 2, 3, 1]
    kept, removed = filter_by_turns(rows, min_turns=2)
    assert kept == rows[1:3] and removed == [rows[0], rows[3]]
    assert filter_by_turns(rows, max_turns=2) == ([rows[0], rows[1], rows[3]], [rows[2]])


# ---------------------------------------------------------------- split

def numbered(n: int) -> list[Row]:
    return [chat(f"question {i}", f"answer {i}") for i in range(n)]


@pytest.mark.parametrize("n, fraction, expected", [(100, 0.1, 10), (1000, 0.05, 50), (2, 0.01, 1), (7, 0.5, 4),
                                                   (10, 0.0, 0), (1, 0.5, 0), (3, 0.9, 2)])
def test_split_sizes(n, fraction, expected):
    train, validation = split(numbered(n), val_fraction=fraction)
    assert len(validation) == expected and len(train) == n - expected


def test_split_is_deterministic_order_independent_and_seeded():
    rows = numbered(200)
    train, validation = split(rows, 0.1, seed=0)
    assert split(rows, 0.1, seed=0) == (train, validation)
    assert [r for r in rows if r in validation] == validation  # input order kept
    assert split(list(reversed(rows)), 0.1, seed=0)[1] == list(reversed(validation))
    assert split(rows, 0.1, seed=1)[1] != validation


def test_split_is_stable_when_rows_are_added():
    rows = numbered(200)
    validation = {r.data["messages"][0]["content"] for r in split(rows, 0.1)[1]}
    grown = {r.data["messages"][0]["content"] for r in split(rows + numbered(220)[200:], 0.1)[1]}
    assert len(validation & grown) >= 18  # 20 before, 22 after: the cutoff moves, the rows mostly stay


def test_whitespace_duplicates_land_on_the_same_side():
    rows = numbered(50) + [chat(f"question  {i} ", f"answer {i}") for i in range(50)]
    train, validation = split(rows, 0.2)
    key = lambda r: " ".join(r.data["messages"][0]["content"].split())  # noqa: E731
    assert {key(r) for r in train}.isdisjoint({key(r) for r in validation})


def test_split_rejects_a_fraction_of_one():
    with pytest.raises(LabError, match="fraction"):
        split(numbered(4), 1.0)


# ---------------------------------------------------------------- clean

def test_clean_runs_steps_in_order_and_indexes_the_input():
    rng = random.Random(5)
    long_text = words(rng, 80)
    near = list(long_text)
    near[40] = "edited"
    rows = [
        chat(" ".join(long_text), "fine"),  # 0
        chat("short one", "ok"),  # 1
        chat("short one ", " ok"),  # 2: exact copy of 1
        chat(" ".join(near), "fine"),  # 3: near copy of 0
        chat("a", "b", "c", "d", "e", "f"),  # 4: three turns
        chat(" ".join(words(rng, 30)), "tiny"),  # 5
    ]
    lengths = [82, 4, 4, 82, 6, 2]
    result = clean(rows, lengths=lengths, min_tokens=3, max_turns=2)
    assert [(s.step, s.before, s.after, s.removed) for s in result.steps] == [
        ("exact dedup", 6, 5, 1), ("near dedup", 5, 4, 1), ("token length", 4, 3, 1), ("turns", 3, 2, 1)]
    assert [(p.keep, p.drop) for p in result.exact_pairs] == [(1, 2)]
    assert [(p.keep, p.drop) for p in result.near_pairs] == [(0, 3)]  # original indices, not post-exact ones
    assert result.removed_by_filters == {"token length": [rows[5]], "turns": [rows[4]]}
    assert result.indices == [0, 1] and result.rows == [rows[0], rows[1]]


def test_clean_with_steps_off_records_nothing():
    rows = numbered(3) + numbered(1)
    result = clean(rows, exact=False, near=False)
    assert result.rows == rows and result.steps == []


def test_clean_token_filter_needs_lengths():
    with pytest.raises(LabError, match="token_lengths"):
        clean(numbered(2), max_tokens=10)
