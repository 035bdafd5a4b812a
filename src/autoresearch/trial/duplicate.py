"""No experiment measured twice: a candidate whose tree was already measured in this epoch reuses
that measurement instead of running.

The tree (git's hash of every file of the candidate) is the whole input of a run besides the
seed, so two commits with one tree measure the same program. Each committed attempt records its
tree (`details["tree"]`); a later candidate with that tree, in the same epoch (a harness change
starts a new one, and its metric is not comparable), gets a `duplicate` verdict pointing at the
earlier seq and costs no run.

What counts as measured: a keep or a discard with a metric (not a stale winner, which was never
compared with the best it would replace: the loop replays those), or a crash of the program
itself (an exit status, a missing or non-finite metric). Not reused: a crash that may come from
the machine (a timeout, a kill by a signal, an interrupted run) or from the proposer, and a
rejected attempt (never run).

The duplicate is never a keep. Its tree scored what it scored; the best has only improved
since (keeps only ever improve in an epoch), so a discard of the earlier measurement is a
discard now, and a keep that is no longer the best lost to a later keep. A duplicate of a crash
is a crash. Two slots that propose one tree at the same moment both run: neither is measured yet.
"""

from __future__ import annotations

import re

from autoresearch.journal.records import Experiment
from autoresearch.journal.store import Journal
from autoresearch.verdict import Verdict

DUPLICATE = "duplicate"
# crashes of the program itself, which its tree decides; not 137 (SIGKILL: the OOM killer, a
# neighbour's memory) nor a negative status (a signal)
_PROGRAM_CRASH = re.compile(r"^(?:exit-(?!137$)\d+|missing-metric|non-finite-metric)$")


def was_measured(exp: Experiment) -> bool:
    """Whether EXP's verdict says what its tree scores (see the module docstring)."""
    if exp.reason == DUPLICATE or exp.details.get("interrupted"):
        return False
    if exp.status in ("keep", "discard"):
        return exp.metric is not None and not exp.reason.startswith("stale")
    return exp.status == "crash" and bool(_PROGRAM_CRASH.match(exp.reason or ""))


def earlier_measurement(journal: Journal, tag: str, tree: str, seq: int) -> Experiment | None:
    """The first experiment of TAG's current epoch, before SEQ, that measured TREE."""
    for exp in journal.with_tree(tag, tree):
        if exp.seq < seq and was_measured(exp):
            return exp
    return None


def duplicate_verdict(exp: Experiment, earlier: Experiment) -> Verdict:
    """EXP takes EARLIER's measurement: its numbers, its log, no run of its own."""
    exp.metric, exp.metrics, exp.resource = earlier.metric, dict(earlier.metrics), earlier.resource
    exp.holdout, exp.run_seconds = earlier.holdout, 0.0
    exp.log_path, exp.log_tail = earlier.log_path, earlier.log_tail
    status = "crash" if earlier.status == "crash" else "discard"
    return Verdict(status, DUPLICATE, {"duplicate_of": earlier.seq, "duplicate_status": earlier.status,
                                       "duplicate_reason": earlier.reason})
