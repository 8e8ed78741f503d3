"""Read a file, a dataset folder (or a hub dataset) into raw records, each with the 1-based place it came from.

Places: the file's line for JSONL, the data row for CSV (the header is not counted), the element
for a JSON array (or the index for an object of arrays, or for pandas' ``to_json`` objects), the line an object
starts on for pretty-printed objects written one after another, the row for Parquet, Arrow and hub datasets. A
folder's files are read as one table, in name order, each file's places counting on from the last place of the file
before it. Problems that spoil one record (a broken JSON line, bytes that are not UTF-8, a value nested deeper
than anything downstream can walk) become row errors; problems that leave nothing usable (empty
file, not text, not a table, an archive) raise ``LabError``, and so does a file over the limits of
``lab.data.limits``, which bound what one import reads (a folder's files together): gzip is inflated as a stream and
stopped at the byte limit, and rows are counted as they are read.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from lab.data.canonical import RowError
from lab.data.limits import MAX_DEPTH, LimitExceeded, ReadLimits, read_limits, show_count, show_size
from lab.errors import LabError
from lab.paths import absolute, input_path, lab_homes, within

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+)?$")
# Endings of the files people import: a text ending so is a mistyped path, never a hub id (no hub dataset is named so);
# a dataset named after its file drops them (``without_suffixes``: ".gz" first, so "a.jsonl.gz" is "a"); the Data tab's
# upload takes these.
DATA_SUFFIXES = (".gz", ".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".arrow", ".feather", ".txt")
PATH_STARTS = ("./", "../", "/", "~", ".\\", "..\\")
PANDAS_INDEX = re.compile(r"-?\d+")  # the row labels df.to_json() writes for a default (or integer) index
# Wrappers people put around a JSON list of rows: {"data": [...]}.
WRAPPER_KEYS = ("data", "rows", "examples", "train", "records", "items", "conversations_list")
GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
CHUNK = 1 << 20  # gzip is inflated a megabyte at a time
SNIFF = 8192  # what a file's first bytes are judged by: binary or text, UTF-16 without a byte-order mark
ARROW_FILE = b"ARROW1\x00\x00"  # an Arrow IPC file (Feather version 2) starts so
ARROW_STREAM = b"\xff\xff\xff\xff"  # an Arrow IPC stream's first message (datasets' .arrow files) starts so
# What a file that is no text may be, by its first bytes (none of them text): what it is, and what to do.
CONTAINERS = tuple((re.compile(magic), what, fix) for magic, what, fix in (
    (rb"PK\x03\x04", "a zip archive (an Excel .xlsx workbook is one too)",
     "extract the data file and import that (a workbook: save the sheet as CSV)"),
    (rb"PK\x05\x06", "an empty zip archive", "import the data file itself"),
    (rb"BZh[1-9](?:1AY&SY|\x17rE8P)", "bzip2-compressed",
     "decompress it first (bunzip2 FILE), or compress it with gzip, which is read as it is"),
    (rb"\xfd7zXZ\x00", "xz-compressed",
     "decompress it first (unxz FILE), or compress it with gzip, which is read as it is"),
    (rb"7z\xbc\xaf\x27\x1c", "a 7z archive", "extract the data file first (7z x FILE) and import that"),
    (rb"\x28\xb5\x2f\xfd", "zstd-compressed",
     "decompress it first (zstd -d FILE), or compress it with gzip, which is read as it is"),
    (rb"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (or another old Office file)",
     "save the sheet as CSV"),
))
SEP_LINE = re.compile(rb"(?:\xef\xbb\xbf)?sep=([^\r\n])\r?\n")  # Excel's first line naming the delimiter: "sep=;"
# A folder's data files: every data ending but .txt (a folder's README.txt or LICENSE.txt is no data), none of the
# files datasets writes beside the data, none hidden (.git, .cache), no deeper than root/data/train/shard.parquet.
FOLDER_SUFFIXES = tuple(s for s in DATA_SUFFIXES if s != ".txt")
DATASETS_METADATA = ("dataset_info.json", "dataset_infos.json", "dataset_dict.json", "state.json")
FOLDER_DEPTH = 3
FILES_SHOWN = 3
SHARD = re.compile(r"(.+?)-\d{5}-of-\d{5}")  # datasets' shard names, its split first: train_sft-00000-of-00003
# The words datasets takes a split from in a file's or folder's name, as a word of its own ("train.jsonl",
# "alpaca_train.json", "train/0000.parquet"), and the split each means.
SPLIT_WORDS = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
               "val": "validation", "dev": "validation", "test": "test", "testing": "test", "eval": "test",
               "evaluation": "test"}
SPLIT_WORD = re.compile(r"(?:^|[-._ 0-9])(" + "|".join(SPLIT_WORDS) + r")(?=$|[-._ 0-9])", re.IGNORECASE)
DOUBLE_ENCODED = ("rows are JSON strings each holding a JSON object (the rows were encoded twice); each was decoded "
                  "and read as its object")
CSV_FIELD_MAX = 2**31 - 1  # the csv module keeps its field limit in a C long
FIRST_BYTE = re.compile(rb"[^\xef\xbb\xbf \t\r\n]")  # the first byte past a BOM and blanks, found without a copy
FIRST_CHAR = re.compile(r"[^ \t\r\n]")
JSON_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # \ud800-\udfff: only these parse to half a character
TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep, far deeper than rows need and more than the lab reads"
NOT_TEXT = ("holds a lone UTF-16 surrogate (an escape like \\ud800 without its other half), which is not text; "
            "re-export the file with every character whole")


@dataclass
class RawTable:
    """Records as read, before any conversion: ``(place, record)`` pairs plus reading errors."""

    source: str
    file_format: str  # jsonl, json, csv, tsv, parquet, arrow, hub
    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a person should know of how the file was read
    nbytes: int = 0  # the bytes read (decompressed; Parquet and Arrow: their data), which a folder counts to its limit

    @property
    def columns(self) -> list[str]:
        """Every key seen, in order of first appearance."""
        seen: dict[str, None] = {}
        for _, record in self.records:
            for key in record:
                seen.setdefault(key, None)
        return list(seen)

    @property
    def total(self) -> int:
        return len(self.records) + len(self.errors)


def read_table(path: str | Path, *, source_name: str | None = None, split: str | None = None,
               limits: ReadLimits | None = None) -> RawTable:
    """Read ``path`` (a local file, a dataset folder, or a hub dataset id ``owner/name[:split]``) within ``limits`` (by
    default those the environment sets: ``lab.data.limits.read_limits``); ``split`` picks a folder's or a hub
    dataset's split."""
    text_path = str(path)
    local = Path(text_path).expanduser()
    if local.exists():
        input_path(local)  # never the lab's own store or state (lab.paths)
    limits = limits or read_limits()
    if not local.exists():
        if HUB_ID.match(text_path) and not looks_local(text_path):
            return read_hub(text_path, split=split, limits=limits)
        raise LabError(no_such_file(text_path))
    source = source_name or local.name
    if local.is_dir():
        return read_folder(local, source, split, limits)
    if split:
        raise LabError(f"{source} is one file: a split is chosen only in a dataset folder or a hub dataset; leave the "
                       "split out.")
    return read_file(local, source, limits)


