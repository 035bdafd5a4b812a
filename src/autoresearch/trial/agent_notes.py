"""The agent's own notes: `notes.md`, carried from one experiment to the next.

The loop puts the run's notes into the agent's scratch copy as `notes.md` (as
`autoresearch-notes.md` when the task's tree has a `notes.md` of its own) and takes the file
back after the proposal, before the candidate is collected: so it is never part of the
candidate, never committed, and never quarantined. The notes live in the task's state,
`.autoresearch/notes/<tag>.md`, and the next brief shows them.

The file is the agent's, so it is read as hostile input: never through a link (`O_NOFOLLOW`,
and only a regular file), at most MAX_BYTES read however big it grew, invalid UTF-8 replaced,
(ending at a line break, so no secret is read in half), control characters and terminal escapes
removed, secrets redacted, and cut to MAX_CHARS.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path

from autoresearch.redact import scrub

NAME = "notes.md"
FALLBACK_NAME = "autoresearch-notes.md"
MAX_CHARS = 4_000  # what the brief carries (about 1,000 tokens)
MAX_BYTES = 64 * 1024  # read from the agent's file, at most
CUT = "\n[notes cut at {n} characters]"
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def clean(raw: bytes) -> str:
    """Notes as the brief may carry them: text, no control characters or escapes, no secrets,
    at most MAX_CHARS."""
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", _ESCAPES.sub("", text))
    text = scrub(text).strip()
    if len(text) > MAX_CHARS:
        marker = CUT.format(n=MAX_CHARS)
        text = text[: MAX_CHARS - len(marker)].rstrip() + marker
    return text


def path_in(state_dir: Path, tag: str) -> Path:
    return Path(state_dir) / "notes" / f"{tag}.md"


def load(state_dir: Path, tag: str) -> str:
    """The run's notes ("" when none)."""
    try:
        return path_in(state_dir, tag).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def store(state_dir: Path, tag: str, text: str) -> None:
    """Replace the run's notes (atomically: a kill leaves the old or the new, whole)."""
    path = path_in(state_dir, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".notes.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def scratch_name(root: Path) -> str:
    """The notes file's name in a scratch copy (the task's own `notes.md` is left alone)."""
    return FALLBACK_NAME if os.path.lexists(root / NAME) else NAME


def seed(root: Path, text: str) -> str:
    """Write the notes into the scratch copy at ROOT; returns the file's name there."""
    name = scratch_name(root)
    (root / name).write_text(text + ("\n" if text and not text.endswith("\n") else ""), encoding="utf-8")
    return name


def take(root: Path, name: str) -> str | None:
    """The agent's notes from the scratch copy, cleaned; the file is removed so the candidate
    never sees it. None when there is no readable regular file (deleted, a link, a folder)."""
    path = root / name
    raw: bytes | None = None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        fd = -1
    if fd >= 0:
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                raw = os.read(fd, MAX_BYTES + 1)
                if len(raw) > MAX_BYTES:  # cut at a line: never half a secret that redaction would miss
                    raw = raw[:MAX_BYTES]
                    raw = raw[: raw.rfind(b"\n") + 1]
        finally:
            os.close(fd)
    try:
        if path.is_dir() and not path.is_symlink():
            return None  # a folder of that name is the agent's mess: collected like any other
        path.unlink()
    except OSError:
        pass
    return clean(raw) if raw is not None else None
