"""The journal's and the config's cheap paths must never serve stale or wrong state.

- A journal this version set up skips its schema script (user_version marks it); one from an
  earlier version, or one whose header was reset, goes through the script again and loses nothing.
- A config or lock read once is reused only while the file is the same file, unchanged: an edit
  that keeps the size and puts the old mtime back (an agent covering its tracks) is still seen.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from conftest import make_task

from autoresearch.config.task import load_config
from autoresearch.harness.guard import read_lock, write_lock
from autoresearch.journal.schema import SCHEMA_VERSION
from autoresearch.journal.store import Journal


def test_a_journal_from_an_earlier_version_is_set_up_and_keeps_its_rows(tmp_path: Path) -> None:
    state = tmp_path / ".autoresearch"
    with Journal(state) as journal:
        journal.set_meta("kept", "yes")
    with sqlite3.connect(state / "journal.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        db.execute("PRAGMA user_version = 0")  # as every journal before this version
        db.execute("DROP INDEX runs_seq")
    with Journal(state) as journal:
        assert journal.get_meta("kept") == "yes"
    with sqlite3.connect(state / "journal.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'runs_seq'").fetchone() is not None
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_config_or_lock_edited_behind_its_cache_is_read_again(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    config_path = root / "autoresearch.toml"
    first = load_config(root)
    assert load_config(root) is first  # locked and unchanged: the same object, not a re-parse
    lock = read_lock(root)
    assert lock is not None and read_lock(root) is lock

    text = config_path.read_text()
    before = config_path.stat()
    edited = text.replace('name = "val_loss"', 'name = "val_lost"')
    assert len(edited) == len(text) and edited != text  # same size, other bytes
    config_path.write_text(edited)
    os.utime(config_path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the old mtime put back
    assert config_path.stat().st_mtime_ns == before.st_mtime_ns
    again = load_config(root)
    assert again is not first and again.metric.name == "val_lost"

    config_path.write_text(text)
    write_lock(load_config(root))  # a new lock.json, renamed in
    assert read_lock(root) is not lock