def read_file(local: Path, source: str, limits: ReadLimits) -> RawTable:
    """One file, by what its bytes are: gzip (inflated first), Parquet, Arrow, or text (UTF-8, or UTF-16 re-encoded)
    read by its ending and content; an archive or another binary file is refused, named where its bytes say."""
    if not local.is_file():
        raise LabError(f"{source} is not a regular file (a device, pipe or socket); choose a JSON, JSONL, CSV, "
                       "Parquet or Arrow file.")
    data, gzipped = read_bytes(local, source, limits)
    if gzipped:
        local = local.with_suffix("")  # data.jsonl.gz reads as data.jsonl
    data = utf16_as_utf8(data, source)
    if not data or data.isspace():
        raise LabError(f"{source} is empty: there are no rows to read.")
    suffix = local.suffix.lower()
    if data[:4] == b"PAR1":
        return read_parquet(data, source, limits)
    if data.startswith((ARROW_FILE, ARROW_STREAM)) or suffix in (".arrow", ".feather"):
        return read_arrow(data, source, limits)
    if suffix == ".parquet":
        raise LabError(f"{source}: not a Parquet file (it does not start with the 'PAR1' marker).")
    refuse_container(data, source)
    if b"\x00" in data[:SNIFF]:
        data = utf16_without_bom(data, source) or refuse_binary(data, source)
    fmt = guess_text_format(suffix, data)
    if fmt in ("csv", "tsv"):
        table = read_csv(data, source, delimiter="\t" if fmt == "tsv" else None, limits=limits)
    elif fmt == "jsonl":
        table = read_jsonl(data, source, limits)
    else:
        table = read_json(data, source, limits)
    table.nbytes = len(data)
    return table


def refuse_container(data: bytes, source: str) -> None:
    """Refuse an archive or a compressed file other than gzip, saying which and what to do."""
    for magic, what, fix in CONTAINERS:
        if magic.match(data):
            raise LabError(f"{source} is {what}, not a data file the lab reads; {fix}.")


def utf16_without_bom(data: bytes, source: str) -> bytes | None:
    """UTF-16 text without a byte-order mark, re-encoded as UTF-8; None when ``data`` is not that. Told by its NULs:
    text of mostly ASCII characters in UTF-16 has a NUL in every other byte (the odd bytes little-endian, the even
    ones big-endian) and none in the others; only that pattern, unambiguous, is taken for UTF-16."""
    sample = data[:SNIFF]
    sample = sample[:len(sample) - len(sample) % 2]
    evens, odds, half = sample[0::2].count(0), sample[1::2].count(0), len(sample) // 2
    if evens == 0 and odds * 2 >= half:
        encoding, order = "utf-16-le", "little-endian"
    elif odds == 0 and evens * 2 >= half:
        encoding, order = "utf-16-be", "big-endian"
    else:
        return None
    try:
        return data.decode(encoding).encode("utf-8")
    except UnicodeDecodeError as err:  # an odd length, or half of a surrogate pair
        raise LabError(f"{source} looks like UTF-16 ({order}) without a byte-order mark, but could not be decoded as "
                       f"that ({err.reason}); re-save it as UTF-8.") from None


def refuse_binary(data: bytes, source: str) -> bytes:
    """``data`` as it is when its NULs are a few strays in text (the rows holding them become row errors, as anywhere
    else in a file); a ``LabError`` when it looks binary: NULs in more than 1% of its first bytes, or those bytes
    largely not UTF-8."""
    sample = data[:SNIFF]
    undecodable = sample.decode("utf-8", errors="replace").count("\ufffd")
    if sample.count(0) * 100 > len(sample) or undecodable * 20 > len(sample):
        raise LabError(f"{source} is not a text file (it holds NUL bytes, and its first bytes match no format the lab "
                       "reads); expected JSON, JSONL, CSV, Parquet or Arrow, as UTF-8 (or UTF-16 with a byte-order "
                       "mark).")
    return data


def looks_local(text: str) -> bool:
    """Whether a text that names no existing file was meant as a path, not a hub id ``owner/name``: it is shaped
    like one (:func:`path_shaped`) or its folder is here. Such a text gets "no such file" at once, not a slow hub
    attempt and a hub error that never says the file is missing."""
    path = Path(text)
    return path_shaped(text) or (path.parent != Path(".") and path.parent.expanduser().is_dir())


def path_shaped(text: str) -> bool:
    """Whether a text reads as a path by its letters alone (it starts like one or ends in a data file's suffix):
    what the web app may ask without looking at the disk."""
    return text.startswith(PATH_STARTS) or Path(text).name.lower().endswith(DATA_SUFFIXES)


def without_suffixes(name: str) -> str:
    """A file's name without its data endings, whatever their case: ``data.CSV.GZ`` → ``data``."""
    for suffix in DATA_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[:-len(suffix)]
    return name


def no_such_file(text: str) -> str:
    """"No such file", and nothing about what else is on the disk: the web app hands over texts typed by anyone that
    look like hub ids (``lab.paths.server_path``), so naming a folder's other files ("did you mean …?") would show
    what lies outside the folders it reads from."""
    message = f"no such file: {text}"
    return message if looks_local(text) else f"{message}, and not a hub dataset id like 'owner/name'"


