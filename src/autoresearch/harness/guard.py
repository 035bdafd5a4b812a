"""The frozen harness and the editable surface.

`lock` hashes every read-only file plus autoresearch.toml and program.md into
`.autoresearch/lock.json`; `verify` compares the files on disk with it. `check_scope` decides
whether a change (best tree versus working tree) touches only the editable files.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from autoresearch.config.task import CONFIG_NAME, STATE_DIR, TaskConfig, file_identity
from autoresearch.errors import StateError
from autoresearch.git.workspace import Change, matches_any

LOCK_NAME = "lock.json"


@dataclass(frozen=True)
class Lock:
    files: dict[str, str]  # path -> sha256
    locked_at: float

    @property
    def program_hash(self) -> str:
        digest = hashlib.sha256()
        for path, sha in sorted(self.files.items()):
            if path.endswith(".md"):
                digest.update(f"{path}:{sha}\n".encode())
        return digest.hexdigest()[:12]


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lock_path(root: Path) -> Path:
    return root / STATE_DIR / LOCK_NAME


def write_lock(config: TaskConfig, root: Path | None = None, anchor: Callable[[str], None] | None = None) -> Lock:
    """Hash the harness into lock.json. ANCHOR: stores the lock's text where the agent's code
    cannot change it unnoticed (git), BEFORE the file is renamed in: a kill in between leaves
    the anchor newer than the file, and the file is put back from it."""
    base = root or config.root
    files = {name: file_hash(base / name) for name in config.harness_files(base)}
    lock = Lock(files=files, locked_at=time.time())
    text = json.dumps({"version": 1, "locked_at": lock.locked_at, "files": files}, indent=2)
    if anchor is not None:
        anchor(text)
    put_lock(config.root, text)
    return lock


def put_lock(root: Path, text: str) -> None:
    target = lock_path(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, target)


def parse_lock(text: str) -> Lock:
    """A lock from its file's text; ValueError (or KeyError, TypeError) when it is none."""
    data = json.loads(text)
    return Lock(files={str(k): str(v) for k, v in dict(data["files"]).items()}, locked_at=float(data["locked_at"]))


def forged_entries(anchored: Lock, found: Lock) -> list[str]:
    """The lock file's entries that differ from the lock autoresearch wrote."""
    names = sorted(set(anchored.files) | set(found.files))
    return [n for n in names if anchored.files.get(n) != found.files.get(n)]


# Locks already read by this process (a command reads it three times; a served copy inherits
# the server's), by the file's identity: a new lock is a new file (write_lock renames one in).
_READ: dict[tuple, Lock] = {}


def read_lock(root: Path) -> Lock | None:
    path = lock_path(root)
    key = (str(path), file_identity(path))
    if key[1] is None:
        return None
    if key in _READ:
        return _READ[key]
    try:
        lock = parse_lock(path.read_text())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateError(f"{path}: cannot be read ({exc}); check the harness by hand (`git diff`), then "
                         "write the lock again with `autoresearch lock`") from None
    if file_identity(path) == key[1]:  # unchanged while it was read
        _READ[key] = lock
    return lock


def verify(lock: Lock, root: Path) -> list[str]:
    """Problems with the harness on disk under ROOT: `path: changed` or `path: missing`."""
    problems = []
    for name, sha in sorted(lock.files.items()):
        path = root / name
        if path.is_symlink() or not path.is_file():
            problems.append(f"{name}: missing")
        elif file_hash(path) != sha:
            problems.append(f"{name}: changed")
    return problems


def check_scope(changes: list[Change], config: TaskConfig, lock: Lock) -> list[str]:
    """Violations of the editable surface; an empty list means the change is in scope.

    Allowed: modifying or adding regular files that match an editable glob. Anything else is
    a violation: a harness file, a deleted file, a new file elsewhere, a symlink."""
    violations = []
    for change in changes:
        if change.path in lock.files or change.path == CONFIG_NAME:
            violations.append(f"{change.path}: harness file")
        elif not matches_any(change.path, config.task.editable):
            what = {"A": "new file", "D": "deleted file"}.get(change.status, "not editable")
            violations.append(f"{change.path}: {what}")
        elif change.status == "D":
            violations.append(f"{change.path}: deleted editable file")
        elif change.is_symlink or change.new_mode not in ("100644", "100755"):
            violations.append(f"{change.path}: not a regular file")
    return violations
