"""The journal's file: its schema, how it is opened (and set up the first time), its errors, and
the write transaction every multi-statement write goes through.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Iterator

from autoresearch.errors import StateError, disk_full_message, is_disk_full

SCHEMA_VERSION = 1


class JournalError(StateError):
    """The journal cannot be read or written (corrupt file, full disk)."""


def journal_problem(path: Path, exc: BaseException) -> str:
    """One message with the way out, for every way SQLite can fail us."""
    text = str(exc)
    if is_disk_full(exc, path.parent if path.parent.is_dir() else "."):
        # never "move the journal aside": it is sound, there is only no room to write to it
        return f"{path}: " + disk_full_message(path.parent.parent.resolve(), text)
    return (f"{path}: the journal cannot be read ({text}); move it aside and rebuild it from git "
            f"(every experiment is recorded beside its commit): `mv {path} {path}.broken && autoresearch repair`")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    seq INTEGER PRIMARY KEY,
    tag TEXT NOT NULL,
    status TEXT NOT NULL,            -- running | keep | discard | crash | rejected
    reason TEXT NOT NULL DEFAULT '',
    commit_sha TEXT NOT NULL DEFAULT '',
    parent TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    proposer TEXT NOT NULL DEFAULT '',
    metric REAL,
    best_before REAL,
    holdout REAL,
    resource REAL,
    metrics_json TEXT NOT NULL DEFAULT '{}',
    details_json TEXT NOT NULL DEFAULT '{}',
    log_path TEXT NOT NULL DEFAULT '',
    log_tail TEXT NOT NULL DEFAULT '',
    program_hash TEXT NOT NULL DEFAULT '',
    is_baseline INTEGER NOT NULL DEFAULT 0,
    slot INTEGER NOT NULL DEFAULT 0,
    started_at REAL NOT NULL,
    finished_at REAL,
    propose_seconds REAL,
    run_seconds REAL,
    tokens_in INTEGER,
    tokens_out INTEGER,
    cost_usd REAL,
    lines_delta INTEGER,
    pid INTEGER
);
CREATE INDEX IF NOT EXISTS experiments_tag ON experiments(tag, seq);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER,                     -- the experiment it belongs to (NULL for noise runs)
    tag TEXT NOT NULL,
    role TEXT NOT NULL,              -- candidate | best | noise
    commit_sha TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,            -- ok | crash
    reason TEXT NOT NULL DEFAULT '',
    metric REAL,
    metrics_json TEXT NOT NULL DEFAULT '{}',
    seconds REAL,
    log_path TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_seq ON runs(seq);
CREATE TABLE IF NOT EXISTS noise (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tag TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    n INTEGER NOT NULL,
    mean REAL, median REAL, std REAL, mad REAL, min REAL, max REAL,
    suggested_min_delta REAL,
    values_json TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def open_db(path: Path) -> sqlite3.Connection:
    """The journal at PATH, created or brought to SCHEMA_VERSION; JournalError when it cannot be
    read. Autocommit: a write outside `transaction` is its own transaction."""
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    db.row_factory = sqlite3.Row
    try:
        db.execute("PRAGMA synchronous=NORMAL")  # per connection
        # A journal this version set up says so in its header (user_version) and keeps WAL
        # (a property of the file): then the schema script, a write, is skipped. An agent
        # calls `experiment` hundreds of times a night, and that script was a tenth of the
        # command's own Python.
        ready = db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION \
            and db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        if not ready:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                       (str(SCHEMA_VERSION),))
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.DatabaseError as exc:
        db.close()
        raise JournalError(journal_problem(path, exc)) from None
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """The statements of the block as ONE write transaction: the write lock is taken at its start
    (BEGIN IMMEDIATE, so two processes never interleave), and any exception rolls it back, unless
    SQLite already did (after a full disk), whose error is then the one raised."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
