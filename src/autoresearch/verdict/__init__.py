"""Verdicts: the pure statistics and the decision flow that asks for runs (`flow`).

The statistics are numbers in, a decision out: `stats` (the screen, means and spreads),
`paired` (ABBA confirmation and its tests), `reference` (the candidate against the best's
reference runs), `noise` (the measured spread, its advice, drift), `estimate` (the gain a decision measured,
with its interval). `flow` is the one decision
procedure of an experiment, written as a generator: it yields the runs it needs
(`MeasureRequest`) and receives their measurements, so the same code decides for a native
experiment that runs in-process and for the loop whose runs happen on an executor.

May import: journal, config and the bottom modules (the records and the config it decides
over); never trial, harness or anything above. `stats`, `paired`, `reference` and `noise` are pure.
"""

# The pure functions are this package's vocabulary: everything public in the four modules.
from autoresearch.verdict.estimate import *  # noqa: F401,F403
from autoresearch.verdict.estimate import Estimate  # noqa: F401
from autoresearch.verdict.flow import DecisionFlow, Measurement, MeasureRequest, PhaseCallback, decide_flow  # noqa: F401
from autoresearch.verdict.noise import *  # noqa: F401,F403
from autoresearch.verdict.noise import Spread  # noqa: F401
from autoresearch.verdict.paired import *  # noqa: F401,F403
from autoresearch.verdict.paired import MIN_PAIRS, PairedOutcome  # noqa: F401
from autoresearch.verdict.reference import *  # noqa: F401,F403
from autoresearch.verdict.stats import *  # noqa: F401,F403
from autoresearch.verdict.stats import Verdict  # noqa: F401
