"""The store never splits from its files, and paths handed to the lab never reach its own state.

The reproduction (issue "Lose nothing, let nobody in"): a path box pointed at ``LAB_HOME/store.sqlite`` made the
app open and close a descriptor of its own database, which drops the process's SQLite locks; the next process
to close its connection then checkpointed and deleted the write-ahead log under the app, which went on
acknowledging writes into a deleted file. Each defence is pinned on its own here: the lab refuses to read its
state as input (``lab.paths``), its connections never delete the log on close, and a connection whose log was
replaced anyway refuses to answer (``lab.store.StoreSplit``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gradio_client import Client

from lab.errors import LabError
from lab.home import Home
from lab.paths import ALLOWED_ENV, server_path
from lab.store import Store, StoreSplit
from tests.app_server import AppServer

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def lab(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", "--home", str(home), *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=120)


def in_another_process(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          check=True, timeout=60).stdout


def add_account(store: Store, name: str) -> None:
    with store.write() as conn:
        conn.execute("INSERT INTO accounts VALUES (?, 'labeler', 'x', 't')", (name,))


def accounts_seen_by_a_fresh_process(home: Home) -> list[str]:
    return json.loads(in_another_process(
        "import json; from lab.home import lab_home; from lab.store import Store; "
        f"print(json.dumps([r['name'] for r in Store(lab_home({str(home.root)!r})).query("
        "'SELECT name FROM accounts ORDER BY name')]))"))


def test_reading_the_store_file_in_the_process_does_not_split_it(home: Home):
    """The mechanism itself, whatever opened the file: the app's locks are dropped, another lab process writes and
    closes, and the app still sees that write and its own next write is durable."""
    store = Store(home)
    add_account(store, "before")
    home.store_path.read_bytes()  # what the Data tab's reader used to do: drops this process's POSIX locks
    in_another_process(f"from lab.home import lab_home; from lab.store import Store; "
                       f"s = Store(lab_home({str(home.root)!r}))\n"
                       "with s.write() as c: c.execute(\"INSERT INTO accounts VALUES ('cli', 'labeler', 'x', 't')\")")
    assert [r["name"] for r in store.query("SELECT name FROM accounts ORDER BY name")] == ["before", "cli"]
    add_account(store, "after")
    assert accounts_seen_by_a_fresh_process(home) == ["after", "before", "cli"]


def test_a_store_whose_log_was_deleted_refuses_instead_of_acknowledging(home: Home):
    """A foreign SQLite client (no lab settings) closing last deletes the log the app has open: the app's next
    write is refused, not acknowledged into a deleted file."""
    store = Store(home)
    add_account(store, "before")
    home.store_path.read_bytes()
    in_another_process(f"import sqlite3; c = sqlite3.connect({str(home.store_path)!r}, isolation_level=None)\n"
                       "c.execute(\"INSERT INTO accounts VALUES ('foreign', 'labeler', 'x', 't')\"); c.close()")
    with pytest.raises(StoreSplit, match="restart"):
        add_account(store, "lost")
    with pytest.raises(StoreSplit):
        store.query("SELECT name FROM accounts")
    assert "lost" not in accounts_seen_by_a_fresh_process(home)


def test_the_importer_never_opens_the_lab_s_own_state(home: Home):
    from lab.data.readers import read_table

    Store(home)
    metrics = home.runs / "some-run" / "metrics.jsonl"
    metrics.parent.mkdir()
    metrics.write_text('{"loss": 1.0}\n')
    for path in (home.store_path, Path(f"{home.store_path}-wal"), metrics):
        with pytest.raises(LabError, match="never reads as input"):
            read_table(path)
    link = home.imports / "innocent.jsonl"
    link.symlink_to(home.store_path)  # a link in a folder of people's files still resolves to the store
    with pytest.raises(LabError, match="own store"):
        read_table(link)
    outside = home.root.parent / "hard-link"
    os.link(home.store_path, outside)  # another name for the same file
    with pytest.raises(LabError, match="own store"):
        read_table(outside)


def test_the_cli_refuses_the_store_with_one_sentence(home: Home):
    Store(home)
    result = lab(home.root, "data", "check", str(home.store_path))
    assert result.returncode == 1
    assert "the lab's own store" in result.stderr and "Traceback" not in result.stderr


def test_server_paths_are_confined_to_allowed_folders(home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from lab.data.samples import SAMPLE_SFT

    monkeypatch.delenv(ALLOWED_ENV, raising=False)
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"messages": "top secret"}\n')
    for typed in ("/etc/passwd", str(secret), str(home.imports / ".." / ".." / "secret.jsonl")):
        with pytest.raises(LabError, match="outside the folders this server reads") as err:
            server_path(typed, home)
        assert "top secret" not in str(err.value) and "root:" not in str(err.value)
    (home.uploads / "abc").mkdir()
    (home.uploads / "abc" / "chats.jsonl").symlink_to(secret)  # resolved before the check
    with pytest.raises(LabError, match="outside the folders"):
        server_path(str(home.uploads / "abc" / "chats.jsonl"), home)
    assert server_path(str(SAMPLE_SFT), home) == str(SAMPLE_SFT)
    assert server_path("owner/dataset:train", home) == "owner/dataset:train"  # a hub id, not a local file
    (home.imports / "mine.jsonl").write_text("{}\n")
    assert server_path(str(home.imports / "mine.jsonl"), home) == str(home.imports / "mine.jsonl")
    monkeypatch.setenv(ALLOWED_ENV, str(tmp_path))
    assert server_path(str(secret), home) == str(secret)
    with pytest.raises(LabError, match="own store"):  # an allowed folder that holds LAB_HOME still hides the store
        server_path(str(home.store_path), home)


@pytest.fixture(scope="module")
def client(lab_app: AppServer) -> Client:  # noqa: F811
    return Client(lab_app.url, verbose=False)


def test_the_app_reads_no_server_file_outside_the_allow_list(client: Client):
    status, *_ = client.predict(source="/etc/passwd", kind="auto", api_name="/data_check")
    assert "outside the folders this server reads" in status and "root:" not in status
    rows, _, _, status = client.predict(source="/etc/passwd", kind="auto", page=1, api_name="/data_browse")
    assert "outside the folders" in status and "root:" not in json.dumps(rows) + status


def test_the_app_stays_on_its_store_when_pointed_at_it(client: Client, lab_app: AppServer):  # noqa: F811
    """The issue's reproduction end to end: check the store's own path in the Data tab, import from the CLI, then
    import in the app: the app lists the CLI's version, and its own import survives (a fresh process sees it)."""
    status, *_ = client.predict(source=str(lab_app.home / "store.sqlite"), kind="auto", api_name="/data_check")
    assert "the lab's own store" in status
    from lab.data.samples import SAMPLE_PREFERENCE, SAMPLE_SFT

    assert lab(lab_app.home, "data", "import", str(SAMPLE_SFT), "--name", "from-cli").returncode == 0
    refs = [row[0] for row in client.predict(selected=None, api_name="/data_versions")[0]["data"]]
    assert any(ref.startswith("from-cli@") for ref in refs)
    saved = client.predict(source=str(SAMPLE_PREFERENCE), kind="auto", name="from-app", skip_invalid=False,
                           api_name="/data_import")[0]
    assert "Saved" in saved, saved
    listed = json.loads(lab(lab_app.home, "data", "list", "--json").stdout)
    assert {"from-cli", "from-app"} <= {v["name"] for v in listed}