def read_bytes(path: Path, source: str, limits: ReadLimits) -> tuple[bytes, bool]:
    """The file's bytes (gzip inflated) and whether it was gzip; a file over the byte limit is refused before it is
    read, and gzip as soon as it inflates past it."""
    try:
        with path.open("rb") as stream:
            if stream.read(2) == GZIP_MAGIC:
                stream.seek(0)
                return inflate(stream, source, limits), True
            size = os.fstat(stream.fileno()).st_size
            if size > limits.max_import_bytes:
                raise limits.exceeded("max_import_bytes", source, f"is {show_size(size)}, more than")
            stream.seek(0)
            return stream.read(), False
    except OSError as err:  # no permission, removed meanwhile, a disk error
        raise LabError(f"{source} could not be read: {err.strerror or err}.") from None


def inflate(stream: BinaryIO, source: str, limits: ReadLimits) -> bytes:
    """Gzip (one member or several) inflated a chunk at a time, so a bomb is stopped at the limit, not in memory."""
    out = io.BytesIO()  # its getvalue() hands over the buffer without a copy
    try:
        with gzip.GzipFile(fileobj=stream) as unzipped:
            while chunk := unzipped.read(CHUNK):
                if out.tell() + len(chunk) > limits.max_import_bytes:
                    raise limits.exceeded("max_import_bytes", source, "inflates to more than")
                out.write(chunk)
    except (OSError, EOFError, zlib.error) as err:
        raise LabError(f"{source}: looks gzip-compressed but could not be decompressed ({err}).") from None
    return out.getvalue()


def utf16_as_utf8(data: bytes, source: str) -> bytes:
    """A file with a UTF-16 byte-order mark, re-encoded as UTF-8 so every format reads it; others as they are."""
    if not data.startswith(UTF16_BOMS):
        return data
    try:
        return data.decode("utf-16").encode("utf-8")
    except UnicodeDecodeError as err:  # an odd length, or half of a surrogate pair
        raise LabError(f"{source}: starts like UTF-16 but could not be decoded ({err.reason}).") from None


def guess_text_format(suffix: str, data: bytes) -> str:
    """The reader for a text file, by its suffix and, for JSON, its content: a JSON Lines name holding a JSON array
    or objects pretty-printed over several lines (what ``json.dump(rows, f, indent=2)`` writes, whatever the file is
    called) is read as JSON, which reads both (:func:`read_json`)."""
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    first = FIRST_BYTE.search(data)
    head = first.group() if first else b""
    if suffix in (".jsonl", ".ndjson"):
        return "json" if head == b"[" or multi_line_json(data, first) else "jsonl"
    if head == b"[":
        return "json"
    if head == b"{":
        return "json" if suffix == ".json" or multi_line_json(data, first) else "jsonl"
    if suffix == ".json":
        return "json"
    return "csv"


def multi_line_json(data: bytes, first: re.Match[bytes] | None = None) -> bool:
    """Whether the JSON in ``data`` is laid out over several lines a value, as pretty-printers write it: its first
    line is valid JSON cut short by the line end (``{``, ``[``, ``{"a": 1,``) and its next line is no JSON value on
    its own (``"a": 1,``). JSON Lines is neither: a line cut short there is one broken row, and the next line is the
    next row."""
    first = first or FIRST_BYTE.search(data)
    if first is None:
        return False
    opening, after = line_at(data, first.start())
    if json_state(opening) != "unfinished":
        return False
    following = FIRST_BYTE.search(data, after)
    return following is None or json_state(line_at(data, following.start())[0]) != "valid"


def line_at(data: bytes, start: int) -> tuple[bytes, int]:
    """The line that starts at ``start`` (without its line end), and where the next one starts."""
    end = data.find(b"\n", start)
    end = len(data) if end < 0 else end
    return data[start:end], end + 1


def json_state(line: bytes) -> str:
    """One line's JSON: "valid", "unfinished" (valid as far as it goes, the parser wanted more) or "broken"."""
    try:
        json.loads(line.decode("utf-8"))
    except json.JSONDecodeError as err:
        return "unfinished" if err.pos >= len(err.doc.rstrip()) else "broken"
    except (UnicodeDecodeError, RecursionError, ValueError):  # not UTF-8, too deep, a number too long
        return "broken"
    return "valid"


def text_lines(data: bytes) -> Iterator[tuple[int, str | None, str]]:
    """``(line_number, text or None, reason)``, one line at a time (a list of them all would cost many times the
    file): lines that are not UTF-8 get ``None`` and a reason naming the byte, so one bad line spoils no other."""
    start = len(UTF8_BOM) if data.startswith(UTF8_BOM) else 0
    number = 0
    while start <= len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        number += 1
        raw = data[start:end]
        start = end + 1
        try:
            text = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as err:
            yield number, None, not_utf8(raw[err.start], err.start + 1)
            continue
        yield number, text, ""


def not_utf8(byte: int, column: int) -> str:
    return (f"not valid UTF-8: byte 0x{byte:02X} at column {column} "
            "(the file may be Latin-1 or Windows-1252; re-save it as UTF-8)")


class UnusableJSON(Exception):
    """Valid JSON that Python cannot turn into a value: ``reason`` is for a row error, ``line`` finds the place in
    a whole document."""

    reason = ""

    def line(self, text: str) -> int:
        raise NotImplementedError


class TooDeep(UnusableJSON):
    reason = TOO_DEEP

    def line(self, text: str) -> int:
        """The line where ``text`` first nests deeper than MAX_DEPTH (brackets inside strings do not count)."""
        depth = 0
        for match in re.finditer(JSON_STRING + r"|[\[\]{}]", text):
            token = match.group()
            if token in ("[", "{"):
                depth += 1
                if depth > MAX_DEPTH:
                    return text.count("\n", 0, match.start()) + 1
            elif token in ("]", "}"):
                depth -= 1
        return 1


class LongNumber(UnusableJSON):
    def __init__(self) -> None:
        super().__init__()
        self.digits = sys.get_int_max_str_digits()
        self.reason = f"a number of more than {self.digits} digits, longer than Python reads"

    def line(self, text: str) -> int:
        """The line of the first number outside strings with more digits than Python converts."""
        for match in re.finditer(JSON_STRING + rf"|\d{{{self.digits + 1}}}", text):
            if match.group()[0] != '"':
                return text.count("\n", 0, match.start()) + 1
        return 1


