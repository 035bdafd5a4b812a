"""The terminal view of a running loop, kept live: `LiveView` (rich, redrawn in place),
`PlainView` (one line per verdict, for logs, pipes and --quiet) and `watch` (the same view for a
loop running in another terminal, read from the journal). What the view shows: `view`.

Both views take the trial's phase callback (`verdict.flow.PhaseCallback`): `on_phase(phase, info)` with phases
"proposing", "guarding", "running" (info: seq, label, budget, started), "evaluating",
"confirming" and "done" (info["experiment"] is the finished Experiment).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from rich.console import Console, RenderableType
from rich.live import Live

from autoresearch.config.task import find_root, load_config
from autoresearch.journal.records import Experiment, fixed
from autoresearch.report.review import DONE
from autoresearch.report.view import (
    RECENT,
    ViewState,
    confirm_line,
    render_state,
    seed_from_session,
    state_from_journal,
    verdict_line,
)
from autoresearch.trial.session import Session


class _Events:
    """The phase bookkeeping shared by both views."""

    def __init__(self, session: Session | None = None, metric_name: str | None = None) -> None:
        self.state = ViewState()
        self.session = session
        self.lock = threading.Lock()
        if session is not None:
            try:
                seed_from_session(self.state, session)
            except Exception:  # noqa: BLE001 - a view must never stop a loop
                pass
        if metric_name:
            self.state.metric = metric_name

    def _describe(self, seq: int) -> str:
        if self.session is None:
            return ""
        try:
            exp = self.session.journal.get(seq)
        except Exception:  # noqa: BLE001 - e.g. called from another thread than the journal's
            return ""
        return exp.description if exp and exp.description != "(proposing)" else ""

    def update(self, phase: str, info: dict[str, Any]) -> Experiment | None:
        s = self.state
        with self.lock:
            if phase == "done":
                exp = info.get("experiment")
                s.phase, s.label, s.phase_started, s.confirm = "idle", "", None, {}
                if isinstance(exp, Experiment):
                    if exp.tag and not s.tag:
                        s.tag = exp.tag
                    s.record(exp)
                    s.finished += 1
                    return exp
                return None
            seq = info.get("seq")
            if seq is not None and seq != s.seq:
                s.seq, s.description, s.confirm = seq, "", {}
            if phase == "confirming" and "run" in info:
                s.confirm = dict(info)  # one confirmation run's progress, for the bar and the plain line
                return None
            s.phase = phase
            s.label = str(info.get("label", "")) if phase in ("running", "evaluating") else ""
            s.phase_started = float(info.get("started") or time.time())
            if info.get("budget"):
                s.budget = float(info["budget"])
            if info.get("agent"):
                s.agent = str(info["agent"])
            if info.get("description"):
                s.description = str(info["description"])
            elif not s.description and phase != "proposing" and seq:
                s.description = self._describe(int(seq))
        return None


class LiveView:
    """A rich live panel for `autoresearch run` on a terminal. Use as a context manager.

    Every argument is optional: with a session it starts from the journal (tag, best, last
    verdicts) and names the metric; without one it learns them from the experiments it sees."""

    def __init__(self, session: Session | None = None, *, metric_name: str | None = None,
                 console: Console | None = None, refresh_per_second: float = 4.0) -> None:
        self.events = _Events(session, metric_name)
        self.console = console or Console()
        self.refresh_per_second = refresh_per_second
        self._live: Live | None = None

    @property
    def state(self) -> ViewState:
        return self.events.state

    def __rich__(self) -> RenderableType:
        with self.events.lock:
            return render_state(self.state)

    def __enter__(self) -> LiveView:
        self._live = Live(self, console=self.console, refresh_per_second=self.refresh_per_second,
                          transient=False, redirect_stdout=True, redirect_stderr=True)
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def on_phase(self, phase: str, info: dict) -> None:
        self.events.update(phase, info)
        if self._live is not None:
            self._live.refresh()


class PlainView:
    """One line per verdict on STREAM (stdout by default): for pipes, log files and --quiet."""

    def __init__(self, session: Session | None = None, *, metric_name: str | None = None,
                 stream: IO[str] | None = None) -> None:
        self.events = _Events(session, metric_name)
        self.stream = stream

    @property
    def state(self) -> ViewState:
        return self.events.state

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def on_phase(self, phase: str, info: dict) -> None:
        exp = self.events.update(phase, info)
        if phase == "confirming" and "run" in info:  # a line per confirmation run: a long decision is seen
            stream = self.stream or sys.stdout
            stream.write(f"{time.strftime('%H:%M:%S')} seq {info.get('seq')} {confirm_line(info)}\n")
            stream.flush()
        if exp is not None:
            stream = self.stream or sys.stdout
            stream.write(verdict_line(exp, self.state.metric, self.state.best, self.state.maximize) + "\n")
            stream.flush()


# -- watch: the view of a loop in another process -----------------------------------------------

def watch(session_root: Path | str, interval: float = 2.0, *, once: bool = False, console: Console | None = None,
          plain: bool | None = None, recent: int = RECENT) -> None:
    """Show the live view of the loop running in SESSION_ROOT, refreshed from its journal.

    On a terminal the panel is redrawn every INTERVAL seconds; otherwise (or with plain=True)
    one line is printed per verdict and per phase change. ONCE shows the current state and
    returns. Stops on Ctrl-C."""
    console = console or Console()
    plain = (not console.is_terminal) if plain is None else plain
    with Session(load_config(find_root(session_root))) as session:
        if not plain:
            if once:
                console.print(render_state(state_from_journal(session, recent)))
                return
            try:
                with Live(render_state(state_from_journal(session, recent)), console=console,
                          refresh_per_second=4, transient=False) as live:
                    while True:
                        time.sleep(interval)
                        live.update(render_state(state_from_journal(session, recent)))
            except KeyboardInterrupt:
                return
            return
        _watch_plain(session, interval, once, console, recent)


def _watch_plain(session: Session, interval: float, once: bool, console: Console, recent: int) -> None:
    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    state = state_from_journal(session, recent)
    if state.best is not None:
        say(f"autoresearch/{state.tag}: best {state.metric} {fixed(state.best)} (seq {state.best_seq}); "
            + ", ".join(f"{k} {v}" for k, v in state.counts.items()))
    else:
        say(f"autoresearch/{state.tag or '-'}: no best yet")
    last_seq = 0
    for e in state.recent:
        say(verdict_line(e, state.metric, maximize=state.maximize))
        last_seq = max(last_seq, e.seq)
    last_phase: tuple[Any, ...] = ()
    try:
        while True:
            if state.seq is not None and state.phase != "idle":
                key = (state.seq, state.phase, state.label)
                if key != last_phase:
                    what = f": {state.description}" if state.description else ""
                    label = f" ({state.label})" if state.label and state.label != "run" else ""
                    say(f"{time.strftime('%H:%M:%S')} seq {state.seq} {state.phase}{label}{what}")
                    last_phase = key
            if once:
                return
            time.sleep(interval)
            state = state_from_journal(session, recent)
            tag = state.tag
            new = [e for e in session.journal.experiments(tag) if e.seq > last_seq and e.status in DONE] if tag else []
            for e in new:
                say(verdict_line(e, state.metric, state.best, state.maximize))
                last_seq = max(last_seq, e.seq)
    except KeyboardInterrupt:
        return


__all__ = ["LiveView", "PlainView", "watch"]
