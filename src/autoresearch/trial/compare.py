"""Side by side: `autoresearch compare`, pairs of runs of two commits and how much better the
second is, with its interval.

A session's gain stated as "best minus baseline" subtracts two numbers measured hours apart, and
a keep's stated gain leans optimistic (its confirmation stopped when the evidence looked good).
Runs of both commits made now, in ABBA order (A B B A A B ...: a machine that drifts during the
comparison hurts and helps both sides alike), with the same seed inside each pair, have neither
problem: the mean of the pair differences, with its t interval, is the session's gain the
report, `review` and `status` lead with (report/gains.py: stated_gain). The runs are journaled
(role `compare`), never experiments.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from autoresearch import verdict as V
from autoresearch.errors import StateError
from autoresearch.harness.load import was_busy
from autoresearch.trial.measure import journaled_run
from autoresearch.trial.session import Session

# on_run(done, total, side, metric, estimate so far or None): after each run, for a line per run
RunCallback = Callable[[int, int, str, float, "V.Estimate | None"], None]


def _nobody(done: int, total: int, side: str, metric: float, est: V.Estimate | None) -> None:
    pass


def resolve(session: Session, tag: str, what: str) -> tuple[str, str]:
    """(commit, label) of WHAT: "baseline" (the tag's first kept baseline), "best", an
    experiment's seq, or any git revision. A StateError names what could not be found."""
    journal = session.journal
    if what == "best":
        return session.best_commit(tag), "best"
    if what == "baseline":
        base = next((e for e in journal.experiments(tag) if e.is_baseline and e.status == "keep" and e.commit_sha), None)
        if base is None:
            raise StateError(f"autoresearch/{tag} has no baseline yet: `autoresearch baseline` first")
        return base.commit_sha, f"baseline (seq {base.seq})"
    if what.isdigit():
        exp = journal.get(int(what))
        if exp is None or not exp.commit_sha:
            raise StateError(f"no experiment {what} with a commit in the journal (see `autoresearch results`)")
        return exp.commit_sha, f"seq {exp.seq}"
    commit = session.ws.rev(what)
    if commit is None:
        raise StateError(f"{what!r} is neither baseline, best, an experiment's seq nor a git revision")
    return commit, what


def compare(session: Session, tag: str, a: str, b: str, pairs: int, *, on_run: RunCallback = _nobody,
            stop: threading.Event | None = None) -> dict[str, Any]:
    """Run commits A and B in PAIRS pairs (ABBA order, one seed per pair), journal the record
    and return it: the commits, their runs, and the estimate of how much better B is than A."""
    if pairs < 2:
        raise StateError("compare needs at least 2 pairs (-n 2) for an interval")
    maximize = session.config.maximize
    runs: dict[str, list[float]] = {"a": [], "b": []}
    base = 30_000_000 + session.journal.count_runs(tag) * 7
    roles = V.abba_roles(2 * pairs)
    stamp = int(time.time())
    busy = 0
    for i, role in enumerate(roles):
        side = "a" if role == "best" else "b"
        pair = len(runs[side])
        m, _ = journaled_run(session, tag, a if side == "a" else b, "compare", base + pair,
                             f"compare-{stamp}-{i}-{side}", stop=stop)
        if not m.ok or m.metric is None:
            raise StateError(f"compare: run {i + 1} ({side.upper()}) failed ({m.reason}); see {m.log_path}")
        runs[side].append(m.metric)
        busy += was_busy(m.flags)
        done = min(len(runs["a"]), len(runs["b"]))
        est = V.paired_estimate(runs["a"][:done], runs["b"][:done], maximize, how="compare") if done else None
        on_run(i + 1, len(roles), side, m.metric, est)
    est = V.paired_estimate(runs["a"], runs["b"], maximize, how="compare")
    record = {"a": a, "b": b, "pairs": pairs, "a_runs": runs["a"], "b_runs": runs["b"], "estimate": est.to_json(),
              "busy_runs": busy}
    session.journal.add_comparison(tag, record)
    return record


__all__ = ["compare", "resolve"]