def load_json(text: str) -> Any:
    """``json.loads``, with the failures a syntax error does not cover as ``UnusableJSON``: nesting deeper than
    Python's recursion limit, and integers longer than it converts (``sys.get_int_max_str_digits``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise TooDeep() from None
    except ValueError:
        raise LongNumber() from None


@dataclass(frozen=True)
class Checks:
    """Which checks a value read from a file needs. Both walk the whole value, so each is skipped where it cannot
    fail: values from Arrow (Parquet, the hub) may nest to any depth but their strings are valid UTF-8 already."""

    depth: bool = True
    text: bool = False

    @classmethod
    def of_json(cls, text: str) -> Checks:
        """For a value parsed from ``text``: it can nest deeper than MAX_DEPTH only if the text has that many opening
        brackets, and hold a lone surrogate only if it has a surrogate escape; both are found at C speed, so most
        lines of a file need no walk at all."""
        return cls(depth=text.count("[") + text.count("{") > MAX_DEPTH, text=SURROGATE_ESCAPE.search(text) is not None)


def record_problem(record: dict[str, Any], checks: Checks) -> tuple[str | None, str] | None:
    """``(field, reason)`` when a record cannot be used as read (a column name that is not text, a field nested too
    deep or holding a string that is not text), else None."""
    for key, value in record.items():
        if checks.text and isinstance(key, str) and not is_text(key):
            return None, NOT_TEXT
        reason = value_problem(value, checks)
        if reason:
            return key, reason
    return None


def value_problem(value: Any, checks: Checks, depth: int = 2) -> str | None:
    """Why a value read from a file cannot be used, or None: nested deeper than MAX_DEPTH (what reads it next walks
    values recursively), or a string that is not text. ``depth`` is the value's own level: a record's fields are 2.
    Iterative, so that it cannot itself run out of stack."""
    if not (checks.depth or checks.text):
        return None
    wanted = (dict, list, tuple, str) if checks.text else (dict, list, tuple)
    stack = [(value, depth)] if isinstance(value, wanted) else []
    while stack:
        item, level = stack.pop()
        if isinstance(item, str):
            if not is_text(item):
                return NOT_TEXT
            continue
        if level > MAX_DEPTH:
            return TOO_DEEP
        if isinstance(item, dict):
            if checks.text and not all(map(is_text, item)):
                return NOT_TEXT
            item = item.values()
        for child in item:  # a plain loop: several times faster here than a generator or a list of keys and values
            if isinstance(child, wanted):
                stack.append((child, level + 1))
    return None


def is_text(value: str) -> bool:
    """False for a string holding a lone UTF-16 surrogate (``json`` makes one of ``"\\ud800"``): no encoder writes
    it, so it would fail when saved or shown."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def make_room(table: RawTable, limits: ReadLimits) -> None:
    """Refuse the file as soon as it has more rows than the limit, before they pile up in memory."""
    if table.total >= limits.max_import_rows:
        raise limits.exceeded("max_import_rows", table.source, "has more rows than")


def add_error(table: RawTable, line: int | None, reason: str, limits: ReadLimits, field: str | None = None) -> None:
    make_room(table, limits)
    table.errors.append(RowError(line, field, reason, table.source))


def add_record(table: RawTable, line: int, value: Any, limits: ReadLimits, checks: Checks) -> None:
    """A value read from the file as a record, or a row error if it is not an object or cannot be used as read. A
    string holding an object's JSON (a row encoded twice) is read as that object, with a note."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value, checks = load_json(value), Checks(text=True)
        except json.JSONDecodeError as err:
            return add_error(table, line, "expected a JSON object, got a string that starts like one written as JSON "
                             f"but is broken JSON ({json_problem(err)} at its character {err.pos + 1})", limits)
        except UnusableJSON as err:
            return add_error(table, line, err.reason, limits)
        if DOUBLE_ENCODED not in table.notes:
            table.notes.append(DOUBLE_ENCODED)
    if not isinstance(value, dict):
        return add_error(table, line, f"expected a JSON object, got {json_type(value)}", limits)
    problem = record_problem(value, checks)
    if problem:
        return add_error(table, line, problem[1], limits, field=problem[0])
    make_room(table, limits)
    table.records.append((line, value))


def read_jsonl(data: bytes, source: str, limits: ReadLimits) -> RawTable:
    table = RawTable(source=source, file_format="jsonl")
    readable = False
    for number, text, reason in text_lines(data):
        if text is None:
            add_error(table, number, reason, limits)
            continue
        if not text.strip():
            continue
        readable = True
        try:
            value = load_json(text)
        except json.JSONDecodeError as err:
            add_error(table, number, broken_line(err, text), limits)
        except UnusableJSON as err:
            add_error(table, number, err.reason, limits)
        else:
            add_record(table, number, value, limits, Checks.of_json(text))
    if not readable and table.errors:
        raise LabError(f"{source} could not be decoded: no line is valid UTF-8, so re-save the file as UTF-8.")
    if not readable:
        raise LabError(f"{source} is empty: there are no rows to read.")
    return table


def broken_line(err: json.JSONDecodeError, line: str) -> str:
    """Why a JSON Lines line could not be read, with a hint when it is an object and a comma after it (rows copied
    out of an array)."""
    if err.msg == "Extra data" and line[err.pos:].strip() == ",":
        return (f"broken JSON: a ',' after the object, at column {err.colno} (a comma after each object? JSON Lines "
                "holds one object a line with nothing after it: remove the commas)")
    return f"broken JSON: {json_problem(err)} at column {err.colno}"


def json_problem(err: json.JSONDecodeError) -> str:
    """json's own words for a syntax error, less the "at" some end on ("Invalid control character at"), which its
    message follows with the place: the lab's messages put the place elsewhere."""
    return err.msg.removesuffix(" at")


def read_json(data: bytes, source: str, limits: ReadLimits) -> RawTable:
    text = json_document(data, source)
    try:
        value = load_json(text)
    except json.JSONDecodeError as err:
        multi_line = multi_line_json(data)
        if err.msg == "Extra data" and not multi_line:  # a .json file that is really JSON Lines
            return read_jsonl(data, source, limits)
        first = FIRST_CHAR.search(text)
        if first and first.group() == "[":
            return read_json_array_salvage(text, source, limits, Checks.of_json(text))
        if multi_line:  # pretty-printed objects one after another, as a loop of json.dump(row, f, indent=2) writes
            return read_json_stream(text, source, limits, Checks.of_json(text))
        raise LabError(f"{source}: broken JSON at line {err.lineno}, column {err.colno}: {json_problem(err)}.") from None
    except UnusableJSON as err:
        raise LabError(f"{source}, line {err.line(text)}: {err.reason}.") from None
    return json_value_to_table(value, source, limits, Checks.of_json(text))


