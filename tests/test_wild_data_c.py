"""Files and folders as they come in the wild, round 2 (the reader's part): a CSV header that names a column twice,
archives and Arrow files, UTF-16 without a byte-order mark, a stray NUL in text, dataset folders
(``datasets.save_to_disk``, a hub repository's shards, files named for their splits), pandas' orient="split",
rows encoded twice, Excel's ``sep=;`` line, and the messages, exit status and upload types around them.

Each case once went wrong: a column silently lost, every container called "not a text file", a folder refused
outright, a readable file refused for one NUL byte, "at at" in messages, a check of a file with no valid row that
exited 0."""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lab.data.limits import ReadLimits
from lab.data.pipeline import load_file
from lab.data.readers import DATA_SUFFIXES, read_table
from lab.data.versions import name_from_file
from lab.errors import LabError

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


# --------------------------------------------------------------------------- F7: a column named twice


@pytest.mark.parametrize("header, name, places", [
    ("instruction,input,output,output", "output", "columns 3 and 4"),
    ("question,answer,answer", "answer", "columns 2 and 3"),
    ("question,Answer,answer", "answer", "columns 2 and 3, as 'Answer' and 'answer'"),  # columns bind whatever the case
])
def test_a_csv_header_naming_a_column_twice_is_refused_at_the_header(tmp_path, header, name, places):
    path = tmp_path / "twice.csv"
    width = header.count(",") + 1
    path.write_text(header + "\n" + ",".join(f"cell {i}" for i in range(width)) + "\n")
    with pytest.raises(LabError, match="names the column") as refused:
        read_table(path)
    assert f"'{name}' twice ({places}); rename one of them" in str(refused.value)


def test_excels_empty_trailing_columns_are_no_repeated_name(tmp_path):
    path = tmp_path / "trailing.csv"
    path.write_text("instruction,input,output,,\nSay hi.,,Hi!,,\n")
    ((_, record),) = read_table(path).records
    assert record["output"] == "Hi!"


def test_a_parquet_schema_naming_a_column_twice_is_refused(tmp_path):
    path = tmp_path / "twice.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array(["q"]), pa.array(["a"]), pa.array(["b"])],
                                        names=["question", "answer", "answer"]), path)
    with pytest.raises(LabError, match=r"the Parquet schema names the column 'answer' twice \(columns 2 and 3\)"):
        read_table(path)


# --------------------------------------------------------------------------- F14: messages and layouts


def test_json_syntax_messages_say_at_once(tmp_path):
    """json's own message ends "Unterminated string starting at" before its place; the lab names the place itself."""
    path = tmp_path / "broken.json"
    path.write_text('{"instruction": "unterminated}')
    with pytest.raises(LabError, match="column 17: Unterminated string starting.$"):
        read_table(path)
    path.write_text('[{"instruction": "unterminated}]')
    (error,) = read_table(path).errors
    assert "column 18: Unterminated string starting; elements from here on" in error.reason


def test_json_lines_each_ending_in_a_comma_get_a_hint(tmp_path):
    path = tmp_path / "commas.jsonl"
    path.write_text("".join(json.dumps(chat(i)) + ",\n" for i in range(3)))
    with pytest.raises(LabError, match=r"a comma after each object\?"):
        load_file(path)


@pytest.mark.parametrize("index", [True, False])
def test_pandas_orient_split_is_read(tmp_path, index):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "split.json"
    pd.DataFrame([alpaca(i) for i in range(4)]).to_json(path, orient="split", index=index)
    parsed = load_file(path)
    assert parsed.errors == [] and parsed.format == "alpaca" and len(parsed.rows) == 4
    assert parsed.rows[3].data["messages"][1]["content"] == "Le chat 3 dort."


def test_rows_encoded_twice_are_decoded_with_a_note(tmp_path):
    path = tmp_path / "twice.jsonl"
    path.write_text("".join(json.dumps(json.dumps(chat(i))) + "\n" for i in range(3)) + '"{not json"\n')
    parsed = load_file(path)
    assert questions(parsed) == [f"Question {i}: how do I cook dish {i}?" for i in range(3)]
    assert parsed.notes == [("rows are JSON strings each holding a JSON object (the rows were encoded twice); each "
                             "was decoded and read as its object")]
    (error,) = parsed.errors
    assert error.line == 4 and "a string that starts like one written as JSON but is broken JSON" in error.reason


def test_an_empty_json_object_has_no_rows(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text("{}\n")
    with pytest.raises(LabError, match="is empty: it holds one JSON object with no fields"):
        read_table(path)


@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8])
def test_excels_sep_line_names_the_delimiter_and_is_skipped(tmp_path, bom):
    text = io.StringIO()
    writer = csv.writer(text, delimiter=";")
    writer.writerow(["instruction", "input", "output"])
    writer.writerows([[r["instruction"], "a, b, c", r["output"]] for r in map(alpaca, range(3))])
    path = tmp_path / "excel.csv"
    path.write_bytes(bom + b"sep=;\r\n" + text.getvalue().encode())
    read = read_table(path)
    assert read.columns == ["instruction", "input", "output"]
    assert [place for place, _ in read.records] == [1, 2, 3] and read.records[0][1]["input"] == "a, b, c"


def test_a_text_over_the_limit_is_named_by_the_files_column(tmp_path):
    path = tmp_path / "long.jsonl"
    path.write_text(jsonl_text([{**alpaca(0), "input": "x" * 2000}, alpaca(1)]))
    parsed = load_file(path, limits=ReadLimits(max_text_chars=1000))
    (error,) = parsed.errors
    assert error.field == "input" and "a text of 2,0" in error.reason
    joined = tmp_path / "joined.jsonl"  # no column is over the limit alone: the canonical field and the longest part
    joined.write_text(jsonl_text([{**alpaca(0), "instruction": "y" * 600, "input": "x" * 700}]))
    (error,) = load_file(joined, limits=ReadLimits(max_text_chars=1000)).errors
    assert error.field == "messages (longest part from input)"


def lab(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAB_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120, check=False)


def test_data_check_fails_when_no_row_is_valid(tmp_path):
    path = tmp_path / "none_valid.jsonl"
    path.write_text(jsonl_text([{"instruction": "", "input": "", "output": ""}]))
    human = lab("data", "check", str(path), home=tmp_path / "home")
    assert human.returncode == 1 and "rows: 0 valid of 1" in human.stdout
    assert "no row is valid" in human.stderr
    scripted = lab("data", "check", str(path), "--json", home=tmp_path / "home")
    assert scripted.returncode == 1 and json.loads(scripted.stdout)["rows"] == 0
    assert "no row is valid" in scripted.stderr


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
