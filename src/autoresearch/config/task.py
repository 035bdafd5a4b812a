"""Load `autoresearch.toml` into typed config: find it, read it, check it, cache it once locked.

Every error names the file and the key (``autoresearch.toml: [metric] goal: ...``) so a
user can fix it without reading this code. Loading never writes anything. The sections are
declared in `schema`, checked by `validate`; the names other modules import from here
(`from autoresearch.config.task import TaskConfig, load_config`) are re-exported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pwd
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from autoresearch.config.schema import (
    CONFIG_NAME,
    REFERENCE_CONFIDENCE,
    REFERENCE_MAX_RUNS,
    SEQUENTIAL_MAX_RUNS,
    STATE_DIR,
    AgentSection,
    BudgetSection,
    ExecutorSection,
    LoopSection,
    MetricSection,
    ResourceSection,
    SandboxSection,
    TaskConfig,
    TaskSection,
    VerdictSection,
    expand_globs,
    parse_constraint,
    path_problem,
)
from autoresearch.config.validate import build_config, check_fields, check_files
from autoresearch.errors import ConfigError

__all__ = [
    "CONFIG_NAME", "STATE_DIR", "SEQUENTIAL_MAX_RUNS", "REFERENCE_CONFIDENCE", "REFERENCE_MAX_RUNS",
    "ConfigError", "TaskConfig", "TaskSection", "MetricSection", "ResourceSection", "BudgetSection",
    "VerdictSection", "AgentSection", "LoopSection", "SandboxSection", "ExecutorSection",
    "expand_globs", "parse_constraint", "path_problem", "parse_config", "check_limits", "file_identity",
    "load_config", "find_root", "with_overrides", "tomllib", "check_owner", "SAFE_ENV",
]



def parse_config(data: dict[str, Any], path: Path, root: Path) -> TaskConfig:
    """Validate a parsed TOML document into a TaskConfig, with the files on disk under ROOT.

    Once this exact config is locked, a missing file is the guard's business (a deleted harness
    file is a rejected experiment, not a broken config), so the files are not checked then."""
    config = build_config(data, path, root)
    if not _is_locked(config):
        check_files(config)
    return config


def check_limits(loop: LoopSection, where: str) -> None:
    """The loop's stop conditions (from the config or the command line) must be usable numbers:
    the [loop] keys' own rules, with WHERE before the key in the message."""
    check_fields(loop, where)


def _is_locked(config: TaskConfig) -> bool:
    lock = config.root / STATE_DIR / "lock.json"
    try:
        files = json.loads(lock.read_text())["files"]
        return files.get(CONFIG_NAME) == hashlib.sha256(config.path.read_bytes()).hexdigest()
    except (OSError, ValueError, KeyError, TypeError):
        return False


# Locked configs already read by this process, by the identity of the config file and the
# lock: a TaskConfig is frozen, and a locked config's checks depend on those two files only (see parse_config).
_LOCKED: dict[tuple, TaskConfig] = {}


def file_identity(path: Path) -> tuple[int, int, int, int] | None:
    """What changes whenever a file does (inode, size, mtime and ctime in ns), for caches of
    what was read from it; None when it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


SAFE_ENV = "AUTORESEARCH_SAFE_DIRECTORIES"


def check_owner(root: Path, path: Path) -> None:
    """Refuse a task folder, or its config, that another user owns (as git's safe.directory):
    its `[task] setup` and `run` would run as the caller. The way out: run as its owner, take
    it, or trust it by name in $AUTORESEARCH_SAFE_DIRECTORIES (paths separated by `:`, or `*`)."""
    me = os.geteuid()
    trusted = [p for p in os.environ.get(SAFE_ENV, "").split(":") if p]
    if "*" in trusted or str(root) in {str(Path(p).resolve()) for p in trusted}:
        return
    for target in (root, path):
        try:
            owner = os.stat(target).st_uid
        except OSError:
            continue
        if owner != me:
            raise ConfigError(
                f"{target}: owned by {_user(owner)}, not by you ({_user(me)}); autoresearch reads no config and "
                f"runs nothing from another user's folder. Run it as {_user(owner)}, take the folder "
                f"(`chown -R {_user(me)} {root}`), or trust it: `export {SAFE_ENV}={root}` (git asks the same: "
                f"`git config --global --add safe.directory {root}`)")


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def load_config(root: Path | str = ".") -> TaskConfig:
    """Read ROOT/autoresearch.toml. Raises ConfigError with the file and key on any problem."""
    root = Path(root).resolve()
    path = root / CONFIG_NAME
    lock = root / STATE_DIR / "lock.json"
    key = (str(root), file_identity(path), file_identity(lock))
    cached = _LOCKED.get(key) if key[1] and key[2] else None
    if cached is not None:
        return cached
    if not path.exists():
        raise ConfigError(f"{path}: not found (run `autoresearch init` first, or cd into a task folder)")
    check_owner(root, path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8: {exc}") from None
    config = parse_config(data, path, root)
    if key[1] and key[2] and _is_locked(config) and key == (str(root), file_identity(path), file_identity(lock)):
        _LOCKED[key] = config  # unchanged while it was read: the key names what was parsed
    return config


def find_root(start: Path | str = ".") -> Path:
    """The nearest folder at or above START that holds autoresearch.toml (START itself if none)."""
    here = Path(start).resolve()
    for candidate in (here, *here.parents):
        if (candidate / CONFIG_NAME).exists():
            return candidate
    return here


def with_overrides(config: TaskConfig, section: str, **changes: Any) -> TaskConfig:
    """A copy of config with some keys of one section replaced (CLI flags over the file)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return config
    updated = dataclasses.replace(getattr(config, section), **changes)
    return dataclasses.replace(config, **{section: updated})
