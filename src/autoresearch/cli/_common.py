"""What every command shares: consoles, the one error mapping, opening the task.

The library raises `AutoresearchError` (errors.py) for everything a user can cause; `guarded`
turns it into one red line and its exit code. Nothing narrower is caught here, so a new error
class is handled the moment it subclasses the root.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any, Callable

from autoresearch.config.schema import STATE_DIR
from autoresearch.config.task import find_root, load_config
from autoresearch.errors import (  # noqa: F401
    EXIT_CONFIG,
    EXIT_CRASH,
    EXIT_INTERRUPTED,
    EXIT_PROBLEM,
    EXIT_REJECTED,
    AutoresearchError,
    disk_full_message,
    is_disk_full,
)
from autoresearch.harness.output import tail_lines
from autoresearch.harness.sandbox import resolve_kind
from autoresearch.journal import last_words
from autoresearch.journal.records import Experiment, fixed  # noqa: F401 - the commands' number format
from autoresearch.journal.schema import journal_problem
from autoresearch.proposers.guard_env import refuse_inside_proposal  # noqa: F401 - the commands' guard
from autoresearch.report.gains import estimate_words, keep_estimate
from autoresearch.trial.session import Session


class _Consoles:
    """rich is imported on first use: `experiment` and `status` never pay for it."""

    @functools.cached_property
    def out(self) -> Any:
        from rich.console import Console

        return Console(highlight=False)

    @functools.cached_property
    def err(self) -> Any:
        from rich.console import Console

        return Console(stderr=True, highlight=False)


consoles = _Consoles()

COLORS = {"red": 31, "green": 32, "yellow": 33}


def style(text: str, fg: str, stream: Any = None) -> str:
    """TEXT in colour when STREAM (stderr by default) is a terminal and NO_COLOR is unset.
    Not click's: the native `experiment` prints through here without importing click."""
    stream = sys.stderr if stream is None else stream
    tty = getattr(stream, "isatty", lambda: False)()
    if not tty or os.environ.get("NO_COLOR") or fg not in COLORS:
        return text
    return f"\033[{COLORS[fg]}m{text}\033[0m"


def echo(message: str, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    try:
        stream.write(message + "\n")
        stream.flush()
    except BrokenPipeError:  # `autoresearch experiment ... | head -1`: the reader left, nothing to say
        pass


def fail(message: str, code: int = EXIT_PROBLEM) -> None:
    echo(style("error:", "red") + f" {message}", err=True)
    sys.exit(code)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The library's user-facing errors become a message and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AutoresearchError as exc:
            if is_disk_full(exc, "."):
                _last_words(str(exc))
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            echo("interrupted: what ran is recorded and the tree is back at best", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except sqlite3.DatabaseError as exc:  # mid-command: a full disk, or a journal broken meanwhile
            message = journal_problem(Path(".autoresearch/journal.db"), exc)
            if is_disk_full(exc, "."):
                _last_words(message)
            fail(message)
        except OSError as exc:
            if is_disk_full(exc, "."):  # a full disk is the machine's state, not a bug
                message = disk_full_message(Path.cwd(), exc)
                _last_words(message)
                fail(message)
            raise

    return wrapper


def _last_words(message: str) -> None:
    """Dying of a full disk: say so where the next command's repair reads it (the journal
    cannot take it now), so the experiment this command leaves running is closed with its cause."""
    last_words.leave(find_root(".") / STATE_DIR, "disk-full", message)


def open_session(path: str = ".") -> Session:
    return Session(load_config(find_root(path)))


def warn_unsandboxed(session: Session) -> None:
    """Say once per command when runs will not be sandboxed (bubblewrap missing or unusable)."""
    _, hint = resolve_kind(session.config.sandbox.kind)
    if hint:
        echo(style("warning:", "yellow") + f" {hint}", err=True)


def fmt(value: float | None) -> str:
    return "-" if value is None else fixed(value)


def experiment_lines(exp: Experiment, metric_name: str, maximize: bool | None = None) -> tuple[str, ...]:
    """The two short lines an agent reads after an experiment; after a crash or a rejection a
    third, the log's last meaningful line (a missing file, an exception), so the cause is on
    screen beside the log's path."""
    delta = exp.delta()
    if exp.status in ("keep", "discard") and exp.metric is not None:
        against = "" if delta is None else f" ({_num(delta, '+')} vs best {_num(exp.best_before)})"
        first = f"{exp.status}: {metric_name} {_num(exp.metric)}{against}"
    else:
        first = f"{exp.status}: {exp.reason}"
    reason = f" [{exp.reason}]" if exp.status in ("keep", "discard") and exp.reason not in ("improved", "not-better", "") else ""
    first += f"{reason} | seq {exp.seq} commit {exp.short_commit or '-'}"
    est = keep_estimate(exp, maximize) if exp.status == "keep" and maximize is not None else None
    if est is not None and est.how != "screen":  # the gain its confirmation measured (the bar may be stale)
        first += f" | {estimate_words(est)}"
    last = last_meaningful_line(exp) if exp.status in ("crash", "rejected") else ""
    return (first, f"log: {exp.log_path or '-'}", *([f"last line of the log: {last}"] if last else []))


def last_meaningful_line(exp: Experiment) -> str:
    """The last line of EXP's log that says something: not blank, not the harness's echo of the
    command (`$ ...`), not a rule of dashes."""
    text = exp.log_tail or (tail_lines(Path(exp.log_path)) if exp.log_path else "")
    for line in reversed(text.splitlines()):
        stripped = line.strip()
        if stripped and not stripped.startswith("$ ") and any(c.isalnum() for c in stripped):
            return stripped[:300]
    return ""


def _num(value: float | None, sign: str = "") -> str:
    """Six decimals, as the seed prints; exponent form where that would print 300 digits."""
    if value is None:
        return "-"
    return fixed(value, 6, sign)


def exit_code_for(exp: Experiment) -> int:
    return {"crash": EXIT_CRASH, "rejected": EXIT_REJECTED}.get(exp.status, 0)


def print_experiment(exp: Experiment, metric_name: str, as_json: bool, maximize: bool | None = None) -> None:
    if as_json:
        echo(json.dumps(exp.to_json(), default=str))
    else:
        for line in experiment_lines(exp, metric_name, maximize):
            echo(line)
