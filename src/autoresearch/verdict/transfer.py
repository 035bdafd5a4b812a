"""Does a gain carry over? The paired evidence of a change re-measured at another configuration.

`autoresearch transfer` runs each commit of a chain (the baseline and the best, or every keep
in order) once per round, in the order the rounds alternate (forward, then backward: A B B A for
two commits, as in paired confirmation), with one seed per round shared by every commit (common
random numbers: the pair's difference is the change's, not the seed's). Each step of the chain
is then judged from its paired differences with the sequential t-test's Bayes factor
(paired.sequential_bf), both ways: evidence of a gain, evidence of a loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autoresearch.verdict.paired import SEQ_FUTILITY, sequential_bf
from autoresearch.verdict.stats import fmean, stdev

# what the verdicts mean, for the table's legend
VERDICTS = {
    "carries": "a real gain here too",
    "reverses": "a real loss here",
    "no gain": "evidence of no gain of the design size (2 run sds)",
    "unclear": "not enough runs to tell (more with -n)",
    "crashed": "no pair of successful runs",
}


@dataclass(frozen=True)
class Carried:
    verdict: str  # a key of VERDICTS
    pairs: int
    gain: float | None  # the mean paired improvement (positive: better), in the metric's units
    se: float | None  # its standard error (None below two pairs)
    bf: float  # the Bayes factor for a gain (>= 1/alpha: carries)


def carried(diffs: list[float], confidence: float) -> Carried:
    """The verdict on one change from its paired improvements DIFFS at the new configuration."""
    n = len(diffs)
    if n == 0:
        return Carried("crashed", 0, None, None, 1.0)
    gain = fmean(diffs)
    se = stdev(diffs) / math.sqrt(n) if n > 1 else None
    alpha = 1.0 - confidence
    up, down = sequential_bf(diffs), sequential_bf([-d for d in diffs])
    if up >= 1.0 / alpha:
        verdict = "carries"
    elif down >= 1.0 / alpha:
        verdict = "reverses"
    elif up <= SEQ_FUTILITY:
        verdict = "no gain"
    else:
        verdict = "unclear"
    return Carried(verdict, n, gain, se, up)


def round_order(commits: int, rounds: int) -> list[list[int]]:
    """The order of the runs: round r runs commits 0..k-1 forward when r is even, backward when
    odd, so a machine that drifts slower favours no commit (A B B A A B for two)."""
    forward = list(range(commits))
    return [forward if r % 2 == 0 else forward[::-1] for r in range(rounds)]
