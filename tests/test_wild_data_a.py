"""Datasets as they come in the wild, read right or refused clearly: multi-turn preference rows beside a prompt
column, HH transcripts in a prompt column, replies given as messages, pandas' CSVs, capitalised headers, a
category column named ``label``, and near dedup on rows that share a long system prompt or one prompt.

Each case once went wrong without a word: turns lost, replies paired with the wrong question, literal "Human:"
markers kept as a user message, rows removed as duplicates of rows they only shared a prompt with."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from lab.config import DataConfig
from lab.data.pipeline import import_file, load_file
from lab.errors import LabError
from lab.data.versions import read_rows


def user(text): return {"role": "user", "content": text}
def assistant(text): return {"role": "assistant", "content": text}
def system(text): return {"role": "system", "content": text}


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_a_multi_turn_conversation_in_chosen_is_the_prompt_and_the_prompt_column_checks_it(tmp_path):
    """Capybara: the prompt column holds the first question, chosen/rejected the whole conversation. The prompt is
    the conversation up to the last question (its earlier turns and a system turn kept), the replies what follows."""
    def side(reply):
        return [system("Be kind."), user("Q1"), assistant("A1"), user("Q2"), assistant(reply)]

    parsed = load_file(jsonl(tmp_path / "capybara.jsonl", [
        {"prompt": "Q1", "chosen": side("GOOD"), "rejected": side("BAD")},
        {"prompt": "  Q2 ", "chosen": side("GOOD"), "rejected": side("BAD")},  # the last question, spaced
    ]))
    assert parsed.errors == []
    for row in parsed.rows:
        assert row.data["prompt"] == [system("Be kind."), user("Q1"), assistant("A1"), user("Q2")]
        assert (row.data["chosen"], row.data["rejected"]) == ([assistant("GOOD")], [assistant("BAD")])


def test_a_prompt_column_that_is_not_the_conversations_question_is_refused(tmp_path):
    parsed = load_file(jsonl(tmp_path / "mismatch.jsonl", [
        {"prompt": "Explain tides.", "chosen": [user("Explain chess."), assistant("Openings first.")],
         "rejected": [user("Explain chess."), assistant("No idea.")]},
        {"prompt": "Q", "chosen": [user("Q"), assistant("A")], "rejected": [user("Other"), assistant("B")]},
    ]))
    assert parsed.rows == []
    (first, second) = parsed.errors
    assert (first.line, first.field) == (1, "prompt") and "answer another question" in first.reason
    assert "'Explain tides.'" in first.reason and "'Explain chess.'" in first.reason
    assert (second.line, second.field) == (2, "rejected") and "differs from chosen's" in second.reason


def test_a_system_turn_only_the_prompt_column_has_is_kept(tmp_path):
    parsed = load_file(jsonl(tmp_path / "system.jsonl", [
        {"prompt": [system("Be brief."), user("Q")], "chosen": [user("Q"), assistant("A")],
         "rejected": [user("Q"), assistant("B")]}]))
    assert parsed.rows[0].data["prompt"] == [system("Be brief."), user("Q")]


def test_hh_transcripts_in_a_prompt_column_become_turns(tmp_path):
    """Dahoas/rm-static keeps a multi-turn prompt as an HH transcript ending in an open 'Assistant:', and replies
    with the transcript's leading space. The same prompt in SFT and unpaired rows reads alike; a question that
    only mentions the markers stays one user message."""
    transcript = "\n\nHuman: How do I bake bread?\n\nAssistant: Which kind?\n\nHuman: Sourdough.\n\nAssistant:"
    turns = [user("How do I bake bread?"), assistant("Which kind?"), user("Sourdough.")]
    mention = "What do 'Human:' and 'Assistant:' mean in a transcript?"
    parsed = load_file(jsonl(tmp_path / "rm_static.jsonl", [
        {"prompt": transcript, "response": " Start a starter.", "chosen": " Start a starter.", "rejected": " Buy it."},
        {"prompt": mention, "chosen": "Speaker labels.", "rejected": "No idea."},
    ]))
    assert parsed.errors == [] and parsed.format == "trl-preference"
    assert parsed.rows[0].data == {"prompt": turns, "chosen": [assistant("Start a starter.")],
                                   "rejected": [assistant("Buy it.")]}
    assert parsed.rows[1].data["prompt"] == [user(mention)]
    sft = load_file(jsonl(tmp_path / "hh_sft.jsonl", [{"prompt": transcript, "completion": "Start a starter."}]))
    assert sft.rows[0].data == {"messages": [*turns, assistant("Start a starter.")]}
    unpaired = load_file(jsonl(tmp_path / "hh_kto.jsonl", [
        {"prompt": transcript, "completion": "Start a starter.", "label": True}]))
    assert unpaired.rows[0].data["prompt"] == turns


def test_a_reply_given_as_messages_keeps_every_message_or_is_refused(tmp_path):
    """A text prompt with the completion as messages: all of them kept (the first alone was kept before); two
    assistant messages in a row are refused by the role check, not cut to one."""
    parsed = load_file(jsonl(tmp_path / "pc.jsonl", [
        {"prompt": "Q", "completion": [{"role": "assistant", "content": "A"}]},
        {"prompt": "Q", "completion": [{"role": "assistant", "content": "Part one."},
                                       {"role": "assistant", "content": "Part two."}]},
    ]))
    assert [row.data for row in parsed.rows] == [{"messages": [user("Q"), assistant("A")]}]
    assert len(parsed.errors) == 1 and parsed.errors[0].line == 2
    assert "two assistant turns in a row" in parsed.errors[0].reason


def test_pandas_csv_with_python_lists_and_capitalised_headers(tmp_path):
    """pandas writes a column of lists as Python literals (single quotes), and people capitalise headers."""
    path = tmp_path / "pandas.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Messages"])
        writer.writerow([repr([user("It's late?"), assistant("Yes, it's 11.")])])
    parsed = load_file(path)
    assert parsed.errors == [] and parsed.format == "openai"
    assert parsed.rows[0].data["messages"] == [user("It's late?"), assistant("Yes, it's 11.")]
    headers = tmp_path / "headers.csv"
    headers.write_text("Instruction, Input ,Output\nSay hi.,,Hi!\n")
    parsed = load_file(headers)
    assert (parsed.format, parsed.rows[0].data) == ("alpaca", {"messages": [user("Say hi."), assistant("Hi!")]})


def test_a_category_column_named_label_is_not_a_kto_label(tmp_path):
    topics = [{"prompt": "2+2?", "completion": "4", "label": "math"},
              {"prompt": "Why is the sky blue?", "completion": "Scattering.", "label": "science"},
              {"prompt": "Who wrote Hamlet?", "completion": "Shakespeare.", "label": "literature"}]
    parsed = load_file(jsonl(tmp_path / "topics.jsonl", topics))
    assert (parsed.kind, parsed.format, len(parsed.rows), parsed.errors) == ("sft", "prompt-completion", 3, [])
    # Two values could be good and bad in words the lab does not know: read as SFT, the bad replies would be trained
    # on. Refused unless SFT is asked for.
    two = jsonl(tmp_path / "two.jsonl", topics[:2])
    with pytest.raises(LabError, match="'label' column with two values, 'math' and 'science'.*choose kind sft"):
        load_file(two)
    assert load_file(two, kind="sft").format == "prompt-completion"
    kto = load_file(jsonl(tmp_path / "kto.jsonl", [{"prompt": "2+2?", "completion": "4", "label": True}]))
    assert (kto.kind, kto.format) == ("unpaired", "trl-unpaired")


def prose(seed: int, n: int) -> str:
    """``n`` varied words: a text with as many distinct shingles, as real prompts have."""
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) + str(rng.randrange(100)) for _ in range(n))


WORDS = ["river", "stone", "light", "market", "engine", "garden", "signal", "winter", "paper", "orbit"]


@pytest.mark.parametrize("rows", [
    [{"messages": [system(prose(0, 400)), user(prose(100 + i, 12)), assistant(prose(200 + i, 25))]}
     for i in range(20)],
    [{"prompt": prose(1, 300), "chosen": prose(300 + i, 30), "rejected": prose(400 + i, 30)} for i in range(15)],
    [{"prompt": prose(2, 200), "completion": prose(500 + i, 20), "label": i % 2 == 0} for i in range(16)],
], ids=["shared-system-prompt", "comparisons-of-one-post", "replies-to-one-prompt"])
def test_import_keeps_rows_that_only_share_a_prompt(tmp_path, rows):
    """The import, near dedup on by default, keeps every row (these once became 1, 5 and 8 rows)."""
    from lab.home import lab_home

    home = lab_home(tmp_path / "home")
    version = import_file(jsonl(tmp_path / "shared.jsonl", rows), DataConfig(name="shared", val_fraction=0.0),
                          home=home)
    assert version.rows["train"] == len(rows), version.card["steps"]
    assert len(read_rows(version.ref, "train", home=home)) == len(rows)
