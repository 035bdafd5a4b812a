"""The one root of every error a user can cause, and the exit codes the CLI maps them to.

The CLI catches `AutoresearchError` and nothing narrower: a new error class becomes a clear
message with its exit code the moment it subclasses one of these. Anything else that reaches
the CLI is a bug in autoresearch, and shows as one.
"""

from __future__ import annotations

import errno
import os

EXIT_PROBLEM = 1  # the task's state, the machine, or a run that could not be made
EXIT_CONFIG = 2  # a broken autoresearch.toml or bad arguments
EXIT_CRASH = 3  # an experiment that crashed
EXIT_REJECTED = 4  # an experiment that was rejected
EXIT_INTERRUPTED = 130


class AutoresearchError(Exception):
    """A problem the user can fix: the message says what and how."""

    exit_code = EXIT_PROBLEM


class ConfigError(AutoresearchError):
    """A broken autoresearch.toml or a bad argument. The message names the file and the key."""

    exit_code = EXIT_CONFIG


class StateError(AutoresearchError):
    """A problem with the state of the task (no run branch, a busy task, a broken journal)."""


# Below this many free bytes, a SQLite or git failure is taken for a full disk: SQLite on some
# filesystems (tmpfs) reports a failed write as "disk I/O error", not "database or disk is full".
NEARLY_FULL_BYTES = 1 << 20


def free_bytes(folder: str | os.PathLike[str]) -> int | None:
    """Bytes an unprivileged writer may still use on FOLDER's filesystem (None if unknown)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def is_disk_full(exc: BaseException, folder: str | os.PathLike[str]) -> bool:
    """Whether EXC (an OSError, a SQLite or git failure) means FOLDER's disk is full."""
    text = str(exc).lower()
    if getattr(exc, "errno", None) == errno.ENOSPC or "no space left" in text or "disk is full" in text:
        return True
    if isinstance(exc, OSError):  # its errno says it all
        return False
    free = free_bytes(folder)
    return free is not None and free < NEARLY_FULL_BYTES


def disk_full_message(folder: str | os.PathLike[str], detail: object) -> str:
    """The one message for a full disk: where, why, and the way out."""
    free = free_bytes(folder)
    left = "" if free is None else f", {free // 1024} KiB free"
    return (f"the disk holding {folder} is full ({detail}{left}); free some space (`du -sh .autoresearch/runs/* .autoresearch/slots/*` "
            "in the task folder shows what runs and agents left behind) and run the command again: nothing recorded so far "
            "is lost, and the next command closes an interrupted experiment as `crash: interrupted`, lost to the full disk")


__all__ = ["free_bytes", "is_disk_full", "disk_full_message", "AutoresearchError", "ConfigError", "StateError", "EXIT_PROBLEM", "EXIT_CONFIG", "EXIT_CRASH",
           "EXIT_REJECTED", "EXIT_INTERRUPTED"]
