"""Read a file (or a hub dataset) into raw records, each with the 1-based place it came from.

Places: the file's line for JSONL, the data row for CSV (the header is not counted), the element
for a JSON array (or the index for an object of arrays), the row for Parquet and hub datasets.
Problems that spoil one record (a broken JSON line, bytes that are not UTF-8) become row errors;
problems that leave nothing usable (empty file, not text, not a table) raise ``LabError``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.data.canonical import RowError
from lab.errors import LabError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+)?$")
# Wrappers people put around a JSON list of rows: {"data": [...]}.
WRAPPER_KEYS = ("data", "rows", "examples", "train", "records", "items", "conversations_list")


@dataclass
class RawTable:
    """Records as read, before any conversion: ``(place, record)`` pairs plus reading errors."""

    source: str
    file_format: str  # jsonl, json, csv, tsv, parquet, hub
    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

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


def read_table(path: str | Path, *, source_name: str | None = None, split: str | None = None) -> RawTable:
    """Read ``path`` (a local file, or a hub dataset id ``owner/name[:split]``)."""
    text_path = str(path)
    local = Path(text_path).expanduser()
    if not local.exists():
        if HUB_ID.match(text_path):
            return read_hub(text_path, split=split)
        raise LabError(f"{text_path}: no such file (and not a hub dataset id like 'owner/name').")
    if local.is_dir():
        raise LabError(f"{text_path} is a folder; choose a JSON, JSONL, CSV or Parquet file inside it.")
    source = source_name or local.name
    data = local.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise LabError(f"{source}: looks gzip-compressed but could not be decompressed ({err}).") from None
        local = local.with_suffix("")  # data.jsonl.gz reads as data.jsonl
    if not data.strip():
        raise LabError(f"{source} is empty: there are no rows to read.")
    if data[:4] == b"PAR1":
        return read_parquet(data, source)
    if local.suffix.lower() == ".parquet":
        raise LabError(f"{source}: not a Parquet file (it does not start with the 'PAR1' marker).")
    fmt = guess_text_format(local.suffix.lower(), data)
    if fmt in ("csv", "tsv"):
        return read_csv(data, source, delimiter="\t" if fmt == "tsv" else None)
    text = decode_text(data, source)
    if fmt == "jsonl":
        return read_jsonl(text, source)
    return read_json(text, source)


def guess_text_format(suffix: str, data: bytes) -> str:
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head == b"[":
        return "json"
    if head == b"{":
        return "json" if suffix == ".json" else "jsonl"
    if suffix == ".json":
        return "json"
    return "csv"


def decode_text(data: bytes, source: str) -> list[tuple[int, str | None, str]]:
    """Split into ``(line_number, text or None, reason)``: lines that are not UTF-8 get ``None``
    and a reason naming the byte, so one bad line does not spoil the rest."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            whole = data.decode("utf-16")
        except UnicodeDecodeError as err:
            raise LabError(f"{source}: starts like UTF-16 but could not be decoded ({err.reason}).") from None
        return [(n, line, "") for n, line in enumerate(whole.splitlines(), start=1)]
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data[:8192]:
        raise LabError(f"{source} is not a text file (it contains NUL bytes); expected JSON, JSONL, CSV or Parquet.")
    lines: list[tuple[int, str | None, str]] = []
    bad = 0
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            lines.append((number, raw.decode("utf-8").rstrip("\r"), ""))
        except UnicodeDecodeError as err:
            bad += 1
            lines.append((number, None, not_utf8(raw, err)))
    if bad and not any(text and text.strip() for _, text, _ in lines):
        raise LabError(f"{source} could not be decoded: no line is valid UTF-8. Re-save the file as UTF-8.")
    return lines


def not_utf8(raw: bytes, err: UnicodeDecodeError) -> str:
    byte = raw[err.start]
    return (f"not valid UTF-8: byte 0x{byte:02X} at column {err.start + 1} "
            "(the file may be Latin-1 or Windows-1252; re-save it as UTF-8)")


def read_jsonl(lines: list[tuple[int, str | None, str]], source: str) -> RawTable:
    table = RawTable(source=source, file_format="jsonl")
    for number, text, reason in lines:
        if text is None:
            table.errors.append(RowError(number, None, reason, source))
            continue
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            table.errors.append(RowError(number, None, f"broken JSON: {err.msg} at column {err.colno}", source))
            continue
        if not isinstance(value, dict):
            table.errors.append(RowError(number, None, f"expected a JSON object, got {json_type(value)}", source))
            continue
        table.records.append((number, value))
    if not table.records and not table.errors:
        raise LabError(f"{source} is empty: there are no rows to read.")
    return table


def read_json(lines: list[tuple[int, str | None, str]], source: str) -> RawTable:
    bad = [(n, reason) for n, text, reason in lines if text is None]
    if bad:
        number, reason = bad[0]
        raise LabError(f"{source}: line {number} is {reason}; a JSON document must be valid UTF-8 throughout.")
    text = "\n".join(t for _, t, _ in lines)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":  # a .json file that is really JSON Lines
            try:
                return read_jsonl(lines, source)
            except LabError:
                pass
        stripped = text.lstrip()
        if stripped.startswith("["):
            return read_json_array_salvage(text, source)
        raise LabError(f"{source}: broken JSON at line {err.lineno}, column {err.colno}: {err.msg}.") from None
    return json_value_to_table(value, source)


