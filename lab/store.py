"""The SQLite store: WAL mode, schema created and migrated on open, one way to write.

Migrations are an append-only list; ``PRAGMA user_version`` records how many have run. Never
edit a migration that has shipped: add a new one.

Why the store is careful about its files: SQLite's POSIX locks belong to the process, and closing *any*
descriptor of the database file drops all of them (a documented pitfall). A process that then looks like the
last user to another process would have its write-ahead log checkpointed and deleted under it, and every write
it acknowledged afterwards would go to a deleted file. So (1) nothing in the lab opens the store as input
(``lab.paths``), (2) no lab connection checkpoints and deletes the log when it closes (the log stays on disk;
the next opener recovers it, as after a crash), and (3) a connection whose log is no longer the file on disk
refuses to answer rather than acknowledge a write that is not durable. Commits are fsynced (``synchronous=FULL``,
about 0.3 ms a commit here): an acknowledged write survives a power cut, too.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.home import Home, lab_home

MIGRATIONS: list[str] = [
    # 1: dataset versions
    """
    CREATE TABLE datasets (
        name        TEXT NOT NULL,
        version     TEXT NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('sft', 'preference')),
        format      TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        path        TEXT NOT NULL,
        train_rows  INTEGER NOT NULL,
        val_rows    INTEGER NOT NULL,
        card        TEXT NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE INDEX datasets_created ON datasets (created_at);
    """,
    # 2: training runs (the run directory holds the rest: config.yaml, metrics.jsonl, log.txt, ...)
    """
    CREATE TABLE runs (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        method       TEXT NOT NULL,
        model        TEXT NOT NULL,
        dataset      TEXT NOT NULL,
        status       TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
        run_dir      TEXT NOT NULL,
        config       TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        started_at   TEXT,
        finished_at  TEXT,
        pid          INTEGER,
        error        TEXT,
        resume_from  TEXT,
        final_loss   REAL,
        wandb_url    TEXT
    );
    CREATE INDEX runs_status ON runs (status, created_at);
    """,
    # 3: labeling (accounts, campaigns with their prompts, responses and pairs; leases on served pairs; votes)
    """
    CREATE TABLE accounts (
        name          TEXT PRIMARY KEY,
        role          TEXT NOT NULL CHECK (role IN ('admin', 'labeler')),
        password_hash TEXT NOT NULL,
        created_at    TEXT NOT NULL
    );
    CREATE TABLE campaigns (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        status       TEXT NOT NULL CHECK (status IN ('generating', 'open', 'closed', 'failed')),
        config       TEXT NOT NULL,
        sources      TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        pid          INTEGER,
        error        TEXT,
        generated    INTEGER NOT NULL DEFAULT 0,
        to_generate  INTEGER NOT NULL DEFAULT 0,
        votes_wanted INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE campaign_prompts (
        campaign_id  TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
        idx          INTEGER NOT NULL,
        prompt       TEXT NOT NULL,
        PRIMARY KEY (campaign_id, idx)
    );
    CREATE TABLE responses (
        campaign_id  TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
        prompt_idx   INTEGER NOT NULL,
        source       TEXT NOT NULL,
        text         TEXT NOT NULL,
        PRIMARY KEY (campaign_id, prompt_idx, source)
    );
    CREATE TABLE pairs (
        id            INTEGER PRIMARY KEY,
        campaign_id   TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
        prompt_idx    INTEGER NOT NULL,
        source_1      TEXT NOT NULL,
        source_2      TEXT NOT NULL,
        gold          TEXT,
        votes_wanted  INTEGER NOT NULL,
        remaining     INTEGER NOT NULL,
        rank          INTEGER NOT NULL,
        ready         INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX pairs_serve ON pairs (campaign_id, remaining, rank, ready);
    CREATE TABLE leases (
        token        TEXT PRIMARY KEY,
        pair_id      INTEGER NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
        labeler      TEXT NOT NULL,
        left_source  TEXT NOT NULL,
        served_at    REAL NOT NULL,
        expires_at   REAL NOT NULL,
        UNIQUE (pair_id, labeler)
    );
    CREATE TABLE votes (
        id           INTEGER PRIMARY KEY,
        pair_id      INTEGER NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
        campaign_id  TEXT NOT NULL,
        labeler      TEXT NOT NULL,
        choice       TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both_bad')),
        winner       TEXT,
        left_source  TEXT NOT NULL,
        comment      TEXT NOT NULL DEFAULT '',
        seconds      REAL,
        created_at   TEXT NOT NULL,
        UNIQUE (pair_id, labeler)
    );
    CREATE INDEX votes_campaign ON votes (campaign_id, labeler);
    CREATE TABLE skips (
        pair_id  INTEGER NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
        labeler  TEXT NOT NULL,
        PRIMARY KEY (pair_id, labeler)
    );
    """,
    # 4: evaluation jobs (one per model and metric; the results are small JSON documents)
    """
    CREATE TABLE evals (
        id           TEXT PRIMARY KEY,
        kind         TEXT NOT NULL,
        model        TEXT NOT NULL,
        dataset      TEXT NOT NULL,
        config       TEXT NOT NULL,
        status       TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
        created_at   TEXT NOT NULL,
        finished_at  TEXT,
        pid          INTEGER,
        done         INTEGER NOT NULL DEFAULT 0,
        total        INTEGER NOT NULL DEFAULT 0,
        results      TEXT,
        error        TEXT
    );
    CREATE INDEX evals_created ON evals (created_at);
    """,
    # 5: undoing a vote appends a retraction (the vote row stays); a labeler may vote on the pair again, so the
    #    rule "one counted vote per pair and labeler" moves from a UNIQUE constraint to lab.label.serving, and the
    #    view live_votes is the one place that says which votes count
    """
    CREATE TABLE votes_unique_dropped (
        id           INTEGER PRIMARY KEY,
        pair_id      INTEGER NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
        campaign_id  TEXT NOT NULL,
        labeler      TEXT NOT NULL,
        choice       TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both_bad')),
        winner       TEXT,
        left_source  TEXT NOT NULL,
        comment      TEXT NOT NULL DEFAULT '',
        seconds      REAL,
        created_at   TEXT NOT NULL
    );
    INSERT INTO votes_unique_dropped SELECT id, pair_id, campaign_id, labeler, choice, winner, left_source, comment,
        seconds, created_at FROM votes;
    DROP TABLE votes;
    ALTER TABLE votes_unique_dropped RENAME TO votes;
    CREATE INDEX votes_campaign ON votes (campaign_id, labeler);
    CREATE INDEX votes_pair ON votes (pair_id, labeler);
    CREATE TABLE retractions (
        vote_id      INTEGER PRIMARY KEY REFERENCES votes (id) ON DELETE CASCADE,
        labeler      TEXT NOT NULL,
        created_at   TEXT NOT NULL
    );
    CREATE VIEW live_votes AS SELECT * FROM votes WHERE id NOT IN (SELECT vote_id FROM retractions);
    """,
    # 6: a dataset's kind is any lab.data.kinds entry (checked there when a version is saved), not a list kept here
    """
    CREATE TABLE datasets_any_kind (
        name        TEXT NOT NULL,
        version     TEXT NOT NULL,
        kind        TEXT NOT NULL,
        format      TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        path        TEXT NOT NULL,
        train_rows  INTEGER NOT NULL,
        val_rows    INTEGER NOT NULL,
        card        TEXT NOT NULL,
        PRIMARY KEY (name, version)
    );
    INSERT INTO datasets_any_kind SELECT name, version, kind, format, created_at, path, train_rows, val_rows, card
        FROM datasets;
    DROP TABLE datasets;
    ALTER TABLE datasets_any_kind RENAME TO datasets;
    CREATE INDEX datasets_created ON datasets (created_at);
    """,
    # 7: thumbs campaigns (one answer at a time) vote up or down. SQLite cannot change a CHECK in place, so votes is
    #    rebuilt; retractions is set aside first (dropping votes would cascade into it) and the view rebuilt after
    """
    DROP VIEW live_votes;
    CREATE TABLE retractions_kept AS SELECT vote_id, labeler, created_at FROM retractions;
    DROP TABLE retractions;
    CREATE TABLE votes_thumbs (
        id           INTEGER PRIMARY KEY,
        pair_id      INTEGER NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
        campaign_id  TEXT NOT NULL,
        labeler      TEXT NOT NULL,
        choice       TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both_bad', 'up', 'down')),
        winner       TEXT,
        left_source  TEXT NOT NULL,
        comment      TEXT NOT NULL DEFAULT '',
        seconds      REAL,
        created_at   TEXT NOT NULL
    );
    INSERT INTO votes_thumbs SELECT id, pair_id, campaign_id, labeler, choice, winner, left_source, comment, seconds,
        created_at FROM votes;
    DROP TABLE votes;
    ALTER TABLE votes_thumbs RENAME TO votes;
    CREATE INDEX votes_campaign ON votes (campaign_id, labeler);
    CREATE INDEX votes_pair ON votes (pair_id, labeler);
    CREATE TABLE retractions (
        vote_id      INTEGER PRIMARY KEY REFERENCES votes (id) ON DELETE CASCADE,
        labeler      TEXT NOT NULL,
        created_at   TEXT NOT NULL
    );
    INSERT INTO retractions SELECT vote_id, labeler, created_at FROM retractions_kept;
    DROP TABLE retractions_kept;
    CREATE VIEW live_votes AS SELECT * FROM votes WHERE id NOT IN (SELECT vote_id FROM retractions);
    """,
    # 8: the preference flywheel. A vote may be graded (strength 2 = much better, 1 = better; NULL = not graded or
    #    a tie) and may name a winner per aspect ({aspect: source | "tie"}). A campaign may be the next round of
    #    another. An admin's decision on a pair labelers disagree on, and an LLM judge's pre-label, are kept apart
    #    from the votes: every count, agreement figure and leaderboard reads people's votes only. The view is
    #    rebuilt so that it has the new columns.
    """
    ALTER TABLE votes ADD COLUMN strength INTEGER;
    ALTER TABLE votes ADD COLUMN aspects TEXT NOT NULL DEFAULT '{}';
    DROP VIEW live_votes;
    CREATE VIEW live_votes AS SELECT * FROM votes WHERE id NOT IN (SELECT vote_id FROM retractions);
    ALTER TABLE campaigns ADD COLUMN previous_id TEXT REFERENCES campaigns (id);
    ALTER TABLE campaigns ADD COLUMN round INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE adjudications (
        pair_id      INTEGER PRIMARY KEY REFERENCES pairs (id) ON DELETE CASCADE,
        campaign_id  TEXT NOT NULL,
        outcome      TEXT NOT NULL,
        admin        TEXT NOT NULL,
        note         TEXT NOT NULL DEFAULT '',
        created_at   TEXT NOT NULL
    );
    CREATE TABLE judge_labels (
        pair_id      INTEGER PRIMARY KEY REFERENCES pairs (id) ON DELETE CASCADE,
        campaign_id  TEXT NOT NULL,
        judge        TEXT NOT NULL,
        outcome      TEXT NOT NULL,
        consistent   INTEGER NOT NULL,
        created_at   TEXT NOT NULL
    );
    CREATE INDEX judge_labels_campaign ON judge_labels (campaign_id);
    CREATE INDEX adjudications_campaign ON adjudications (campaign_id);
    """,
]

_lock = threading.Lock()
_local = threading.local()
_migrated: set[Path] = set()
_writer_locks: dict[Path, threading.Lock] = {}
NO_CKPT_ON_CLOSE = 1006  # SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE
WAL_LIMIT_BYTES = 64 * 2**20  # the kept log is truncated to this after a checkpoint


class StoreSplit(LabError):
    """This process's connection no longer writes to the store's files on disk."""


def store_files(path: Path) -> tuple[Path, Path, Path]:
    """The database and the two files SQLite keeps beside it in WAL mode."""
    return path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def opened_stores() -> list[Path]:
    """The stores this process has opened: ``lab.paths`` refuses to read them as input."""
    with _lock:
        return list(_migrated)


def file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


@functools.cache
def sqlite_library() -> ctypes.CDLL:
    """The very libsqlite3 Python's sqlite3 module uses, with the two calls ``keep_log_on_close`` makes typed."""
    import _sqlite3

    lib = ctypes.CDLL(_sqlite3.__file__)
    lib.sqlite3_db_filename.restype = ctypes.c_char_p
    lib.sqlite3_db_filename.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.sqlite3_db_config.restype = ctypes.c_int
    return lib


def keep_log_on_close(conn: sqlite3.Connection, path: Path) -> None:
    """Never checkpoint and delete the write-ahead log when this connection closes (see the module docstring).

    Python 3.12 has ``Connection.setconfig``; 3.11 does not, so the handle is read from the connection object and
    checked against the store's own file name before anything is set: a mismatch leaves the default, and the
    identity check in ``Store`` still refuses a split store."""
    if hasattr(conn, "setconfig"):
        conn.setconfig(NO_CKPT_ON_CLOSE, True)
        return
    lib = sqlite_library()
    handle = ctypes.c_void_p.from_address(id(conn) + 2 * ctypes.sizeof(ctypes.c_void_p)).value  # after PyObject_HEAD
    if not handle or lib.sqlite3_db_filename(handle, b"main") != os.fsencode(path):
        return
    lib.sqlite3_db_config(ctypes.c_void_p(handle), ctypes.c_int(NO_CKPT_ON_CLOSE), ctypes.c_int(1),
                          ctypes.byref(ctypes.c_int()))


def _writer_lock(path: Path) -> threading.Lock:
    with _lock:
        return _writer_locks.setdefault(path, threading.Lock())


class Store:
    """A handle on ``LAB_HOME/store.sqlite``. Cheap to create; each call opens its own connection,
    so it is safe across threads (Gradio handlers) and processes (training workers)."""

    def __init__(self, home: Home | None = None):
        self.home = home or lab_home()
        self.path = self.home.store_path
        with _lock:
            if self.path not in _migrated:
                self._migrate()
                _migrated.add(self.path)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
        conn.row_factory = sqlite3.Row
        keep_log_on_close(conn, self.path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        return conn

    def _connect(self) -> sqlite3.Connection:
        """This thread's connection to the store, opened once: a web request makes several small queries, and
        opening a connection (with its pragmas) costs about as much as one of them. Never shared across threads
        or carried over a fork. Checked against the files on disk before each use (two ``stat`` calls)."""
        key = (os.getpid(), self.path)
        cached = getattr(_local, "connections", None)
        if cached is None:
            cached = _local.connections = {}
        if key not in cached:
            conn = self._open()
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")  # the first read creates the log and its index
            cached[key] = (conn, self._log_identity())
        conn, identity = cached[key]
        self._check(identity)
        return conn

    def _log_identity(self) -> tuple:
        return tuple(file_identity(p) for p in store_files(self.path)[1:])

    def _check(self, identity: tuple) -> None:
        """Refuse a connection whose log or index is no longer the file on disk: its reads are stale and its
        writes would be lost. The connection is left open on purpose: closing it could checkpoint a stale log
        into the live database."""
        if self._log_identity() != identity:
            raise StoreSplit(f"The lab's store {self.path} was changed under this process (its write-ahead log was "
                             "replaced by another program), so nothing more is read or written here: restart the "
                             "app or command. Writes acknowledged before are safe on disk.")

    def _migrate(self) -> None:
        conn = self._open()
        try:
            conn.execute("BEGIN IMMEDIATE")
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in filter(str.strip, script.split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed whole or not at all (BEGIN IMMEDIATE takes the write lock up front).

        Writers of one process queue on a lock first: SQLite's own busy handler retries with sleeps of up to
        100 ms, which under many concurrent web requests (labelers voting) turns into multi-second tails."""
        with _writer_lock(self.path):
            yield from self._transaction()

    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        identity = self._log_identity()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._check(identity)  # the log was replaced while we wrote: this commit is in a deleted file

    def query(self, sql: str, params: tuple | dict = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in self._connect().execute(sql, params).fetchall()]

    def schema_version(self) -> int:
        return self.query("PRAGMA user_version")[0]["user_version"]


def dumps(value: Any) -> str:
    """JSON for a TEXT column."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
