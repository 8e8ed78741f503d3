"""Hostile files at the importer: random bytes, truncated JSON/JSONL/CSV/Parquet, huge fields, deep nesting,
bad encodings, and gzip of each. Every one ends as rows or as one ``LabError`` sentence naming the file: never
another exception, never a partial version, and never more memory than the import limits allow."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from lab.config import DataConfig
from lab.data.limits import ReadLimits, read_limits
from lab.data.pipeline import check_file, import_file, load_file
from lab.data.readers import read_table
from lab.data.versions import list_versions
from lab.errors import LabError
from lab.home import lab_home

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024**2
# Hypothesis keeps a cache (and, after a failure, a patch) in ./.hypothesis: not in the repository.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "lab-hypothesis")


def chat(user: str, reply: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]}


# Small valid row sets, in the layouts people bring; hostile files are made from them.
ROW_SETS = [
    [chat("What is 2+2?", "4."), chat("Say hi in French.", "Salut, ça va ?"), chat("Name a colour", "Blue 💙")],
    [{"prompt": "Translate 'cat'.", "completion": "chat"}, {"prompt": "Spell dog backwards.", "completion": "god"}],
    [{"prompt": "Best fruit?", "chosen": "Mango, for its taste.", "rejected": "Rocks."},
     {"prompt": "2+3?", "chosen": "5", "rejected": "23"}],
    [{"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}],
]
FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")
TEXT_FORMATS = ("jsonl", "json", "csv", "tsv")
SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt", "")
# Low limits, so that generated files cross them too and the refusals are exercised.
LIMITS = ReadLimits(max_import_bytes=256 * 1024, max_import_rows=50)


def cell(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def encode(rows: list[dict], fmt: str) -> bytes:
    """``rows`` written as a file of format ``fmt``."""
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, indent=1).encode()
    if fmt == "parquet":
        out = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), out)
        return out.getvalue()
    sep = "\t" if fmt == "tsv" else ","
    out = io.StringIO()
    writer = csv.writer(out, delimiter=sep)
    writer.writerow(list(rows[0]))
    writer.writerows([[cell(r.get(k, "")) for k in rows[0]] for r in rows])
    return out.getvalue().encode()


row_sets = st.sampled_from(ROW_SETS).flatmap(lambda rows: st.lists(st.sampled_from(rows), min_size=1, max_size=5))


@st.composite
def random_files(draw) -> tuple[bytes, str]:
    """Random bytes, sometimes behind the first bytes a reader keys on (Parquet, gzip, JSON, byte-order marks)."""
    head = draw(st.sampled_from([b"", b"PAR1", b"\x1f\x8b", b"[", b"{", b"\xff\xfe", b"\xef\xbb\xbf", b"a,b\n"]))
    return head + draw(st.binary(max_size=2000)), draw(st.sampled_from(SUFFIXES))


@st.composite
def truncated(draw) -> tuple[bytes, str]:
    """A valid file cut at a random point."""
    fmt = draw(st.sampled_from(FORMATS))
    data = encode(draw(row_sets), fmt)
    return data[:draw(st.integers(0, len(data)))], f".{fmt}"


@st.composite
def huge_fields(draw) -> tuple[bytes, str]:
    """A field (or a column name) far longer than any real one: sometimes over the byte limit, and over the csv
    module's field limit."""
    fmt = draw(st.sampled_from(FORMATS))
    text = draw(st.sampled_from(["a", "é", "😀", "\n", '"', "\\", "[", " "])) * draw(st.integers(50_000, 300_000))
    where = draw(st.sampled_from(["value", "key"]))
    row = {"prompt": text, "completion": "ok"} if where == "value" else {text: "x", "completion": "ok"}
    return encode([row, {"prompt": "hi", "completion": "yo"}], fmt), f".{fmt}"


def nested(depth: int, opener: str, closer: str) -> str:
    return opener * depth + "1" + closer * depth  # written out: json.dumps itself would recurse


