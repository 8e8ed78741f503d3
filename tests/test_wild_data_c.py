"""Files and folders as they come in the wild, round 2 (the reader's part): a CSV header that names a column twice,
archives and Arrow files, UTF-16 without a byte-order mark, a stray NUL in text, dataset folders
(``datasets.save_to_disk``, a hub repository's shards, files named for their splits), pandas' orient="split",
rows encoded twice, Excel's ``sep=;`` line, and the messages, exit status and upload types around them.

Each case once went wrong: a column silently lost, every container called "not a text file", a folder refused
outright, a readable file refused for one NUL byte, "at at" in messages, a check of a file with no valid row that
exited 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.data.readers import DATA_SUFFIXES
from lab.data.versions import name_from_file

ROOT = Path(__file__).resolve().parents[1]


def chat(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"Question {i}: how do I cook dish {i}?"},
                         {"role": "assistant", "content": f"Heat the pan and stir dish {i} for {i + 2} minutes."}]}


def alpaca(i: int) -> dict:
    return {"instruction": f"Translate sentence {i} into French.", "input": f"The cat {i} sleeps.",
            "output": f"Le chat {i} dort."}


def jsonl_text(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def questions(parsed) -> list[str]:
    return [row.data["messages"][0]["content"] for row in parsed.rows]


# --------------------------------------------------------------------------- F17: upload types and names


def test_the_upload_takes_every_ending_the_readers_read():
    from gradio_client.utils import is_valid_file

    from lab.ui.data_tab import FILE_TYPES

    assert FILE_TYPES == list(DATA_SUFFIXES)
    for name in ("lines.ndjson", "notes.txt", "UPPER.JSONL", "data.csv.gz"):
        assert is_valid_file(name, FILE_TYPES), name


@pytest.mark.parametrize("name, expected", [
    ("94b_UPPER.JSONL", "94b_UPPER"), ("data.CSV.GZ", "data"), ("x.Parquet", "x"), ("chats.ndjson", "chats"),
    ("support chats.jsonl", "support-chats"),
])
def test_a_name_from_a_file_drops_its_endings_whatever_their_case(name, expected):
    assert name_from_file(name) == expected