def json_value_to_table(value: Any, source: str) -> RawTable:
    table = RawTable(source=source, file_format="json")
    if isinstance(value, dict):
        wrapped = [k for k in WRAPPER_KEYS if isinstance(value.get(k), list)]
        if wrapped and len(value) <= 3:
            value = value[wrapped[0]]
        elif value and all(isinstance(v, list) for v in value.values()):
            lengths = {len(v) for v in value.values()}
            if len(lengths) != 1:
                raise LabError(f"{source}: an object of arrays whose arrays differ in length "
                               f"({', '.join(f'{k}: {len(v)}' for k, v in value.items())}).")
            keys = list(value)
            value = [{k: value[k][i] for k in keys} for i in range(lengths.pop())]
        else:
            value = [value]
    if not isinstance(value, list):
        raise LabError(f"{source}: expected a JSON array of objects, got {json_type(value)}.")
    if not value:
        raise LabError(f"{source} is empty: the JSON array has no elements.")
    for number, item in enumerate(value, start=1):
        if isinstance(item, dict):
            table.records.append((number, item))
        else:
            table.errors.append(RowError(number, None, f"expected a JSON object, got {json_type(item)}", source))
    return table


def read_json_array_salvage(text: str, source: str) -> RawTable:
    """A JSON array with a syntax error: keep the elements before the error and report where it is."""
    decoder = json.JSONDecoder()
    table = RawTable(source=source, file_format="json")
    pos = text.index("[") + 1
    number = 0
    while True:
        pos = skip_space(text, pos)
        if pos < len(text) and text[pos] == "]":
            return table
        number += 1
        try:
            item, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            table.errors.append(RowError(number, None, f"broken JSON at file line {err.lineno}, column {err.colno}: "
                                         f"{err.msg}; elements from here on could not be read", source))
            return table
        if isinstance(item, dict):
            table.records.append((number, item))
        else:
            table.errors.append(RowError(number, None, f"expected a JSON object, got {json_type(item)}", source))
        pos = skip_space(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "]":
            line = text.count("\n", 0, pos) + 1
            table.errors.append(RowError(number + 1, None, f"broken JSON at file line {line}: expected ',' or ']' "
                                         "after an element; elements from here on could not be read", source))
            return table


def skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def read_csv(data: bytes, source: str, *, delimiter: str | None) -> RawTable:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data[:8192]:
        raise LabError(f"{source} is not a text file (it contains NUL bytes); expected JSON, JSONL, CSV or Parquet.")
    text = data.decode("utf-8", errors="surrogateescape")  # bad bytes are reported per cell below
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text[:20000], delimiters=",\t;|").delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise LabError(f"{source} is empty: there are no rows to read.") from None
    header = [h.strip() for h in header]
    if not any(header):
        raise LabError(f"{source}: the first line (the CSV header) has no column names.")
    table = RawTable(source=source, file_format="tsv" if delimiter == "\t" else "csv")
    try:
        for number, cells in enumerate(reader, start=1):
            if not cells or not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                table.errors.append(RowError(number, None, f"has {len(cells)} fields, the header has {len(header)}",
                                             source))
                continue
            record = dict(zip(header, cells))
            bad = next((k for k, v in record.items() if has_surrogates(v)), None)
            if bad is not None:
                raw = record[bad].encode("utf-8", errors="surrogateescape")
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    table.errors.append(RowError(number, bad, not_utf8(raw, err), source))
                continue
            table.records.append((number, record))
    except csv.Error as err:
        table.errors.append(RowError(reader.line_num, None, f"CSV could not be parsed from here on: {err}", source))
    if not table.records and not table.errors:
        raise LabError(f"{source} has a header but no data rows.")
    return table


def has_surrogates(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def read_parquet(data: bytes, source: str) -> RawTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(pa.BufferReader(data)).to_pylist()
    except (pa.ArrowException, OSError) as err:
        raise LabError(f"{source}: not a readable Parquet file ({err}).") from None
    if not rows:
        raise LabError(f"{source} is empty: the Parquet file has no rows.")
    return RawTable(source=source, file_format="parquet", records=list(enumerate(rows, start=1)))


def read_hub(dataset_id: str, *, split: str | None) -> RawTable:
    """Load a dataset from the Hugging Face Hub (needs network, or a local cache)."""
    name, _, split_in_id = dataset_id.partition(":")
    split = split or split_in_id or "train"
    try:
        import datasets

        loaded = datasets.load_dataset(name, split=split)
    except Exception as err:  # datasets raises many types: connection, missing split, gated repo...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LabError(f"Could not load the hub dataset '{name}' (split '{split}'): {first}. "
                       "This needs network access to the Hugging Face Hub; otherwise download the file "
                       "and import it by path.") from None
    return RawTable(source=f"{name}:{split}", file_format="hub",
                    records=[(i, dict(row)) for i, row in enumerate(loaded, start=1)])


def json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")