@st.composite
def deep(draw) -> tuple[bytes, str]:
    """A value nested around the lab's limit (100), around Python's recursion limit (1,000) and far past it."""
    depth = draw(st.sampled_from([99, 100, 101, 150, 990, 1100, 20_000]))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a": ', "}")]))
    value = nested(depth, opener, closer)
    fmt = draw(st.sampled_from(TEXT_FORMATS))
    good = '{"prompt": "hi", "completion": "yo"}'
    bad = f'{{"prompt": {value}, "completion": "x"}}'
    if fmt == "jsonl":
        return f"{good}\n{bad}\n".encode(), ".jsonl"
    if fmt == "json":
        return f"[{good},\n{bad}]".encode(), ".json"
    sep = "\t" if fmt == "tsv" else ","
    quoted = '"' + value.replace('"', '""') + '"'
    return f"prompt{sep}completion\nhi{sep}yo\n{quoted}{sep}x\n".encode(), f".{fmt}"


@st.composite
def bad_encodings(draw) -> tuple[bytes, str]:
    """Text that is not UTF-8: stray bytes, Latin-1, UTF-16 (whole, cut, without a byte-order mark), and JSON
    escapes of half a surrogate pair."""
    fmt = draw(st.sampled_from(TEXT_FORMATS))
    text = encode(draw(row_sets), fmt).decode()
    how = draw(st.sampled_from(["stray", "latin-1", "utf-16", "utf-16-cut", "utf-16-le", "surrogate"]))
    if how == "stray":
        data = text.encode()
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=3).filter(lambda b: b[0] >= 0x80)) + data[at:]
    elif how == "latin-1":
        data = text.encode("latin-1", errors="replace")
    elif how.startswith("utf-16"):
        data = text.encode("utf-16-le" if how == "utf-16-le" else "utf-16")
        data = data[:-1] if how == "utf-16-cut" else data
    else:
        data = text.replace("hi", "\\ud800").replace("Blue", "\\udc00").replace("5", "\\uD83D").encode()
    return data, f".{fmt}"


@st.composite
def hostile_files(draw) -> tuple[bytes, str]:
    data, suffix = draw(st.one_of(random_files(), truncated(), huge_fields(), deep(), bad_encodings()))
    if draw(st.booleans()):
        data, suffix = gzip.compress(data, mtime=0), suffix + ".gz"
        if draw(st.sampled_from([False, False, True])):
            data = data[:draw(st.integers(0, len(data)))]
    return data, suffix


def assert_clear(err: LabError, path: Path) -> None:
    """One sentence that names the file, on one line, printable as it is (``--json`` writes it to stdout)."""
    message = str(err)
    assert path.name in message, message
    assert "\n" not in message, message
    message.encode("utf-8")


def stored_files(home) -> list[Path]:
    return [p for p in home.datasets.rglob("*") if p.is_file()] if home.datasets.exists() else []


@settings(max_examples=250, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(file=hostile_files(), skip_invalid=st.booleans())
def test_hostile_files_end_as_rows_or_one_clear_sentence(file: tuple[bytes, str], skip_invalid: bool):
    data, suffix = file
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "in", f"hostile{suffix}")
        path.parent.mkdir()
        path.write_bytes(data)
        home = lab_home(Path(tmp, "home"))
        try:
            report = check_file(path, limits=LIMITS)
        except LabError as err:
            assert_clear(err, path)
        else:
            assert all(e.line is not None for e in report.errors)  # every row error has its place
            "".join(str(e) for e in report.errors).encode("utf-8")
        cfg = DataConfig(name="hostile", skip_invalid=skip_invalid)
        try:
            version = import_file(path, cfg, home=home, limits=LIMITS)
        except LabError as err:
            assert_clear(err, path)
            assert list_versions(home) == [] and stored_files(home) == []  # no partial version
        else:
            assert [v.ref for v in list_versions(home)] == [version.ref]


