"""Last words: written on a disk with no byte left, read back once, never more than a cause."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autoresearch.journal import last_words

FILL_AND_LEAVE = r"""
import os, sys
from pathlib import Path
from autoresearch.journal import last_words
state = Path(sys.argv[1])
last_words.reserve(state)
try:  # every byte the small disk has left goes to a ballast file
    with open(state.parent / "ballast", "wb") as fh:
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()
except OSError:
    pass
try:
    (state / "new-file").write_text("x" * 8192)
    print("the disk was not full")
except OSError:
    pass
print("left" if last_words.leave(state, "disk-full", "the disk holding /t is full") else "not left")
print(last_words.read(state))
"""


def test_words_are_left_on_a_disk_with_no_byte_left(tmp_path: Path) -> None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.skip("bubblewrap is not installed")
    disk = tmp_path / "small"
    disk.mkdir()
    script = tmp_path / "fill.py"
    script.write_text(FILL_AND_LEAVE)
    cmd = [bwrap, "--dev-bind", "/", "/", "--size", str(1 << 20), "--tmpfs", str(disk),
           "sh", "-c", f'mkdir "{disk}/state" && exec "{sys.executable}" "{script}" "{disk}/state"']
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ}, timeout=60)
    if proc.returncode != 0 and "tmpfs" in proc.stderr:
        pytest.skip("bubblewrap cannot mount a size-limited tmpfs here")
    assert proc.returncode == 0, proc.stderr
    assert "the disk was not full" not in proc.stdout
    lines = proc.stdout.splitlines()
    assert lines[0] == "left", proc.stdout
    assert "cause='disk-full'" in lines[1] and "is full" in lines[1], proc.stdout


def test_words_read_once_and_garbage_is_no_words(tmp_path: Path) -> None:
    assert last_words.read(tmp_path) is None  # no file
    assert not last_words.leave(tmp_path, "disk-full", "x"), "leave never creates the file: no room is assumed"
    last_words.reserve(tmp_path)
    assert (tmp_path / last_words.NAME).stat().st_size == last_words.SIZE
    assert last_words.read(tmp_path) is None  # blank
    assert last_words.leave(tmp_path, "disk-full", "é\n" * 5000)  # escapes longer than the page: shortened
    assert (tmp_path / last_words.NAME).stat().st_size == last_words.SIZE, "the file never grows"
    words = last_words.read(tmp_path)
    assert words is not None and words.pid == os.getpid() and words.cause == "disk-full"
    last_words.clear(tmp_path)
    assert last_words.read(tmp_path) is None
    (tmp_path / last_words.NAME).write_bytes(b"{not json" + b" " * 100)
    assert last_words.read(tmp_path) is None


def test_a_planted_link_is_never_written_through(tmp_path: Path) -> None:
    """Whoever can write the state folder plants last-words as a link to a file it wants
    overwritten; reserve replaces the link, leave and clear refuse it."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n" * 1000)
    before = victim.read_bytes()
    state = tmp_path / "state"
    state.mkdir()
    (state / last_words.NAME).symlink_to(victim)
    assert not last_words.leave(state, "disk-full", "x")
    last_words.clear(state)
    assert last_words.read(state) is None
    last_words.reserve(state)
    assert victim.read_bytes() == before
    assert not (state / last_words.NAME).is_symlink() and (state / last_words.NAME).stat().st_size == last_words.SIZE
