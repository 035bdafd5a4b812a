"""Last words: why a command died, written where a full disk cannot stop it.

A command that meets a full disk cannot record the cause the usual way: the journal needs new
SQLite pages, a note needs new git objects. What it can still do is overwrite bytes a file
already owns. So the task's state folder holds one file of SIZE bytes, written in full while
there is room (`reserve`, when a command takes the task's lock); a command dying of a full disk
overwrites it in place (`leave`: no create, no truncate, no growth), and the next command's
repair, which closes the dead command's experiments as `crash: interrupted`, reads it (`read`)
and names the cause in their records when the words are that command's own: the same pid, left
after the experiment started. `clear` blanks it again.

What it cannot do: on a copy-on-write filesystem (btrfs, ZFS) an overwrite needs new blocks
too, so `leave` fails there as everything else does, and the record says `interrupted` without
a cause, as it would without this file. The words are only a cause for a record repair closes
anyway; a forged file can make an interrupted experiment say "the disk was full", nothing more.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import time
from pathlib import Path

NAME = "last-words"
SIZE = 4096  # one page: overwritten in place on ext4, xfs and tmpfs without a new block
BLANK = b" " * SIZE
MESSAGE_MAX = 1500  # characters of the error kept (the JSON, escaped, must fit in SIZE)


@dataclasses.dataclass(frozen=True)
class Words:
    pid: int
    at: float
    cause: str  # "disk-full"
    message: str


def reserve(state_dir: Path) -> None:
    """Make sure the file exists at its full size, blank when new. Quiet when it cannot (the
    disk is already full: the command fails on its own a moment later)."""
    path = state_dir / NAME
    try:
        st = path.lstat()
        if stat.S_ISREG(st.st_mode) and st.st_size == SIZE:
            return
        path.unlink()  # a link or anything else planted here is never written through
    except FileNotFoundError:
        pass
    except OSError:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError:
        return
    try:
        os.write(fd, BLANK)  # real bytes, not a sparse hole or an unwritten extent: later writes need no block
        os.fsync(fd)
    except OSError:
        try:
            path.unlink()
        except OSError:
            pass
    finally:
        os.close(fd)


def leave(state_dir: Path, cause: str, message: str) -> bool:
    """Overwrite the reserved file with this process's last words; False when it cannot."""
    text = message[:MESSAGE_MAX]
    data = json.dumps({"pid": os.getpid(), "at": time.time(), "cause": cause, "message": text}).encode()
    while len(data) > SIZE and text:  # escapes made it longer than the page: shorten, never grow the file
        text = text[: len(text) // 2]
        data = json.dumps({"pid": os.getpid(), "at": time.time(), "cause": cause, "message": text}).encode()
    return _overwrite(state_dir / NAME, data.ljust(SIZE))


def read(state_dir: Path) -> Words | None:
    """The words left, or None (no file, blank, or not ours to parse)."""
    try:
        fd = os.open(state_dir / NAME, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        raw = os.read(fd, SIZE).strip()
    except OSError:
        return None
    finally:
        os.close(fd)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return Words(int(data["pid"]), float(data["at"]), str(data["cause"]), str(data.get("message", "")))
    except (ValueError, KeyError, TypeError):
        return None


def clear(state_dir: Path) -> None:
    _overwrite(state_dir / NAME, BLANK)


def _overwrite(path: Path, data: bytes) -> bool:
    try:
        # no O_CREAT, no O_TRUNC: the blocks are the file's already; never through a link
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return False
    try:
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
