"""Dataset versions are immutable and content-addressed; the store is WAL SQLite, migrated on open."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest

from lab.config import DataConfig
from lab.data.canonical import Row
from lab.data.pipeline import import_file
from lab.data.versions import (
    delete_version,
    export_version,
    get_version,
    list_versions,
    push_to_hub,
    read_rows,
    save_version,
    suggested_name,
    version_rows,
)
from lab.errors import LabError
from lab.store import MIGRATIONS, Store
from tests.conftest import DATA


def test_store_is_wal_and_migrated(home):
    store = Store(home)
    assert store.schema_version() == len(MIGRATIONS)
    assert store.query("PRAGMA journal_mode")[0]["journal_mode"] == "wal"


def test_failed_write_leaves_nothing(home):
    store = Store(home)
    with pytest.raises(RuntimeError):
        with store.write() as conn:
            conn.execute("INSERT INTO datasets VALUES ('x','v','sft','f','t','p',1,1,'{}')")
            raise RuntimeError("crash mid-transaction")
    assert store.query("SELECT * FROM datasets") == []


def test_concurrent_writers_do_not_lose_rows(home):
    store = Store(home)

    def insert(i: int) -> None:
        with store.write() as conn:
            conn.execute("INSERT INTO datasets VALUES (?, 'v', 'sft', 'f', 't', 'p', 1, 1, '{}')", (f"d{i}",))

    threads = [threading.Thread(target=insert, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.query("SELECT COUNT(*) AS n FROM datasets")[0]["n"] == 20


def test_same_rows_give_the_same_version_and_rows_keep_their_origin(home):
    cfg = DataConfig(name="chat", val_fraction=0.5)
    first = import_file(DATA / "sharegpt.jsonl", cfg, home=home)
    again = import_file(DATA / "sharegpt.jsonl", cfg, home=home)
    assert first.ref == again.ref and len(list_versions(home)) == 1
    rows = read_rows(first.ref, "train", home) + read_rows(first.ref, "validation", home)
    assert sorted(r["line"] for r in rows) == [1, 2] and {r["source"] for r in rows} == {"sharegpt.jsonl"}
    other = import_file(DATA / "openai.jsonl", cfg, home=home)
    assert other.version != first.version
    assert get_version("chat", home).ref == other.ref  # the bare name is the newest version
    assert get_version(f"chat@{first.version[:6]}", home).ref == first.ref


def test_card_keeps_source_steps_and_counts(home):
    version = import_file(DATA / "alpaca.csv", DataConfig(name="alp", skip_invalid=True), home=home)
    card = json.loads((version.path / "card.json").read_text())
    assert card["source_format"] == "alpaca" and card["invalid_count"] == 1
    assert [s["step"] for s in card["steps"]][0] == "read" and card["steps"][-1]["step"] == "split"
    assert card["rows"] == version.rows


def test_unknown_refs_and_names_are_explained(home):
    with pytest.raises(LabError, match="No dataset named 'ghost'"):
        get_version("ghost", home)
    with pytest.raises(LabError, match="not allowed"):
        import_file(DATA / "openai.jsonl", DataConfig(name="../escape"), home=home)


def test_export_parquet_and_delete_removes_files(home):
    version = import_file(DATA / "trl_preference.jsonl", DataConfig(name="pref", val_fraction=0.0), home=home)
    parquet = export_version(version.ref, "parquet", home=home)
    import pyarrow.parquet as pq

    assert pq.read_table(parquet).column_names[:3] == ["prompt", "chosen", "rejected"]
    delete_version(version.ref, home)
    assert not version.path.exists() and list_versions(home) == []


def test_push_needs_a_token_from_the_environment(home, monkeypatch):
    version = import_file(DATA / "openai.jsonl", DataConfig(name="p"), home=home)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    with pytest.raises(LabError, match="HF_TOKEN"):
        push_to_hub(version.ref, "me/data", home=home)


def test_store_file_is_plain_sqlite(home):
    Store(home)
    conn = sqlite3.connect(home.store_path)
    assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")} >= {"datasets"}


def test_max_rows_keeps_a_seeded_sample_and_records_the_step(home):
    version = import_file(DATA / "sharegpt.jsonl", DataConfig(name="small", max_rows=1, val_fraction=0.0), home=home)
    assert version.rows == {"train": 1, "validation": 0}
    assert [s["step"] for s in version.card["steps"]][-2:] == ["sample", "split"]


def test_one_name_holds_one_kind_and_the_refusal_proposes_a_free_name(home):
    import_file(DATA / "openai.jsonl", DataConfig(name="chats"), home=home)
    refusal = r"'chats' holds SFT data .* this is preference data .* e\.g\. 'chats-preference'"
    with pytest.raises(LabError, match=refusal):
        import_file(DATA / "trl_preference.jsonl", DataConfig(name="chats"), home=home)
    pair = Row({"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}],
                "rejected": [{"role": "assistant", "content": "b"}]}, 1, "x")
    with pytest.raises(LabError, match="one name holds one kind"):  # the store's own guard, not only the import's
        save_version("chats", "preference", "trl", [pair], [], {}, home=home)
    assert {v.kind for v in list_versions(home)} == {"sft"}
    saved = import_file(DATA / "trl_preference.jsonl", DataConfig(name="chats-preference"), home=home)
    assert saved.kind == "preference"
    # The proposal skips a name that holds the other kind, and keeps one that holds this kind.
    assert suggested_name("/somewhere/chats.jsonl", "sft", home) == "chats"
    assert suggested_name("/somewhere/chats.jsonl", "preference", home) == "chats-preference"
    for taken in ("notes", "notes-sft"):
        import_file(DATA / "trl_preference.jsonl", DataConfig(name=taken), home=home)
    assert suggested_name("notes.jsonl", "sft", home) == "notes-sft-2"
    assert suggested_name("Support Chats (v2).json.gz", None, home) == "Support-Chats-v2"


def test_version_rows_name_their_split_and_file(home):
    version = import_file(DATA / "sharegpt.jsonl", DataConfig(name="chat", val_fraction=0.5), home=home)
    rows = version_rows(version.ref, home)
    assert [r.source.split(" · ")[0] for r in rows] == ["train", "validation"]
    assert {r.source.split(" · ")[1] for r in rows} == {"sharegpt.jsonl"} and set(rows[0].data) == {"messages", "tools"}
    assert len(version_rows(version.ref, home, split="validation")) == 1
