"""The best's reference re-measurements, as the report shows them.

A re-measurement (the drift rule in trial/reference.py, or `autoresearch noise`) runs the
best again and makes the median of those runs the bar later candidates must beat. It is not an
experiment: it has no seq, changes no code and never enters a count. The journal keeps the
events (`Journal.references`: commit, value, why, time) apart from their runs (runs table, seq
NULL, role `reference` or `noise`); this module joins the two with the experiments, so the
chart and the table can place each event after the experiment that preceded it and say what
the bar was before and after. Without that, a run whose candidates suddenly all lose (a busier
machine) or whose keep sits above the baseline's number reads as a mystery.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from dataclasses import dataclass, field
from typing import Any

from autoresearch.journal.records import Experiment
from autoresearch.journal.store import Journal

# Which runs-table role holds each kind of event's runs.
RUN_ROLE = {"drift": "reference", "recheck": "reference", "noise": "noise"}
# What each `why` means, in the words the report uses.
WHY = {
    "drift": "drift suspected: the last candidates all lost by far more than the recorded noise",
    "recheck": "scheduled re-check (no noise record to judge drift by)",
    "noise": "`autoresearch noise` re-measured the best",
}


@dataclass(frozen=True)
class ReferenceEvent:
    """One re-measurement of the best: its runs' median replaced OLD as the bar."""

    at: float
    after_seq: int | None  # the last experiment finished before it; None: before any
    commit: str
    old: float | None  # the bar before: the previous re-measurement of this commit, else its own run
    new: float
    why: str
    runs: list[float | None] = field(default_factory=list)  # each run's metric; None: it crashed

    def to_json(self) -> dict[str, Any]:
        """The compact shape the page's script reads (see assets/report.js, drawRefs)."""
        return {"a": self.after_seq, "t": self.at, "c": self.commit, "o": _finite(self.old),
                "v": _finite(self.new), "w": self.why, "rn": [_finite(v) for v in self.runs]}


def _finite(value: float | None) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _after_seq(experiments: list[Experiment], at: float) -> int | None:
    """The highest seq that had finished by AT: where the event sits on the seq axis."""
    done = [e.seq for e in experiments if e.finished_at is not None and e.finished_at <= at]
    return max(done) if done else None


def _own_metric(experiments: list[Experiment], commit: str) -> float | None:
    """The best's single measurement as an experiment: the bar before its first re-measurement."""
    for e in reversed(experiments):
        if e.commit_sha == commit and e.status == "keep" and e.metric is not None:
            return e.metric
    return None


def reference_events(journal: Journal, tag: str, experiments: list[Experiment]) -> list[ReferenceEvent]:
    """Every re-measurement of TAG's best, oldest first, with its place, old bar and runs.

    An event's runs are those of its role and commit journaled after the previous event and no
    later than it (the code paths write the runs first, then the event)."""
    raw = sorted(journal.references(tag), key=lambda ev: float(ev.get("at") or 0.0))
    runs = [r for r in journal.runs() if r["tag"] == tag and r["seq"] is None]
    events: list[ReferenceEvent] = []
    last: dict[str, float] = {}  # commit -> its latest re-measured value
    previous_at = float("-inf")
    for ev in raw:
        commit, at, why = str(ev.get("commit", "")), float(ev.get("at") or 0.0), str(ev.get("why", ""))
        role = RUN_ROLE.get(why)
        mine = [r["metric"] if r["status"] in ("ok", "busy") else None for r in runs
                if r["commit_sha"] == commit and previous_at < r["created_at"] <= at
                and (role is None or r["role"] == role)]
        old = last.get(commit, _own_metric(experiments, commit))
        events.append(ReferenceEvent(at=at, after_seq=_after_seq(experiments, at), commit=commit, old=old,
                                     new=float(ev["value"]), why=why, runs=mine))
        last[commit] = float(ev["value"])
        previous_at = at
    return events


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.6g}"


def references_html(events: list[ReferenceEvent]) -> str:
    """The report's section listing the events; nothing at all when there are none."""
    if not events:
        return ""
    rows = []
    for ev in events:
        when = dt.datetime.fromtimestamp(ev.at).strftime("%Y-%m-%d %H:%M:%S") if ev.at else "–"
        after = "before any experiment" if ev.after_seq is None else f"after seq {ev.after_seq}"
        change = "" if ev.old is None else f" ({ev.new - ev.old:+.6g})"
        runs = ", ".join("crash" if v is None else f"{v:.6g}" for v in ev.runs) or "–"
        cells = [after, when, ev.commit[:7], f"{_num(ev.old)} → {_num(ev.new)}{change}",
                 WHY.get(ev.why, ev.why), f"{len(ev.runs)}: {runs}"]
        rows.append(f'<tr data-after="{"" if ev.after_seq is None else ev.after_seq}">'
                    + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("when", "time", "commit", "reference (old → new)", "why", "runs"))
    return ('<section id="references"><h2>Reference re-measurements</h2>'
            '<p class="muted">The best was run again and its median became the bar later candidates are '
            "compared with. These runs are not experiments: they have no seq and are in no count.</p>"
            f'<table class="refs"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></section>')


__all__ = ["ReferenceEvent", "reference_events", "references_html"]
