"""What a run prints: its log file, capped to its tail, and the `name: value` metric lines read
from it as they come; and the tail of a finished log for a record or a message.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

METRIC_LINE = re.compile(rb"^([A-Za-z_][\w.\-]*):[ \t]*(\S+)[ \t]*\r?$")
TAIL_LINES = 50


class CappedLog:
    """A log file that keeps its tail once it grows past max_bytes.

    A write that fails (a full disk) must not stop the run: the reader thread that calls
    `write` is what drains the run's pipe, so an exception there would leave the run blocked
    on a full pipe until the hard timeout. Instead the log gives its space back (it keeps only
    a short tail and a line that says why), takes no more output, and `problem` says what
    happened; the output is still read and parsed."""

    SHORT_TAIL = 16 * 1024  # what is kept of a log that could not be written

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max(4096, max_bytes)
        self.fh = open(path, "ab")
        self.size = self.fh.tell()
        self.cut = 0
        self.problem = ""

    def write(self, data: bytes) -> None:
        if self.problem:
            return
        try:
            self.fh.write(data)
            self.size += len(data)
            if self.size > self.max_bytes:
                self._keep_tail()
        except OSError as exc:
            self._give_up(exc)

    def _keep_tail(self) -> None:
        self.fh.flush()
        keep = self.max_bytes // 2
        with open(self.path, "rb") as fh:
            fh.seek(-keep, os.SEEK_END)
            tail = fh.read()
        self.cut += self.size - keep
        marker = f"[autoresearch: {self.cut} earlier bytes of this log were cut]\n".encode()
        self.fh.close()
        with open(self.path, "wb") as fh:
            fh.write(marker + tail)
        self.fh = open(self.path, "ab")
        self.size = len(marker) + len(tail)

    def _give_up(self, exc: OSError) -> None:
        self.problem = f"the log could not be written ({exc}); later output was not kept"
        try:
            self.fh.close()  # may fail again flushing what it holds: that part is lost anyway
        except OSError:
            pass
        try:
            with open(self.path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - self.SHORT_TAIL))
                tail = fh.read()
            with open(self.path, "wb") as fh:  # truncating first gives the space back
                fh.write(b"[autoresearch: earlier output was cut to free space]\n" + tail
                         + f"\n[autoresearch: {self.problem}]\n".encode())
        except OSError:
            pass

    def close(self) -> None:
        if self.problem:
            return
        try:
            self.fh.flush()
            self.fh.close()
        except OSError as exc:
            self._give_up(exc)


MAX_NAMES = 1000  # distinct metric names kept from one run: output size never grows memory


class MetricParser:
    """`name: value` lines, fed one at a time; the last value of a name wins, non-numeric
    values go to texts. Memory is bounded by MAX_NAMES, whatever the run prints: past it, the
    name printed longest ago is forgotten, so the final lines (the metric) always count. A line is read
    after its last carriage return (progress bars redraw a line) and without leading blanks."""

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.texts: dict[str, str] = {}

    def feed(self, raw: bytes) -> None:
        if len(raw) > 4096 or b":" not in raw:
            return
        line = raw.rstrip(b"\r\n").rsplit(b"\r", 1)[-1].strip()
        match = METRIC_LINE.match(line)
        if not match:
            return
        name = match.group(1).decode()
        value = match.group(2).decode("utf-8", "replace")
        self.metrics.pop(name, None)  # re-inserted at the end: the names printed last are kept
        self.texts.pop(name, None)
        try:
            self.metrics[name] = float(value)
        except ValueError:
            self.texts[name] = value
        if len(self.metrics) + len(self.texts) > MAX_NAMES:  # forget the name printed longest ago
            oldest = self.metrics if self.metrics else self.texts
            oldest.pop(next(iter(oldest)))


def parse_metrics(lines: list[bytes]) -> tuple[dict[str, float], dict[str, str]]:
    """The same over a list of lines."""
    parser = MetricParser()
    for raw in lines:
        parser.feed(raw)
    return parser.metrics, parser.texts


def tail_lines(path: Path | None, n: int = TAIL_LINES, max_bytes: int = 64 * 1024) -> str:
    """The last N lines of a log, decoded leniently (output need not be UTF-8)."""
    if path is None or not path.exists():
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - max_bytes))
        data = fh.read()
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-n:])