def json_document(data: bytes, source: str) -> str:
    """A JSON document's text; a byte that is not UTF-8 spoils the whole document, so it is named with its line."""
    start = len(UTF8_BOM) if data.startswith(UTF8_BOM) else 0
    try:
        return str(memoryview(data)[start:], "utf-8")  # the BOM skipped without copying the bytes
    except UnicodeDecodeError as err:
        bad = start + err.start
        line_start = data.rfind(b"\n", 0, bad) + 1
        number = data.count(b"\n", 0, bad) + 1
        raise LabError(f"{source}: line {number} is {not_utf8(data[bad], bad - line_start + 1)}; a JSON document "
                       "must be valid UTF-8 throughout.") from None


def read_json_stream(text: str, source: str, limits: ReadLimits, checks: Checks) -> RawTable:
    """JSON values one after another, each over as many lines as it takes, read one at a time; each row's place is
    the line its value starts on. A value that cannot be read ends the reading there (where the next one starts is
    unknown), as a row error naming its line, or as the file's error when it is the first."""
    decoder = json.JSONDecoder()
    table = RawTable(source=source, file_format="json")
    pos, line, counted = skip_space(text, 0), 1, 0
    while pos < len(text):
        line += text.count("\n", counted, pos)  # counted as it goes: from the start each time would be quadratic
        counted = pos
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            reason = f"broken JSON at line {err.lineno}, column {err.colno}: {json_problem(err)}"
        except RecursionError:
            reason = TooDeep.reason
        except ValueError:  # an integer longer than Python converts
            reason = LongNumber().reason
        else:
            add_record(table, line, value, limits, checks)
            pos = skip_space(text, pos)
            continue
        if not table.total:
            raise LabError(f"{source}: the JSON value that starts at line {line} cannot be read: {reason}.")
        add_error(table, line, f"{reason}; the values from here on could not be read", limits)
        break
    return table


def json_value_to_table(value: Any, source: str, limits: ReadLimits, checks: Checks) -> RawTable:
    table = RawTable(source=source, file_format="json")
    if isinstance(value, dict):
        if not value:
            raise LabError(f"{source} is empty: it holds one JSON object with no fields ({{}}), so no rows.")
        wrapped = [k for k in WRAPPER_KEYS if isinstance(value.get(k), list)]
        pandas = pandas_rows(value, source)
        if pandas is not None:
            check_rows(len(pandas), source, limits)
            value = pandas
        elif wrapped and len(value) <= 3:
            value = value[wrapped[0]]
        elif value and all(isinstance(v, list) for v in value.values()):
            lengths = {len(v) for v in value.values()}
            if len(lengths) != 1:  # the first few, quoted: keys may be long or hold line breaks
                shown = ", ".join(f"{k!r}: {len(v)}" for k, v in list(value.items())[:5])
                raise LabError(f"{source}: an object of arrays whose arrays differ in length ({shown}"
                               f"{', …' if len(value) > 5 else ''}).")
            keys = list(value)
            count = lengths.pop()
            check_rows(count, source, limits)
            value = [{k: value[k][i] for k in keys} for i in range(count)]
        else:
            value = [value]
    if not isinstance(value, list):
        raise LabError(f"{source}: expected a JSON array of objects, got {json_type(value)}.")
    if not value:
        raise LabError(f"{source} is empty: the JSON array has no elements.")
    check_rows(len(value), source, limits)
    for number, item in enumerate(value, start=1):
        add_record(table, number, item, limits, checks)
    return table


def pandas_rows(value: dict[str, Any], source: str) -> list[dict[str, Any]] | None:
    """The rows of what pandas' ``df.to_json(path)`` writes, or None for any other object. Its default layout
    (orient="columns") is an object per column, each keyed by the row labels: ``{"instruction": {"0": …, "1": …}}``;
    orient="index" is the reverse, an object per row keyed by its label: ``{"0": {"instruction": …}}``. Told apart
    from a single record by the labels, which are integers for the default index and the same in every column.
    orient="split" names the columns once: :func:`pandas_split_rows`."""
    split = pandas_split_rows(value, source)
    if split is not None:
        return split
    if not value or not all(isinstance(v, dict) for v in value.values()):
        return None
    if all(PANDAS_INDEX.fullmatch(k) for k in value):  # orient="index": the rows by their labels
        return list(value.values())
    labels = list(next(iter(value.values())))
    if not labels or not all(PANDAS_INDEX.fullmatch(k) for k in labels):
        return None
    if any(list(column) != labels for column in value.values()):
        return None
    return [{name: column[label] for name, column in value.items()} for label in labels]


def pandas_split_rows(value: dict[str, Any], source: str) -> list[dict[str, Any]] | None:
    """The rows of pandas' orient="split" (``{"columns": [...], "index": [...], "data": [[...], ...]}``, "index"
    left out with ``index=False``), or None for any other object: each row a list of values in the columns' order."""
    if set(value) not in ({"columns", "data"}, {"columns", "index", "data"}):
        return None
    columns, data = value["columns"], value["data"]
    if not (isinstance(columns, list) and all(isinstance(c, str) for c in columns) and isinstance(data, list)
            and all(isinstance(row, list) and len(row) == len(columns) for row in data)):
        return None
    refuse_repeated_columns(columns, source, "its 'columns'")
    return [dict(zip(columns, row)) for row in data]


def check_rows(count: int, source: str, limits: ReadLimits) -> None:
    """Refuse ``count`` rows, known before they are read, when they are more than the limit."""
    if count > limits.max_import_rows:
        raise limits.exceeded("max_import_rows", source, f"has {show_count(count)} rows, more than")


