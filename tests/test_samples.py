"""The shipped sample datasets: valid canonical rows, the promised mix, and reproducible bytes."""

from __future__ import annotations

import json

import pytest

from lab.data.canonical import Row
from lab.data.quality import exact_duplicates, near_duplicates, turn_count
from lab.data.samples import SAMPLE_PREFERENCE, SAMPLE_SFT
from lab.data.samples.generate import write_samples
from lab.data.validate import RowProblem, validate_canonical


def read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


SFT = read(SAMPLE_SFT)
PREFERENCE = read(SAMPLE_PREFERENCE)


def roles(messages: list[dict]) -> list[str]:
    return [m["role"] for m in messages]


def test_row_counts():
    assert len(SFT) == 400
    assert len(PREFERENCE) == 300


def test_sft_rows_are_valid_conversations():
    for i, row in enumerate(SFT):
        assert set(row) == {"messages"}, i
        turns = roles(row["messages"])
        body = turns[1:] if turns[0] == "system" else turns
        assert body == ["user", "assistant"] * (len(body) // 2) and body, (i, turns)
        assert all(m["content"].strip() for m in row["messages"]), i
        validate_canonical(row, "sft")


def test_preference_rows_are_valid_explicit_prompt_pairs():
    for i, row in enumerate(PREFERENCE):
        assert set(row) == {"prompt", "chosen", "rejected"}, i
        assert roles(row["prompt"])[-1] == "user", i
        assert roles(row["chosen"]) == roles(row["rejected"]) == ["assistant"], i
        assert row["chosen"][0]["content"] != row["rejected"][0]["content"], i
        validate_canonical(row, "preference")


def test_validation_would_catch_a_broken_row():
    broken = {"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hello?"}]}
    with pytest.raises(RowProblem):
        validate_canonical(broken, "sft")


def test_the_mix_has_system_prompts_multi_turn_rows_and_short_replies():
    rows = [Row(r, i) for i, r in enumerate(SFT)]
    multi = sum(turn_count(r) >= 2 for r in rows) / len(rows)
    assert 0.08 <= multi <= 0.25
    assert max(turn_count(r) for r in rows) == 3
    assert 0.1 <= sum(r["messages"][0]["role"] == "system" for r in SFT) / len(SFT) <= 0.3
    replies = [len(m["content"].split()) for r in SFT for m in r["messages"] if m["role"] == "assistant"]
    assert min(replies) >= 1 and max(replies) <= 60


def test_no_exact_duplicates_and_a_handful_of_near_duplicates():
    sft = [Row(r, i) for i, r in enumerate(SFT)]
    preference = [Row(r, i) for i, r in enumerate(PREFERENCE)]
    assert exact_duplicates(sft) == [] and exact_duplicates(preference) == []
    assert 6 <= len(near_duplicates(sft)) <= 15  # the 6 planted ones, and not many accidental ones


def test_generate_reproduces_the_shipped_files(tmp_path):
    sft, preference = write_samples(tmp_path)
    assert sft.read_bytes() == SAMPLE_SFT.read_bytes()
    assert preference.read_bytes() == SAMPLE_PREFERENCE.read_bytes()
    again = write_samples(tmp_path / "again")
    assert again[0].read_bytes() == sft.read_bytes() and again[1].read_bytes() == preference.read_bytes()


def test_another_seed_gives_other_rows(tmp_path):
    sft, _ = write_samples(tmp_path, seed=1)
    assert sft.read_bytes() != SAMPLE_SFT.read_bytes()


def test_the_lab_reads_the_samples_in_their_formats():
    from lab.data.pipeline import load_file

    for path, kind, fmt, n in ((SAMPLE_SFT, "sft", "openai", 400), (SAMPLE_PREFERENCE, "preference",
                                                                       "trl-preference", 300)):
        parsed = load_file(path)
        assert (parsed.kind, parsed.format, len(parsed.rows), parsed.errors) == (kind, fmt, n, [])
