"""The quickstart's clock: a demo that ends in a fixed time, whatever it finds, and says what it
is doing at least once a minute where no live view does (a pipe, a log file).

Two deadlines, counted from the command's start (setup included). No new experiment starts
(the loop's own stop note, as `autoresearch stop` leaves it) past `soft_s`, or earlier once the
time left before `hard_s` is under RUNS_LEFT runs as long as the runs so far took: a run of
tinylm takes 20 s on an idle 2-core machine and minutes on a busy one. Past `hard_s` the
experiment in flight is interrupted (`stop --now`), recorded as interrupted, and reported as
undecided. Meanwhile a heartbeat line names the phase the loop is in."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from autoresearch.loop.policy import request_stop
from autoresearch.trial.session import Session

BEAT_S = 50.0  # a line at least this often in a pipe (under the minute the quickstart promises)
RUNS_LEFT = 1.5  # no new experiment when fewer runs than this fit before the hard deadline


def clock_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Pace:
    """Watches the time while a loop runs in this process. `tap` is an on_phase listener that
    remembers where the loop is; `beat` says whether to print the heartbeat."""

    def __init__(self, session: Session, started: float, soft_s: float, hard_s: float, *,
                 echo: Callable[[str], None], beat: bool) -> None:
        self.session = session
        self.started = started
        self.soft_s, self.hard_s = soft_s, hard_s
        self.echo = echo
        self.beat = beat
        self.phase = "starting"
        self.detail = ""
        self.runs = 0
        self.first_run_at: float | None = None
        self.last_line = time.monotonic()
        self.soft_sent = self.hard_sent = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="quickstart-pace", daemon=True)

    def tap(self, phase: str, info: dict[str, Any]) -> None:
        self.phase = phase
        seq = info.get("seq")
        label = info.get("label") or ""
        if phase == "running":
            self.runs += 1
            if self.first_run_at is None:
                self.first_run_at = time.monotonic()
        self.detail = f"experiment {seq}" + (f", {label}" if label else "") if seq else ""
        if phase == "done":  # the plain view printed the verdict line
            self.last_line = time.monotonic()

    def __enter__(self) -> Pace:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def run_seconds(self, now: float) -> float | None:
        """The mean wall time of the runs finished so far (None before the first has)."""
        if self.first_run_at is None or self.runs < 2:
            return None
        return (now - self.first_run_at) / (self.runs - 1)

    def _watch(self) -> None:
        while not self._done.wait(1.0):
            now = time.monotonic()
            elapsed = now - self.started
            per_run = self.run_seconds(now)
            short = per_run is not None and self.hard_s - elapsed < RUNS_LEFT * per_run
            if not self.soft_sent and (elapsed >= self.soft_s or short):
                self.soft_sent = True
                if request_stop(self.session, False):
                    self.echo(f"quickstart: {clock_text(elapsed)} elapsed: no new experiment starts; "
                              "the one in flight finishes")
                    self.last_line = now
            if not self.hard_sent and elapsed >= self.hard_s:
                self.hard_sent = True
                if request_stop(self.session, True):
                    self.echo(f"quickstart: {clock_text(elapsed)} elapsed: stopping the experiment in flight "
                              "(reported as undecided)")
                    self.last_line = now
            if self.beat and now - self.last_line >= BEAT_S:
                where = f"{self.phase}" + (f" ({self.detail})" if self.detail else "")
                self.echo(f"quickstart: {clock_text(elapsed)} elapsed, {self.runs} runs so far; now {where}")
                self.last_line = now
