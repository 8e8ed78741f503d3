"""Dataset versions: immutable, content-addressed, kept as Parquet with a card.

``LAB_HOME/datasets/<name>/<version>/{train,validation}.parquet`` plus ``card.json``; ``version``
is the first 12 hex digits of the SHA-256 of the rows, so saving the same rows twice gives the
same version. The store indexes versions; the files are the truth for the rows.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from itertools import count
from pathlib import Path
from typing import Any

from lab.data import kinds
from lab.data.canonical import Kind, Row
from lab.data.kinds import FLAG, KINDS, MESSAGES, NUMBER, TEXT
from lab.data.readers import without_suffixes
from lab.errors import LabError
from lab.home import Home, lab_home
from lab.names import check_name, derived_name, pattern
from lab.store import Store, dumps

NAME = pattern()  # the lab's one name rule (lab.names), as a regex for code that matches names
SPLITS = ("train", "validation")


@dataclass
class DatasetVersion:
    name: str
    version: str
    kind: Kind
    format: str
    created_at: str
    path: Path
    rows: dict[str, int]
    card: dict[str, Any]
    reused: bool = False  # save_version found these very rows saved under this name already

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def split_path(self, split: str) -> Path:
        return self.path / f"{split}.parquet"

    def summary(self) -> dict[str, Any]:
        return {"ref": self.ref, "name": self.name, "version": self.version, "kind": self.kind,
                "format": self.format, "created_at": self.created_at, "path": str(self.path),
                "train_rows": self.rows["train"], "validation_rows": self.rows["validation"]}


def content_hash(kind: Kind, train: list[Row], validation: list[Row]) -> str:
    digest = hashlib.sha256(kind.encode())
    for split, rows in (("train", train), ("validation", validation)):
        digest.update(split.encode())
        for row in rows:
            # A text field that is "" is one the row does not have (an SFT row without tools): left out, so a row
            # read back hashes as it did when imported, and versions saved before the field existed keep their id.
            data = {k: v for k, v in row.data.items() if v != ""}
            digest.update(json.dumps(data, ensure_ascii=False, sort_keys=True).encode())
            digest.update(b"\n")
    return digest.hexdigest()[:12]


def write_parquet(rows: list[Row], kind: Kind, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # weight: OpenAI's per-message weight, stored only where it is 0; tool_calls on the assistant's turns that call
    # tools, tool_call_id and name on tool results. Null elsewhere, and dropped again on reading.
    call = pa.struct([("id", pa.string()), ("type", pa.string()),
                      ("function", pa.struct([("name", pa.string()), ("arguments", pa.string())]))])
    message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string()), ("weight", pa.int8()),
                                  ("tool_calls", pa.list_(call)), ("tool_call_id", pa.string()),
                                  ("name", pa.string())]))
    types = {MESSAGES: message, FLAG: pa.bool_(), NUMBER: pa.float64()}
    fields = KINDS[kind].fields
    schema = pa.schema([(f, types.get(how, pa.string())) for f, how in fields.items()]
                       + [("source", pa.string()), ("line", pa.int64())])
    # A text field a row leaves out (an SFT row without tools) is stored as "", a number it leaves out as null
    columns = {f: [stored(row.data.get(f, None if how == NUMBER else ""), how) for row in rows]
               for f, how in fields.items()}
    columns["source"] = [row.source for row in rows]
    columns["line"] = [row.line for row in rows]
    pq.write_table(pa.table(columns, schema=schema), path)


def save_version(name: str, kind: Kind, fmt: str, train: list[Row], validation: list[Row], card: dict[str, Any],
                 *, home: Home | None = None) -> DatasetVersion:
    """Write the splits and card atomically and index them; an identical version is returned as is."""
    name = check_name(name, "Dataset name")
    kinds.kind(kind)  # a kind the registry knows, or a LabError naming those it does
    home = home or lab_home()
    version = content_hash(kind, train, validation)
    with name_lock(home, name):
        refuse_other_kind(name, kind, home)
        existing = Store(home).query("SELECT * FROM datasets WHERE name = ? AND version = ?", (name, version))
        if existing:
            return replace(from_row(existing[0]), reused=True)
        write_version(home, name, version, kind, fmt, train, validation, card)
    return get_version(f"{name}@{version}", home=home)


def name_kinds(home: Home) -> dict[str, str]:
    """``{dataset name: its kind}`` for every saved name (one name holds one kind)."""
    return {r["name"]: r["kind"] for r in Store(home).query("SELECT DISTINCT name, kind FROM datasets")}


def refuse_other_kind(name: str, kind: Kind, home: Home | None = None) -> None:
    """A LabError when ``name`` already holds versions of another kind: a preference file saved as a new version of
    an SFT dataset's name would be picked by whatever trains on that name's newest version."""
    home = home or lab_home()
    held = name_kinds(home).get(name)
    if held is not None and held != kind:
        raise LabError(f"Not saved: the name '{name}' holds {KINDS[held].words}, and this is {KINDS[kind].words}; "
                       f"one name holds one kind of data. Save it under another name, e.g. "
                       f"'{free_name(name, kind, home)}'.")


def free_name(stem: str, kind: Kind, home: Home | None = None) -> str:
    """``stem`` if it is unused or holds ``kind``, else the first of ``stem-<kind>``, ``stem-<kind>-2``, … that is."""
    taken = name_kinds(home or lab_home())
    candidates = (stem if n == 0 else derived_name(stem, suffix=f"-{kind}" + (f"-{n}" if n > 1 else ""))
                  for n in count())
    return next(c for c in candidates if taken.get(c, kind) == kind)


def name_from_file(path: str | Path) -> str:
    """A dataset name from a file's name (``support chats.jsonl`` → ``support-chats``, ``X.JSONL`` → ``X``; a folder's
    name; a hub id's last part)."""
    stem = without_suffixes(Path(str(path).strip()).name)
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-._")
    return derived_name(cleaned or "dataset")


