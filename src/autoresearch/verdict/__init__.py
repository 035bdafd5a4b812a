"""Verdicts: the pure statistics (`stats`) and the decision flow that asks for runs (`flow`).

`stats` is numbers in, a decision out. `flow` is the one decision procedure of an experiment,
written as a generator: it yields the runs it needs (`MeasureRequest`) and receives their
measurements, so the same code decides for a native experiment that runs in-process and for
the loop whose runs happen on an executor.
"""

from autoresearch.verdict.flow import DecisionFlow, Measurement, MeasureRequest, decide_flow  # noqa: F401
from autoresearch.verdict.stats import *  # noqa: F401,F403 - the pure functions are this package's vocabulary
from autoresearch.verdict.stats import MIN_PAIRS, PairedOutcome, Spread, Verdict  # noqa: F401
