"""Files and folders as they come in the wild, round 2 (the reader's part): a CSV header that names a column twice,
archives and Arrow files, UTF-16 without a byte-order mark, a stray NUL in text, dataset folders
(``datasets.save_to_disk``, a hub repository's shards, files named for their splits), pandas' orient="split",
rows encoded twice, Excel's ``sep=;`` line, and the messages, exit status and upload types around them.

Each case once went wrong: a column silently lost, every container called "not a text file", a folder refused
outright, a readable file refused for one NUL byte, "at at" in messages, a check of a file with no valid row that
exited 0."""

from __future__ import annotations

import bz2
import codecs
import csv
import io
import json
import lzma
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import feather, ipc

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


# --------------------------------------------------------------------------- F13: what a file that is no text is


def seven_zip(text: bytes) -> bytes:
    return b"7z\xbc\xaf\x27\x1c\x00\x04" + text  # the 7z signature; the archive itself is not needed to name it


def zipped(text: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("alpaca.jsonl", text)
    return out.getvalue()


@pytest.mark.parametrize("name, pack, what", [
    ("alpaca.jsonl.bz2", bz2.compress, "bzip2-compressed"),
    ("alpaca.jsonl.xz", lzma.compress, "xz-compressed"),
    ("alpaca.zip", zipped, "a zip archive"),
    ("alpaca.jsonl", zipped, "a zip archive"),  # by its bytes, whatever its name
    ("alpaca.7z", seven_zip, "a 7z archive"),
])
def test_an_archive_is_named_and_the_fix_said(tmp_path, name, pack, what):
    path = tmp_path / name
    path.write_bytes(pack(jsonl_text([alpaca(i) for i in range(5)]).encode()))
    with pytest.raises(LabError) as refused:
        read_table(path)
    message = str(refused.value)
    assert what in message and "NUL" not in message
    assert "decompress it first" in message or "extract the data file" in message


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_byte_order_mark_is_read(tmp_path, encoding):
    path = tmp_path / "nobom.jsonl"
    path.write_bytes(jsonl_text([chat(i) for i in range(4)]).replace("dish", "plat • dish").encode(encoding))
    parsed = load_file(path)
    assert parsed.errors == [] and questions(parsed)[3] == "Question 3: how do I cook plat • dish 3?"


def test_a_stray_nul_in_text_early_in_the_file_spoils_its_row_only(tmp_path):
    """08b: the same byte after the first 8 KiB was always a row error; before it, it refused the whole file."""
    lines = jsonl_text([chat(i) for i in range(6)]).splitlines()
    lines[1] = lines[1].replace("Heat the pan", "Heat\x00the pan")
    path = tmp_path / "nul.jsonl"
    path.write_text("\n".join(lines) + "\n")
    parsed = load_file(path)
    assert len(parsed.rows) == 5
    (error,) = parsed.errors
    assert error.line == 2 and "Invalid control character at column" in error.reason and "at at" not in error.reason


def test_a_binary_file_is_still_refused_as_not_text(tmp_path):
    path = tmp_path / "model.jsonl"
    path.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(LabError, match="not a text file"):
        read_table(path)


def test_arrow_files_are_read_stream_and_file_format(tmp_path):
    """datasets' cache and save_to_disk files are Arrow streams; Feather version 2 is an Arrow file."""
    table = pa.Table.from_pylist([alpaca(i) for i in range(5)])
    stream = tmp_path / "cache-0001.arrow"
    with ipc.new_stream(stream, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=2):  # several record batches
            writer.write_batch(batch)
    feather.write_feather(table, tmp_path / "table.feather")
    for path in (stream, tmp_path / "table.feather"):
        read = read_table(path)
        assert read.file_format == "arrow"
        assert [place for place, _ in read.records] == [1, 2, 3, 4, 5]
        assert read.records[4][1] == alpaca(4)


def test_an_arrow_stream_is_held_to_the_row_limit(tmp_path):
    path = tmp_path / "big.arrow"
    table = pa.Table.from_pylist([alpaca(i) for i in range(30)])
    with ipc.new_stream(path, table.schema) as writer:
        writer.write_table(table, max_chunksize=10)
    with pytest.raises(LabError, match="import limit of 25"):
        read_table(path, limits=ReadLimits(max_import_rows=25))


# --------------------------------------------------------------------------- F13: dataset folders


def shards(folder: Path, split: str, count: int, first: int, per: int = 10) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        rows = [chat(i) for i in range(first + n * per, first + (n + 1) * per)]
        pq.write_table(pa.Table.from_pylist(rows), folder / f"{split}-{n:05d}-of-{count:05d}.parquet")


def hub_repo(root: Path) -> Path:
    """A hub dataset repository as downloaded: a README, data/ with two train shards and a test shard."""
    shards(root / "data", "train", 2, 0)
    shards(root / "data", "test", 1, 100, per=5)
    (root / "README.md").write_text("---\nconfigs:\n- config_name: default\n---\n")
    (root / ".cache").mkdir()
    (root / ".cache" / "x.jsonl").write_text("not data")  # huggingface_hub's own files: hidden, never read
    return root


def test_a_hub_repository_folder_reads_its_train_shards_as_one_table(tmp_path):
    parsed = load_file(hub_repo(tmp_path / "repo"))
    assert parsed.errors == [] and parsed.source == "repo:train"
    assert [row.line for row in parsed.rows] == list(range(1, 21))  # the second shard's rows count on
    assert questions(parsed)[::10] == ["Question 0: how do I cook dish 0?", "Question 10: how do I cook dish 10?"]
    (note,) = parsed.notes
    assert "the train split: read 2 files as one table, in name order: data/train-00000-of-00002.parquet" in note
    assert "the split test was not read" in note and "data/test-00000-of-00001.parquet" in note
    assert "--split NAME" in note


def test_another_split_is_read_when_asked_and_an_unknown_one_named(tmp_path):
    repo = hub_repo(tmp_path / "repo")
    parsed = load_file(repo, split="test")
    assert parsed.source == "repo:test" and len(parsed.rows) == 5
    with pytest.raises(LabError, match="repo has no split 'dev': its splits are test, train"):
        load_file(repo, split="dev")
    with pytest.raises(LabError, match="a split is chosen only in a dataset folder or a hub dataset"):
        load_file(repo / "data" / "test-00000-of-00001.parquet", split="test")


def test_a_folder_of_files_named_for_their_splits(tmp_path):
    folder = tmp_path / "split_folder"
    folder.mkdir()
    (folder / "train.jsonl").write_text(jsonl_text([chat(i) for i in range(6)]))
    (folder / "test.jsonl").write_text(jsonl_text([chat(i) for i in range(6, 9)]))
    (folder / "LICENSE.txt").write_text("MIT")  # no data
    parsed = load_file(folder)
    assert len(parsed.rows) == 6 and parsed.source == "split_folder:train"
    (folder / "train.jsonl").unlink()
    (folder / "validation.jsonl").write_text(jsonl_text([chat(i) for i in range(9, 12)]))
    with pytest.raises(LabError) as refused:
        load_file(folder)
    assert ("holds the splits test, validation and none is named train" in str(refused.value)
            and "(test: test.jsonl; validation: validation.jsonl)" in str(refused.value))


def test_a_folder_of_one_unnamed_split_reads_every_file_in_name_order(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "part-b.jsonl").write_text(jsonl_text([chat(i) for i in range(3, 5)]))
    (folder / "part-a.jsonl").write_text("\n" + jsonl_text([chat(i) for i in range(3)]) + "{broken\n")
    parsed = load_file(folder)
    assert parsed.source == "parts" and [row.line for row in parsed.rows] == [2, 3, 4, 6, 7]
    assert [(error.line, error.source) for error in parsed.errors] == [(5, "parts")]
    assert questions(parsed)[3] == "Question 3: how do I cook dish 3?"
    assert parsed.notes == ["read 2 files as one table, in name order: part-a.jsonl, part-b.jsonl"]


def test_datasets_save_to_disk_folders_are_read(tmp_path):
    datasets = pytest.importorskip("datasets")
    one = datasets.Dataset.from_list([chat(i) for i in range(7)])
    one.save_to_disk(str(tmp_path / "saved"))
    parsed = load_file(tmp_path / "saved")
    assert len(parsed.rows) == 7 and parsed.source == "saved" and parsed.format == "openai"
    both = datasets.DatasetDict({"train": one, "test": datasets.Dataset.from_list([chat(i) for i in range(7, 9)])})
    both.save_to_disk(str(tmp_path / "dict"))
    parsed = load_file(tmp_path / "dict")
    assert len(parsed.rows) == 7 and parsed.source == "dict:train" and "(test: test/)" in parsed.notes[0]
    tuned = datasets.DatasetDict({"train_sft": one, "test_sft": one})  # ultrachat_200k's splits
    tuned.save_to_disk(str(tmp_path / "ultrachat"))
    with pytest.raises(LabError, match="holds the splits test_sft, train_sft and none is named train"):
        load_file(tmp_path / "ultrachat")
    assert len(load_file(tmp_path / "ultrachat", split="train_sft").rows) == 7


def test_the_limits_apply_to_a_folders_files_together(tmp_path):
    repo = hub_repo(tmp_path / "repo")
    with pytest.raises(LabError, match="repo:train has, in its 2 files together, more rows than the import limit of "
                                       "15; set LAB_MAX_IMPORT_ROWS"):
        read_table(repo, limits=ReadLimits(max_import_rows=15))
    files = sorted((repo / "data").glob("train-*"))
    one = max(max(f.stat().st_size, pq.ParquetFile(f).metadata.row_group(0).total_byte_size) for f in files)
    limit = ReadLimits(max_import_bytes=one * 3 // 2)  # each file within it, the two together not
    assert all(read_table(f, limits=limit).total == 10 for f in files)
    with pytest.raises(LabError, match="in its 2 files together, more bytes than"):
        read_table(repo, limits=limit)
    assert read_table(repo, limits=ReadLimits(max_import_rows=20)).total == 20


def test_a_folder_never_reads_past_itself_nor_the_labs_uploads(tmp_path, home):
    folder = tmp_path / "linked"
    folder.mkdir()
    (folder / "train.jsonl").write_text(jsonl_text([chat(0)]))
    outside = tmp_path / "secret.jsonl"
    outside.write_text(jsonl_text([chat(1)]))
    (folder / "train-extra.jsonl").symlink_to(outside)
    with pytest.raises(LabError, match="train-extra.jsonl is a link to a file outside the folder"):
        read_table(folder)
    (home.uploads / "abc").mkdir(parents=True)
    (home.uploads / "abc" / "a.jsonl").write_text(jsonl_text([chat(2)]))
    for whole in (home.uploads, home.root):
        with pytest.raises(LabError, match="holds the lab's own files"):
            read_table(whole)


def test_a_local_folder_named_like_a_hub_id_is_read_from_the_disk(tmp_path, monkeypatch):
    shards(tmp_path / "owner" / "name" / "data", "train", 1, 0)
    monkeypatch.chdir(tmp_path)
    assert read_table("owner/name").source == "name"
    with pytest.raises(LabError, match="^no such file: owner/other$"):  # its folder is here: a path, not the hub
        read_table("owner/other")


def test_an_empty_folder_says_so(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "README.md").write_text("nothing")
    with pytest.raises(LabError, match="is a folder with no data files in it"):
        read_table(tmp_path / "empty")


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
    from lab.data.pipeline import check_file
    from lab.ui.data_tab import check_summary

    assert "*Note: rows are JSON strings each holding a JSON object" in check_summary(check_file(path), mapped=False)


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
    hub_repo(tmp_path / "repo")
    split = lab("data", "check", str(tmp_path / "repo"), "--split", "test", "--json", home=tmp_path / "home")
    assert split.returncode == 0, split.stderr
    report = json.loads(split.stdout)
    assert (report["source"], report["rows"]) == ("repo:test", 5) and "the test split" in report["notes"][0]


# --------------------------------------------------------------------------- F17: upload types and names


def test_the_upload_takes_every_ending_the_readers_read():
    from gradio_client.utils import is_valid_file

    from lab.ui.data_tab import FILE_TYPES

    assert FILE_TYPES == list(DATA_SUFFIXES)
    for name in ("lines.ndjson", "notes.txt", "UPPER.JSONL", "cache.arrow", "table.feather", "data.csv.gz"):
        assert is_valid_file(name, FILE_TYPES), name


@pytest.mark.parametrize("name, expected", [
    ("94b_UPPER.JSONL", "94b_UPPER"), ("data.CSV.GZ", "data"), ("x.Parquet", "x"), ("chats.ndjson", "chats"),
    ("support chats.jsonl", "support-chats"), ("data/train.arrow", "train"),
])
def test_a_name_from_a_file_drops_its_endings_whatever_their_case(name, expected):
    assert name_from_file(name) == expected