def gzip_bomb(path: Path, inflated: int) -> None:
    """``inflated`` bytes of one JSON string of zeros, compressed a megabyte at a time (about 1,000 to 1)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    with path.open("wb") as out:
        out.write(packer.compress(b'{"prompt": "'))
        for _ in range(inflated // MIB):
            out.write(packer.compress(b"0" * MIB))
        out.write(packer.flush())


def test_gzip_bomb_is_refused_at_the_limit_in_bounded_memory(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.jsonl.gz"
    gzip_bomb(bomb, 200 * MIB)
    assert bomb.stat().st_size < MIB
    monkeypatch.setenv("LAB_MAX_IMPORT_BYTES", "8MiB")
    tracemalloc.start()
    try:
        with pytest.raises(LabError) as refused:
            check_file(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(refused.value) == ("bomb.jsonl.gz inflates to more than the import limit of 8 MiB; set "
                                  "LAB_MAX_IMPORT_BYTES (or pass --max-import-bytes) higher if the file is meant "
                                  "to be that large.")
    assert peak < 32 * MIB, f"peak {peak / MIB:.0f} MiB while refusing a 200 MiB bomb"


def test_a_file_over_the_byte_limit_is_refused_without_reading_it(tmp_path, monkeypatch):
    big = tmp_path / "big.jsonl"
    with big.open("wb") as out:
        out.truncate(256 * MIB)  # sparse: nothing to read but zeros, and refused by its size alone
    monkeypatch.setenv("LAB_MAX_IMPORT_BYTES", "1M")
    with pytest.raises(LabError, match=r"^big.jsonl is 256 MiB, more than the import limit of 1 MiB; set "
                                       r"LAB_MAX_IMPORT_BYTES"):
        read_table(big)


@pytest.mark.parametrize("fmt, found", [("jsonl", "has more rows than"), ("csv", "has more rows than"),
                                        ("json", "has 11 rows, more than"), ("parquet", "has 11 rows, more than")])
def test_the_row_limit_refuses_one_row_more(tmp_path, monkeypatch, fmt, found):
    rows = [{"prompt": f"question {i}", "completion": f"answer {i}"} for i in range(11)]
    path = tmp_path / f"rows.{fmt}"
    path.write_bytes(encode(rows, fmt))
    monkeypatch.setenv("LAB_MAX_IMPORT_ROWS", "11")
    assert len(load_file(path).rows) == 11
    monkeypatch.setenv("LAB_MAX_IMPORT_ROWS", "10")
    with pytest.raises(LabError, match=rf"^rows.{fmt} {found} the import limit of 10; set LAB_MAX_IMPORT_ROWS"):
        load_file(path)


def test_parquet_is_refused_by_its_uncompressed_size_before_rows_are_read(tmp_path):
    path = tmp_path / "zeros.parquet"
    path.write_bytes(encode([{"prompt": "0" * MIB, "completion": "ok"}], "parquet"))
    assert path.stat().st_size < 256 * 1024
    with pytest.raises(LabError, match=r"^zeros.parquet holds 1 MiB uncompressed, more than the import limit of "
                                       r"256 KiB"):
        read_table(path, limits=ReadLimits(max_import_bytes=256 * 1024))


def test_a_hub_dataset_is_refused_by_its_row_count_before_its_rows_are_converted(monkeypatch):
    import datasets

    rows = {"prompt": [f"q{i}" for i in range(5)], "completion": [f"a{i}" for i in range(5)]}
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: datasets.Dataset.from_dict(rows))
    with pytest.raises(LabError, match=r"^someone/tiny:train has 5 rows, more than the import limit of 3"):
        read_table("someone/tiny", limits=ReadLimits(max_import_rows=3))
    assert read_table("someone/tiny", limits=ReadLimits(max_import_rows=5)).total == 5


def test_limits_come_from_flags_over_the_environment_over_the_defaults(monkeypatch):
    assert read_limits() == ReadLimits()
    monkeypatch.setenv("LAB_MAX_IMPORT_BYTES", "4GiB")
    monkeypatch.setenv("LAB_MAX_IMPORT_ROWS", "5_000_000")
    assert read_limits() == ReadLimits(max_import_bytes=4 * 1024**3, max_import_rows=5_000_000)
    assert read_limits(max_import_rows="7").max_import_rows == 7
    monkeypatch.setenv("LAB_MAX_IMPORT_BYTES", "lots")
    with pytest.raises(LabError, match=r"^LAB_MAX_IMPORT_BYTES='lots': expected a size in bytes"):
        read_limits()
    with pytest.raises(LabError, match=r"^--max-import-rows='0': the limit must be 1 or more"):
        read_limits(max_import_bytes="1G", max_import_rows="0")


def deep_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(exist_ok=True)
    good = '{"prompt": "hi", "completion": "yo"}'
    files = {
        "jsonl": (f"{good}\n" + '{"prompt": ' + nested(10_000, "[", "]") + ', "completion": "x"}\n', "deep.jsonl"),
        "json": (f"[\n{good},\n" + '{"prompt": ' + nested(10_000, '{"a": ', "}") + "}\n]", "deep.json"),
        "csv": ("prompt,completion\nhi,yo\n\"" + nested(5_000, "[", "]") + '",x\n', "deep.csv"),
    }
    for text, name in files.values():
        (folder / name).write_text(text)
    return {fmt: folder / name for fmt, (_, name) in files.items()}


def test_deep_nesting_is_a_row_error_with_its_place_or_one_sentence_for_a_document(tmp_path):
    files = deep_files(tmp_path / "in")
    for fmt, place in (("jsonl", ("deep.jsonl", 2, None)), ("csv", ("deep.csv", 2, "prompt"))):
        parsed = load_file(files[fmt])
        assert len(parsed.rows) == 1
        [error] = parsed.errors
        assert (error.source, error.line, error.field) == place
        assert error.reason.startswith("nested more than 100 levels deep")
    with pytest.raises(LabError, match=r"^deep.json, line 3: nested more than 100 levels deep"):
        load_file(files["json"])


@pytest.mark.parametrize("depth, ok", [(100, True), (101, False)])
def test_rows_may_nest_a_hundred_levels(tmp_path, depth, ok):
    path = tmp_path / "nested.jsonl"  # the record is level 1: its field holds depth - 1 lists
    path.write_text('{"prompt": "hi", "completion": "yo", "extra": ' + nested(depth - 1, "[", "]") + "}\n")
    table = read_table(path)
    assert (len(table.records), len(table.errors)) == ((1, 0) if ok else (0, 1))


def test_text_python_cannot_hold_is_a_row_error_not_a_crash_later(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text('{"prompt": "\\ud800 hi", "completion": "x"}\n'
                    '{"prompt": "ok", "completion": "\\ud83d\\ude00 a whole emoji"}\n'
                    '{"prompt": ' + "1" * 5000 + ', "completion": "x"}\n')
    report = check_file(path)
    assert report.rows == 1
    assert [(e.line, e.field) for e in report.errors] == [(1, "prompt"), (3, None)]
    assert "lone UTF-16 surrogate" in report.errors[0].reason
    assert report.errors[1].reason.startswith("a number of more than 4300 digits")


def test_the_cli_prints_one_sentence_for_each_hostile_file(tmp_path):
    files = deep_files(tmp_path / "in")
    bomb = tmp_path / "in" / "bomb.jsonl.gz"
    gzip_bomb(bomb, 64 * MIB)
    env = {**os.environ, "LAB_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}

    def check(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lab", "data", "check", *args], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=120)

    refused = check(str(files["json"]))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("error: deep.json, line 3: nested more than 100 levels deep")
    assert refused.stderr.count("\n") == 1
    listed = check(str(files["jsonl"]))
    assert listed.returncode == 0 and "deep.jsonl:2: nested more than 100 levels deep" in listed.stdout
    too_big = check(str(bomb), "--max-import-bytes", "4MiB", "--json")
    assert too_big.returncode == 1 and json.loads(too_big.stdout) == {
        "error": "bomb.jsonl.gz inflates to more than the import limit of 4 MiB; set LAB_MAX_IMPORT_BYTES (or pass "
                 "--max-import-bytes) higher if the file is meant to be that large."}


def test_the_app_shows_the_sentence_not_an_unexpected_error(lab_app, tmp_path):
    from gradio_client import Client

    files = deep_files(tmp_path / "in")
    client = Client(lab_app.url, verbose=False)
    status, *_ = client.predict(source=str(files["json"]), kind="auto", api_name="/data_check")
    assert "deep.json, line 3: nested more than 100 levels deep" in status and "nexpected" not in status
    status, *_ = client.predict(source=str(files["jsonl"]), kind="auto", api_name="/data_check")
    assert "Valid rows** 1 / 2" in status


def test_a_csv_field_longer_than_the_csv_module_s_default_limit_is_read_with_the_rows_after_it(tmp_path):
    path = tmp_path / "long.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerows([["prompt", "completion"], ["a", "x" * 300_000], ["b", "short"], ["c", "also short"]])
    report = check_file(str(path))
    assert (report.rows, report.errors) == (3, [])