def test_identical_imports_at_the_same_moment_make_one_version_and_all_are_told(home: Home):
    """Four writers of the same rows under one name: one version, every writer gets it (three told it existed),
    and the card on disk is the one the store holds."""
    import threading

    from lab.data.canonical import Row
    from lab.data.versions import list_versions, save_version

    rows = [Row({"messages": [{"role": "user", "content": f"question {i}"},
                              {"role": "assistant", "content": f"answer {i} " * 50}]}, i + 1, "chats.jsonl")
            for i in range(2000)]
    barrier = threading.Barrier(4)
    results, errors = [], []

    def save(writer: int) -> None:
        barrier.wait()
        try:
            results.append(save_version("chats", "sft", "openai", rows, rows[:10], {"writer": writer}, home=home))
        except Exception as err:  # noqa: BLE001 - the test reports every failure
            errors.append(err)

    threads = [threading.Thread(target=save, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len({v.ref for v in results}) == 1 and sorted(v.reused for v in results) == [False, True, True, True]
    [stored] = list_versions(home)
    assert json.loads((stored.path / "card.json").read_text()) == stored.card
    assert sorted(p.name for p in stored.path.parent.iterdir()) == [stored.version]  # no staging left behind


def test_staging_folders_a_killed_import_left_are_swept(home: Home):
    """A server killed mid-import left ``datasets/<name>/.<version>-…/train.parquet``: never listed, never removed."""
    from lab.config import DataConfig
    from lab.data.pipeline import import_file
    from lab.data.samples import SAMPLE_SFT
    from lab.data.versions import sweep_staging

    version = import_file(SAMPLE_SFT, DataConfig(name="kept"), home=home)
    left = home.datasets / "kept" / ".0123abcd-xyz"
    left.mkdir()
    (left / "train.parquet").write_bytes(b"half")
    sweep_staging(home)
    assert not left.exists() and version.path.is_dir()  # the version itself stays
    again = home.datasets / "kept" / ".4567-abc"
    again.mkdir()
    import_file(SAMPLE_SFT, DataConfig(name="kept", val_fraction=0.2), home=home)  # the next save of the name
    assert not again.exists()