def suggested_name(path: str | Path, kind: Kind | None = None, home: Home | None = None) -> str:
    """The name the Data tab proposes for a file: from its file name, never a name that holds another kind."""
    stem = name_from_file(path)
    return free_name(stem, kind, home) if kind else stem


@contextmanager
def name_lock(home: Home, name: str) -> Iterator[None]:
    """One writer of a dataset name at a time, across processes: two imports of the same rows at once make one
    version (both get it), and the files on disk are those of the writer whose row the store holds."""
    with open(home.datasets / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def write_version(home: Home, name: str, version: str, kind: Kind, fmt: str, train: list[Row],
                  validation: list[Row], card: dict[str, Any]) -> None:
    """The splits and card, staged and renamed into place, then the index row (under ``name_lock``)."""
    final = home.datasets / name / version
    final.parent.mkdir(parents=True, exist_ok=True)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    card = {**card, "name": name, "version": version, "created_at": created,
            "rows": {"train": len(train), "validation": len(validation)}}
    remove_staging(final.parent)  # a crashed writer's; this one holds the name's lock, so no other is writing
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=final.parent))
    try:
        write_parquet(train, kind, staging / "train.parquet")
        write_parquet(validation, kind, staging / "validation.parquet")
        (staging / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False))
        if final.exists():  # files left by a crash between rename and insert: replace them
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    with Store(home).write() as conn:
        conn.execute(
            "INSERT INTO datasets (name, version, kind, format, created_at, path, train_rows, val_rows, card) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, version, kind, fmt, created, str(final), len(train), len(validation), dumps(card)))


def remove_staging(folder: Path) -> None:
    """Remove the staging folders (``.<version>-…``) a writer of this name left when it was killed mid-save: they
    are never listed, but their Parquet files stayed on disk. The caller holds the name's lock."""
    for staged in folder.glob(".*-*"):
        if staged.is_dir():
            shutil.rmtree(staged, ignore_errors=True)


def sweep_staging(home: Home) -> None:
    """:func:`remove_staging` for every dataset name no writer holds now (at the server's start)."""
    if not home.datasets.is_dir():
        return
    for folder in home.datasets.iterdir():
        if not folder.is_dir():
            continue
        with open(home.datasets / f".{folder.name}.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # being written now: its staging folder is in use
            remove_staging(folder)


def from_row(row: dict[str, Any]) -> DatasetVersion:
    return DatasetVersion(name=row["name"], version=row["version"], kind=row["kind"], format=row["format"],
                          created_at=row["created_at"], path=Path(row["path"]),
                          rows={"train": row["train_rows"], "validation": row["val_rows"]},
                          card=json.loads(row["card"]))


def list_versions(home: Home | None = None, *, name: str | None = None) -> list[DatasetVersion]:
    """Newest first."""
    store = Store(home or lab_home())
    if name:
        rows = store.query("SELECT * FROM datasets WHERE name = ? ORDER BY created_at DESC, rowid DESC", (name,))
    else:
        rows = store.query("SELECT * FROM datasets ORDER BY created_at DESC, rowid DESC")
    return [from_row(r) for r in rows]


def get_version(ref: str | DatasetVersion, home: Home | None = None) -> DatasetVersion:
    """``name@version`` (a unique prefix of the version is enough), or ``name`` for its newest version."""
    if isinstance(ref, DatasetVersion):
        return ref
    name, _, version = ref.strip().partition("@")
    if not name:  # '' would list every dataset's versions and pick the newest of any name
        raise LabError("Give a dataset as NAME or NAME@VERSION (python -m lab data list shows them).")
    candidates = list_versions(home, name=name)
    if not candidates:
        known = sorted({v.name for v in list_versions(home)})
        raise LabError(f"No dataset named '{name}'. Known datasets: {', '.join(known) or '(none yet)'}.")
    if not version:
        return candidates[0]
    matches = [v for v in candidates if v.version.startswith(version)]
    if len(matches) != 1:
        listed = ", ".join(v.version for v in candidates)
        problem = "matches several versions" if matches else "matches no version"
        raise LabError(f"'{ref}' {problem} of {name}; versions: {listed}.")
    return matches[0]


def read_rows(ref: str | DatasetVersion, split: str = "train", home: Home | None = None) -> list[dict[str, Any]]:
    """The canonical rows of one split, each with its ``source`` and ``line``."""
    import pyarrow.parquet as pq

    if split not in SPLITS:
        raise LabError(f"split must be one of {', '.join(SPLITS)}, not '{split}'.")
    version = get_version(ref, home)
    path = version.split_path(split)
    if not path.exists():
        raise LabError(f"{version.ref}: {path} is missing; the dataset folder was changed outside the lab.")
    rows = pq.read_table(path).to_pylist()
    for row in rows:
        for field, how in KINDS[version.kind].fields.items():
            if how == MESSAGES:
                row[field] = [read_message(m) for m in row[field]]
            elif how == TEXT:
                row.setdefault(field, "")  # a version saved before this text field existed
            elif how == NUMBER:
                row.setdefault(field, None)
    return rows


def stored(value: Any, how: str) -> Any:
    """A canonical field's value as Parquet keeps it: tool calls' arguments as JSON text (their keys differ from
    call to call, which one Arrow struct cannot hold), read back by :func:`read_message`."""
    if how != MESSAGES:
        return value
    return [{**m, "tool_calls": [stored_call(c) for c in m["tool_calls"]]} if m.get("tool_calls") else m
            for m in value]


def stored_call(call: dict[str, Any]) -> dict[str, Any]:
    arguments = json.dumps(call["function"]["arguments"], ensure_ascii=False)
    return {**call, "function": {**call["function"], "arguments": arguments}}


def read_message(message: dict[str, Any]) -> dict[str, Any]:
    """A stored message in canonical form: the fields it does not have (null) dropped, arguments parsed again."""
    message = {k: v for k, v in message.items() if v is not None}
    for call in message.get("tool_calls") or []:
        call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    return message


def version_rows(ref: str | DatasetVersion, home: Home | None = None, *, split: str | None = None) -> list[Row]:
    """The rows of one split, or of both (train then validation), as canonical ``Row``s whose source names the
    split and the file the row came from."""
    version = get_version(ref, home)
    rows: list[Row] = []
    for part in [split] if split else SPLITS:
        for record in read_rows(version, split=part, home=home):
            rows.append(Row({f: record[f] for f in KINDS[version.kind].fields if record[f] is not None},
                            record.get("line") or 0,
                            f"{part} · {record.get('source') or version.ref}"))
    return rows


def export_version(ref: str | DatasetVersion, fmt: str = "jsonl", *, dest: str | Path | None = None,
                   split: str = "train", home: Home | None = None) -> Path:
    """Write one split as JSONL (canonical rows) or Parquet; returns the file written."""
    home = home or lab_home()
    version = get_version(ref, home)
    if fmt not in ("jsonl", "parquet"):
        raise LabError(f"Export format must be jsonl or parquet, not '{fmt}'.")
    target = Path(dest) if dest else home.exports / f"{version.name}-{version.version}-{split}.{fmt}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        shutil.copyfile(version.split_path(split), target)
        return target
    fields = KINDS[version.kind].fields
    with open(target, "w", encoding="utf-8") as out:
        for row in read_rows(version, split, home):
            out.write(json.dumps({f: row[f] for f in fields if row[f] not in ("", None)}, ensure_ascii=False) + "\n")
    return target


def delete_version(ref: str | DatasetVersion, home: Home | None = None, *, force: bool = False) -> DatasetVersion:
    """Remove a version's index row and files (the index first, so a crash leaves no dangling entry). Refused
    while a queued or running run trains on it, unless ``force``: the run would fail at launch (or mid-run)."""
    home = home or lab_home()
    version = get_version(ref, home)
    if not force:
        refuse_if_trained_on(version, home)
    with Store(home).write() as conn:
        conn.execute("DELETE FROM datasets WHERE name = ? AND version = ?", (version.name, version.version))
    shutil.rmtree(version.path, ignore_errors=True)
    try:
        version.path.parent.rmdir()  # the name's folder, once its last version is gone
    except OSError:
        pass
    return version


def refuse_if_trained_on(version: DatasetVersion, home: Home) -> None:
    """A LabError naming the queued and running runs whose dataset is ``version``, if any."""
    runs = Store(home).query("SELECT id, name, status FROM runs WHERE dataset = ? AND status IN ('queued', 'running') "
                             "ORDER BY created_at", (version.ref,))
    if runs:
        named = ", ".join(f"{r['status']} run {r['name']} ({r['id']})" for r in runs)
        them = "it" if len(runs) == 1 else "them"
        raise LabError(f"Not deleted: {version.ref} is the dataset of the {named}; cancel {them} first, or delete "
                       f"anyway with `python -m lab data delete {version.ref} --force` and let {them} fail.")


def push_to_hub(ref: str | DatasetVersion, repo_id: str, *, private: bool = True, home: Home | None = None) -> str:
    """Upload both splits to a dataset repo on the Hub; the token comes from ``HF_TOKEN`` only."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token:
        raise LabError("Set HF_TOKEN in the environment to push to the Hugging Face Hub.")
    if not re.match(r"^[\w.-]+/[\w.-]+$", repo_id or ""):
        raise LabError(f"Hub repo id must look like 'owner/name', got '{repo_id}'.")
    version = get_version(ref, home)
    try:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        for split in SPLITS:
            api.upload_file(path_or_fileobj=str(version.split_path(split)), repo_id=repo_id, repo_type="dataset",
                            path_in_repo=f"data/{split}.parquet",
                            commit_message=f"{version.ref}: {split}")
    except Exception as err:  # network, auth and permission errors come in many types
        raise LabError(f"Push of {version.ref} to {repo_id} failed: {str(err).splitlines()[0]}") from None
    return f"https://huggingface.co/datasets/{repo_id}"
