"""A drift-proof reference: the best's number is re-measured when the machine changed.

The best was measured once, perhaps on a quiet machine. When the evidence says the machine
changed (verdict.drift_suspected: the last k screened candidates all lost by far more than the
noise, as `noise` recorded it or as replicate runs show it (the baseline runs BASELINE_RUNS times
under a confirming policy); without either, every RECHECK_EVERY experiments), the best is run
REFERENCE_RUNS times again. Those runs are journaled (role `reference`), never experiments, and
their median becomes the best's reference: later candidates are compared with it (trial.begin).
Runs the harness saw taken under load (harness/load.py) are no reference (`calm_reference`).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from autoresearch import verdict as V
from autoresearch.harness.load import load_words, was_busy
from autoresearch.journal.records import Experiment
from autoresearch.trial.measure import journaled_run
from autoresearch.trial.session import Session
from autoresearch.verdict.flow import PhaseCallback
from autoresearch.verdict.stats import median

REFERENCE_RUNS = 3  # runs of the best when its reference is re-measured
RECHECK_EVERY = 20  # without a noise record, the reference is re-measured this often (experiments)


def calm_reference(values: list[float], busy: list[float], loads: list[str]) -> tuple[float | None, str]:
    """The reference a re-measurement makes, and what to say about it. VALUES: the runs the
    machine left alone; BUSY: the runs made under load (harness/load.py), LOADS their words.

    A run under load measures the neighbours as much as the commit, and a reference made of it
    moves the bar for every later candidate (a slower bar lets a null edit win). So the median
    of the calm runs becomes the reference only when they are at least two and the majority;
    otherwise the old reference stays, and the message says why."""
    if not busy:
        return (median(values) if values else None), ""
    said = f"{len(busy)} of {len(values) + len(busy)} runs were under load ({loads[-1]})"
    if len(values) >= 2 and len(values) > len(busy):
        return median(values), f"{said}: the reference is the median of the {len(values)} others"
    return None, f"{said}: not a reference, the old one stays"


class ReferenceWatch:
    """Follows the loop's finished experiments and re-measures the best when drift is suspected."""

    def __init__(self, session: Session, stop: threading.Event, on_phase: PhaseCallback,
                 on_message: Callable[[str], None]) -> None:
        self.session = session
        self.stop = stop
        self.on_phase = on_phase
        self.on_message = on_message
        self.recent: list[float] = []  # screened candidates' metrics since the reference was measured
        self.since_check = 0

    def after(self, exp: Experiment, tag: str, slot: int) -> None:
        """EXP finished; SLOT is a run folder no experiment uses (for the re-measurement)."""
        s = self.session
        if exp.status == "keep" or exp.is_baseline:
            self.recent, self.since_check = [], 0
            return
        if exp.details.get("reference_moved") is not None:  # a fresh run of the best beat its reference by far
            best = s.journal.best(tag)
            if best is not None:
                self.remeasure(tag, best.commit_sha, s.journal.reference(tag, best.commit_sha, best.metric), slot)
            return
        if exp.metric is None or exp.status != "discard" or exp.reason.startswith(("stale", "duplicate")):
            return
        self.recent.append(exp.metric)
        self.since_check += 1
        best = s.journal.best(tag)
        if best is None or best.metric is None:
            return
        noise = s.journal.latest_noise(tag)
        # the run-to-run sd: `noise`'s record, else what replicate runs tell (the baseline's own
        # runs under a confirming policy, confirmation and reference runs)
        sd = noise.std if noise else V.pooled_sd(s.journal.replicates(tag))
        reference = s.journal.reference(tag, best.commit_sha, best.metric) or best.metric
        if V.drift_suspected(self.recent, reference, sd, s.config.maximize,
                             since_check=self.since_check, every=0 if sd else RECHECK_EVERY):
            # With a noise sd only the drift rule applies (every=0); without one, only the schedule.
            self.remeasure(tag, best.commit_sha, reference, slot, "drift" if sd else "recheck")

    def remeasure(self, tag: str, commit: str, old: float | None, slot: int, why: str = "drift") -> None:
        """Run COMMIT REFERENCE_RUNS times and make their median its reference; WHY (drift or
        recheck) is journaled with it so the report can say what triggered it."""
        s = self.session
        self.on_phase("re-measuring", {"seq": 0, "slot": slot})
        values = []
        first = 0
        base = 20_000_000 + s.journal.count_runs(tag) * 7
        policy = s.config.verdict
        # a reference the verdict uses run by run (confirm = "reference") is measured in full
        count = policy.reference_runs if policy.confirm == "reference" else REFERENCE_RUNS
        busy: list[float] = []
        loads: list[str] = []
        for i in range(count):
            m, run_id = journaled_run(s, tag, commit, "reference", base + i, f"reference-{int(time.time())}-{i}",
                                      slot=slot, stop=self.stop)
            first = first or run_id
            if m.ok and m.metric is not None:
                if was_busy(m.flags):
                    busy.append(m.metric)
                    loads.append(load_words(m.flags))
                else:
                    values.append(m.metric)
        self.recent, self.since_check = [], 0
        value, said = calm_reference(values, busy, loads)
        if said:
            self.on_message(f"re-measuring the best: {said}")
        if value is not None:
            s.journal.set_reference(tag, commit, value, why, from_run=first)
            because = ("the last candidates all lost by far more than the noise" if why == "drift"
                       else f"scheduled re-check every {RECHECK_EVERY} experiments without a noise record")
            self.on_message(f"the best's reference was re-measured: {old if old is not None else '-'} -> {value:.6g} "
                            f"({len(values)} runs; {because})")