def read_json_array_salvage(text: str, source: str, limits: ReadLimits, checks: Checks) -> RawTable:
    """A JSON array with a syntax error: keep the elements before the error and report where it is."""
    decoder = json.JSONDecoder()
    table = RawTable(source=source, file_format="json")
    pos = text.index("[") + 1
    number = 0
    while True:
        pos = skip_space(text, pos)
        if pos < len(text) and text[pos] == "]":
            after = skip_space(text, pos + 1)
            if after < len(text):  # what follows the array would be lost without a word
                line = text.count("\n", 0, after) + 1
                add_error(table, None, f"text after the array's closing ']' (line {line}) was not read: a JSON file "
                          "holds one array of rows", limits)
            return table
        number += 1
        try:
            item, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            add_error(table, number, f"broken JSON at file line {err.lineno}, column {err.colno}: {json_problem(err)}; "
                      "elements from here on could not be read", limits)
            return table
        add_record(table, number, item, limits, checks)
        pos = skip_space(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "]":
            line = text.count("\n", 0, pos) + 1
            add_error(table, number + 1, f"broken JSON at file line {line}: expected ',' or ']' after an element; "
                      "elements from here on could not be read", limits)
            return table


def skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def read_csv(data: bytes, source: str, *, delimiter: str | None, limits: ReadLimits) -> RawTable:
    """A CSV or TSV file: ``delimiter`` as given, else as Excel's first line ``sep=;`` names it (that line skipped),
    else as the csv module's sniffer finds it."""
    stream = io.BytesIO(data)
    sep_line = SEP_LINE.match(data)
    if sep_line:
        delimiter = sep_line.group(1).decode("latin-1")
        stream.seek(sep_line.end())
    if delimiter is None:
        try:
            sample = data[:20000].decode("utf-8", errors="surrogateescape")
            delimiter = csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
        except csv.Error:
            delimiter = ","
    # Decoded as it is read: the whole file as one str, and StringIO's copy of it, would cost several times the file.
    # Bytes that are not UTF-8 are kept as surrogates and reported per cell below.
    lines = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    # The csv module stops at fields over 128 KiB (one long completion would end the file there); the file is bounded
    # by the import limit already, so a field may be as long as that.
    csv.field_size_limit(max(csv.field_size_limit(), min(len(data), CSV_FIELD_MAX)))
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise LabError(f"{source} is empty: there are no rows to read.") from None
    except csv.Error as err:  # a column name longer than the csv module's field limit, or a stray quote
        raise LabError(f"{source}: the first line (the CSV header) could not be parsed: {err}.") from None
    header = [h.strip() for h in header]
    if not any(header):
        raise LabError(f"{source}: the first line (the CSV header) has no column names.")
    if any(map(has_surrogates, header)):
        raise LabError(f"{source}: the first line (the CSV header) is not valid UTF-8; re-save the file as UTF-8.")
    refuse_repeated_columns(header, source, "the CSV header")
    refuse_wide(len(header), source)
    table = RawTable(source=source, file_format="tsv" if delimiter == "\t" else "csv")
    try:
        for number, cells in enumerate(reader, start=1):
            if not cells or not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                add_error(table, number, f"has {len(cells)} fields, the header has {len(header)}", limits)
                continue
            record = dict(zip(header, cells))
            bad = next((k for k, v in record.items() if has_surrogates(v)), None)
            if bad is not None:
                raw = record[bad].encode("utf-8", errors="surrogateescape")
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    add_error(table, number, not_utf8(raw[err.start], err.start + 1), limits, field=bad)
                continue
            make_room(table, limits)
            table.records.append((number, record))
    except csv.Error as err:
        add_error(table, reader.line_num, f"CSV could not be parsed from here on: {err}", limits)
    if not table.records and not table.errors:
        raise LabError(f"{source} has a header but no data rows.")
    return table


def has_surrogates(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def read_parquet(data: bytes, source: str, limits: ReadLimits) -> RawTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = RawTable(source=source, file_format="parquet")
    try:
        footer = pq.ParquetFile(pa.BufferReader(data))
        refuse_repeated_columns(footer.schema_arrow.names, source, "the Parquet schema")
        check_parquet_size(footer.metadata, source, limits)
        # Text columns are read as dictionaries, and each batch's size is counted as its text would be once
        # decoded, before it is: the footer gives the encoded size, and a 2 KB file of one dictionary entry
        # repeated 300,000 times decoded to 3.4 GB.
        texts = [footer.schema.column(i).path for i in range(len(footer.schema))
                 if footer.schema.column(i).physical_type == "BYTE_ARRAY"]
        parquet = pq.ParquetFile(pa.BufferReader(data), read_dictionary=texts)
        size = sum(decoded_nbytes(column) for batch in parquet.iter_batches(batch_size=BATCH_ROWS)
                   for column in batch.columns)  # first, so a file too large is refused before any row is made
        if size > limits.max_import_bytes:
            raise limits.exceeded("max_import_bytes", source, f"holds {show_size(size)} of text, more than")
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            count_batch(table, batch, source, limits)
    except (pa.ArrowException, OSError, ValueError) as err:  # ValueError: strings that are not UTF-8
        raise LabError(f"{source}: not a readable Parquet file ({first_line(err)}).") from None
    if not table.total:
        raise LabError(f"{source} is empty: the Parquet file has no rows.")
    return table


BATCH_ROWS = 4096  # rows of a Parquet file decoded at a time


def count_batch(table: RawTable, batch: Any, source: str, limits: ReadLimits) -> None:
    """Add a record batch's rows to ``table``, once its rows and its size as decoded text are within the limits
    (counted with the rows before it)."""
    check_rows(table.total + batch.num_rows, source, limits)
    table.nbytes += sum(decoded_nbytes(column) for column in batch.columns)
    if table.nbytes > limits.max_import_bytes:
        raise limits.exceeded("max_import_bytes", source, "holds, as text, more than")
    for row in batch.to_pylist():
        add_record(table, table.total + 1, row, limits, Checks())


def decoded_nbytes(array: Any) -> int:
    """About how many bytes ``array`` takes once its dictionaries are decoded: a dictionary-encoded column stores
    each distinct text once, and its ``nbytes`` says nothing of how often each is used."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_dictionary(kind):
        values = array.dictionary
        if not len(array) or not len(values):
            return array.nbytes
        if pa.types.is_string(values.type) or pa.types.is_binary(values.type) or \
                pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type):
            lengths = pc.binary_length(values).fill_null(0)
            used = pc.take(lengths, array.indices.fill_null(0))
            return int(pc.sum(used).as_py() or 0) + array.indices.nbytes
        return decoded_nbytes(values) * len(array) // len(values) + array.indices.nbytes
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return decoded_nbytes(array.flatten()) + 8 * (len(array) + 1)
    if pa.types.is_struct(kind):
        return sum(decoded_nbytes(child) for child in array.flatten())
    return array.nbytes


def check_parquet_size(metadata: Any, source: str, limits: ReadLimits) -> None:
    """Refuse a Parquet file by the row count and uncompressed size in its footer, before any row is read (a lower
    bound of its decoded size: ``count_batch`` counts that as it reads)."""
    check_rows(metadata.num_rows, source, limits)
    size = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    if size > limits.max_import_bytes:
        raise limits.exceeded("max_import_bytes", source, f"holds {show_size(size)} uncompressed, more than")


def read_arrow(data: bytes, source: str, limits: ReadLimits) -> RawTable:
    """An Arrow IPC file (Feather version 2) or stream (datasets' ``.arrow`` files: ``save_to_disk``, its cache), a
    record batch at a time, each refused before it is converted when it would take the rows or bytes over the
    limits."""
    import pyarrow as pa
    from pyarrow import ipc

    table = RawTable(source=source, file_format="arrow")
    try:
        if data.startswith(ARROW_FILE):
            reader = ipc.open_file(pa.BufferReader(data))
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        else:
            reader = batches = ipc.open_stream(pa.BufferReader(data))
        refuse_repeated_columns(reader.schema.names, source, "the Arrow schema")
        for batch in batches:
            count_batch(table, batch, source, limits)
    except (pa.ArrowException, OSError, ValueError) as err:  # ValueError: strings that are not UTF-8
        raise LabError(f"{source}: not a readable Arrow file ({first_line(err)}); expected an Arrow IPC file or "
                       "stream, as datasets' save_to_disk or pyarrow.feather writes.") from None
    if not table.total:
        raise LabError(f"{source} is empty: the Arrow file has no rows.")
    return table


MAX_COLUMNS = 1000  # conversations take a few columns; a file of thousands holds something else (and its columns
# would fill every mapping picker of the Data tab: 300,000 made a 91 MB page update)


def refuse_wide(columns: int, source: str) -> None:
    if columns > MAX_COLUMNS:
        raise LabError(f"{source} has {columns:,} columns, more than the {MAX_COLUMNS:,} a dataset of conversations, "
                       "preferences or prompts could use: keep the columns that hold them, and import that file.")


def refuse_repeated_columns(names: list[str], source: str, where: str) -> None:
    """Refuse a header (or schema) that names one column twice, whatever the case (columns bind whatever their case):
    read as records, the one would silently stand for both. Nameless columns (Excel's empty trailing ones) pass."""
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        key = name.strip().lower()
        if key in seen:
            first = names[seen[key] - 1]
            spelled = f", as '{first}' and '{name}'" if first != name else ""
            raise LabError(f"{source}: {where} names the column '{name}' twice (columns {seen[key]} and "
                           f"{position}{spelled}); rename one of them.")
        if key:
            seen[key] = position


def read_folder(folder: Path, source: str, split: str | None, limits: ReadLimits) -> RawTable:
    """A dataset folder as people have them (``datasets.save_to_disk``'s, a DatasetDict's with a folder per split, a
    hub repository's shards, files named for their splits): one split's files, in name order, as one table within
    the limits together. The split: the one asked for, else the only one, else ``train``; a note says which."""
    refuse_lab_files(folder, source)
    splits = folder_splits(folder)
    name, files = chosen_split(splits, folder, source, split)
    shown = f"{source}:{name}" if name and (split or len(splits.keys() - {""}) > 1) else source
    table = read_files(folder, files, source, shown, limits)
    table.notes.insert(0, folder_note(folder, splits, name, files))
    return table


def refuse_lab_files(folder: Path, source: str) -> None:
    """A folder holding the lab's uploads or state (LAB_HOME, or a folder above it) is no dataset: read whole, it would
    merge everyone's uploads into one table."""
    resolved = absolute(folder)
    if any(within(place, resolved) for home in lab_homes(None) for place in (home.uploads, *home.state)):
        raise LabError(f"{source} holds the lab's own files (its uploads or state), not one dataset; choose the "
                       "dataset's own file or folder.")


def folder_splits(folder: Path) -> dict[str, list[Path]]:
    """The folder's data files by split (:func:`split_of`; "" for files named for none), each split's in name order.
    Links to folders are not followed, and a link to a file outside the folder is refused when read."""
    splits: dict[str, list[Path]] = {}
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        deep = len(here.relative_to(folder).parts) >= FOLDER_DEPTH
        dirs[:] = [] if deep else [d for d in dirs if not d.startswith(".")]
        saved = (here / "state.json").is_file()  # a save_to_disk dataset: its .arrow files are its one split
        for name in files:
            if is_folder_data(name):
                relative = here.relative_to(folder) / name
                splits.setdefault(split_of(relative, saved), []).append(folder / relative)
    return {name: sorted(found) for name, found in sorted(splits.items())}


def is_folder_data(name: str) -> bool:
    return (not name.startswith(".") and name.lower().endswith(FOLDER_SUFFIXES)
            and name.lower() not in DATASETS_METADATA)


def split_of(relative: Path, saved: bool) -> str:
    """The split a data file belongs to, named as datasets names them: a save_to_disk dataset's folder (a
    DatasetDict's split folder; none at the top); a shard's own split (``train_sft-00000-of-00003.parquet``); a split
    word in its name or its folders' (``train.jsonl``, ``validation/0000.parquet``: train, validation or test); else
    a shard's prefix; else none ("")."""
    if saved:
        return relative.parent.name
    stem = without_suffixes(relative.name)
    shard = SHARD.match(stem)
    if shard and SPLIT_WORD.search(shard.group(1)):
        return shard.group(1)
    for part in (stem, *reversed(relative.parent.parts)):
        word = SPLIT_WORD.search(part)
        if word:
            return SPLIT_WORDS[word.group(1).lower()]
    return shard.group(1) if shard else ""


def chosen_split(splits: dict[str, list[Path]], folder: Path, source: str,
                 wanted: str | None) -> tuple[str, list[Path]]:
    """The split to read and its files, or a ``LabError`` saying which splits there are and how to pick one."""
    named = [name for name in splits if name]
    if not splits:
        raise LabError(f"{source} is a folder with no data files in it (JSON, JSONL, CSV, Parquet or Arrow, up to "
                       f"{FOLDER_DEPTH} folders down); choose a data file, or a dataset's folder.")
    if wanted:
        if wanted not in named:
            found = f"its splits are {', '.join(named)}" if named else "its files are named for no split"
            raise LabError(f"{source} has no split '{wanted}': {found}.")
        return wanted, splits[wanted]
    if not named:
        return "", splits[""]
    if len(named) == 1 or "train" in named:
        name = named[0] if len(named) == 1 else "train"
        return name, splits[name]
    raise LabError(f"{source} holds the splits {', '.join(named)} and none is named train, so which to read is not "
                   f"clear: {how_to_pick(splits, folder, named)}.")


def how_to_pick(splits: dict[str, list[Path]], folder: Path, names: list[str]) -> str:
    """How to read one of the splits ``names``: the file or folder that holds it alone, where there is one, else
    ``--split``."""
    places = []
    for name in names:
        files, others = splits[name], [f for other, found in splits.items() if other != name for f in found]
        if own_folder(files, others, folder):
            places.append(f"{name}: {files[0].parent.relative_to(folder)}/")
        elif len(files) == 1:
            places.append(f"{name}: {files[0].relative_to(folder)}")
    where = f"import its own file or folder ({'; '.join(places)}), or " if places else ""
    return f"to read one, {where}pass --split NAME on the command line"


def own_folder(files: list[Path], others: list[Path], folder: Path) -> bool:
    """Whether ``files`` lie in one folder of their own below ``folder``, holding none of ``others``."""
    parent = files[0].parent
    return parent != folder and all(f.parent == parent for f in files) and not any(f.parent == parent for f in others)


def folder_note(folder: Path, splits: dict[str, list[Path]], name: str, files: list[Path]) -> str:
    """What was read of a folder: which split, which files in which order, and what was left out."""
    note = f"the {name} split: " if name else ""
    if len(files) == 1:
        note += f"read {files[0].relative_to(folder)}"
    else:
        note += f"read {len(files)} files as one table, in name order: {shown_files(folder, files)}"
    others = [other for other in splits if other and other != name]
    if others:
        which = f"the split {others[0]} was" if len(others) == 1 else f"the splits {', '.join(others)} were"
        note += f"; {which} not read ({how_to_pick(splits, folder, others)})"
    if name and "" in splits:
        note += f"; files named for no split were not read: {shown_files(folder, splits[''])}"
    return note


def shown_files(folder: Path, files: list[Path]) -> str:
    shown = ", ".join(str(f.relative_to(folder)) for f in files[:FILES_SHOWN])
    return shown + (f", … ({len(files)} in all)" if len(files) > FILES_SHOWN else "")


def read_files(folder: Path, files: list[Path], folder_name: str, source: str, limits: ReadLimits) -> RawTable:
    """A folder's files as one table named ``source``: each file (named ``folder_name/its path``) read within what the
    files before it left of the limits (a file over them is the whole folder over them), its places counting on from
    the last place of the file before."""
    table = RawTable(source=source, file_format="")
    offset = 0
    root = absolute(folder)
    for path in files:
        if not within(absolute(path), root):
            raise LabError(f"{source}: {path.relative_to(folder)} is a link to a file outside the folder; copy the "
                           "file into the folder instead.")
        input_path(path)
        left = replace(limits, max_import_rows=limits.max_import_rows - table.total,
                       max_import_bytes=limits.max_import_bytes - table.nbytes)
        try:
            part = read_file(path, f"{folder_name}/{path.relative_to(folder)}", left)
        except LimitExceeded as err:
            raise limits.exceeded(err.limit, source, f"has, in its {len(files)} files together, more "
                                  f"{'rows' if err.limit == 'max_import_rows' else 'bytes'} than") from None
        table.file_format = table.file_format or part.file_format
        table.records += [(offset + place, record) for place, record in part.records]
        table.errors += [replace(e, line=None if e.line is None else offset + e.line, source=source)
                         for e in part.errors]
        table.notes += [note for note in part.notes if note not in table.notes]
        table.nbytes += part.nbytes
        offset += last_place(part)
    return table


def last_place(table: RawTable) -> int:
    return max([0, *(place for place, _ in table.records), *(e.line for e in table.errors if e.line)])


def read_hub(dataset_id: str, *, split: str | None, limits: ReadLimits) -> RawTable:
    """Load a dataset from the Hugging Face Hub (needs network, or a local cache)."""
    name, _, split_in_id = dataset_id.partition(":")
    split = split or split_in_id or "train"
    import datasets

    offline = bool(datasets.config.HF_HUB_OFFLINE)  # HF_HUB_OFFLINE or HF_DATASETS_OFFLINE: the local cache only
    if not offline:
        hub_reachable(name)
    try:
        loaded = datasets.load_dataset(name, split=split)
    except Exception as err:  # noqa: BLE001 - datasets raises many types: connection, missing split, gated repo...
        if offline:
            raise LabError(f"Could not load the hub dataset '{name}' (split '{split}'): offline mode is on "
                           "(HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set), so the Hugging Face Hub is not asked and "
                           "only the local cache is read: "
                           f"{first_line(err)}. Unset it to download the dataset, or download the file and import "
                           "it by path.") from None
        raise LabError(f"Could not load the hub dataset '{name}' (split '{split}'): {first_line(err)}. "
                       "This needs network access to the Hugging Face Hub; otherwise download the file "
                       "and import it by path.") from None
    return hub_table(loaded, f"{name}:{split}", limits)


def hub_reachable(name: str) -> None:
    """Ask the Hub once, without retries, before ``load_dataset``: when it cannot be reached (no network, no name
    resolution), huggingface_hub retries every request five times with back-off (about 25 s) before it says so.
    Through huggingface_hub's own HTTP session, so HF_ENDPOINT, proxies and certificates apply as they will to the
    load; any HTTP answer, even an error status, means the Hub is reachable and the load goes ahead."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except Exception as err:  # noqa: BLE001 - only transport errors reach here (httpx or requests, by version)
        raise LabError(f"Could not load the hub dataset '{name}': the Hugging Face Hub ({constants.ENDPOINT}) "
                       f"cannot be reached ({first_line(err)}). Connect to the network; if the dataset was "
                       "downloaded before, set HF_HUB_OFFLINE=1 to load it from the local cache; or download the "
                       "file and import it by path.") from None


def hub_table(loaded: Any, source: str, limits: ReadLimits) -> RawTable:
    """A loaded hub dataset's rows, once its row count and size (both known before converting) are within limits."""
    check_rows(loaded.num_rows, source, limits)
    if loaded.data.nbytes > limits.max_import_bytes:
        raise limits.exceeded("max_import_bytes", source, f"holds {show_size(loaded.data.nbytes)}, more than")
    table = RawTable(source=source, file_format="hub")
    for number, row in enumerate(loaded, start=1):
        add_record(table, number, dict(row), limits, Checks())
    return table


def first_line(err: Exception) -> str:
    """An exception's message, first line only (Arrow's and the hub's run on with context), or its type."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")
