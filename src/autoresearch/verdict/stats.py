"""Verdicts: keep, discard, crash or rejected, and the noise policy behind a keep.

Everything here is pure: numbers in, a decision out. The experiment runs whatever extra runs a
policy asks for (repeats, paired confirmation) and feeds the results back.

Sign convention: an *improvement* is positive when the candidate is better, whatever the goal.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass, field
from typing import Literal

from ..task import VerdictSection, parse_constraint

Decision = Literal["better", "not-better", "continue"]
MIN_PAIRS = 5  # no paired decision to keep before this many pairs: tiny samples fool every test


@dataclass
class Verdict:
    status: str  # keep | discard | crash | rejected
    reason: str = ""
    details: dict = field(default_factory=dict)


def improvement(candidate: float, best: float, maximize: bool) -> float:
    return candidate - best if maximize else best - candidate


def threshold(best: float, policy: VerdictSection) -> float:
    """How much better than best a candidate must be: min_delta, absolute or relative to |best|."""
    return policy.min_delta * abs(best) if policy.relative else policy.min_delta


def constraint_violations(metrics: dict[str, float], constraints: list[str]) -> list[str]:
    """Constraints broken by a run; a constraint over a metric the run did not print is broken."""
    ops = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b,
           ">": lambda a, b: a > b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}
    broken = []
    for text in constraints:
        name, op, bound = parse_constraint(text)
        value = metrics.get(name)
        if value is None or not math.isfinite(value):
            broken.append(f"{text} ({name} not reported)")
        elif not ops[op](value, bound):
            broken.append(f"{text} (got {value:g})")
    return broken


def screen(candidate: float, best: float | None, policy: VerdictSection, maximize: bool,
           lines_delta: int = 0, noise_band: float = 0.0) -> Verdict:
    """The verdict from the candidate's (median) metric alone.

    `keep` here means "looks better"; under `confirm = "paired"` it still has to be confirmed.
    """
    if best is None:
        return Verdict("keep", "baseline")
    gain = improvement(candidate, best, maximize)
    needed = threshold(best, policy)
    details = {"improvement": gain, "threshold": needed}
    if gain > needed:
        return Verdict("keep", "improved", details)
    band = max(needed, noise_band)
    if policy.simplicity and lines_delta < 0 and gain >= -band:
        return Verdict("keep", "simpler", {**details, "lines_delta": lines_delta, "band": band})
    return Verdict("discard", "not-better" if gain <= 0 else "below-min-delta", details)


def median(values: list[float]) -> float:
    return statistics.median(values)


# -- paired confirmation ------------------------------------------------------------------------

def abba_roles(n_runs: int) -> list[str]:
    """The order of confirmation runs: A B B A A B B A ... (A = best, B = candidate).

    Alternating the order inside each pair means a slow drift of the machine hurts and helps
    each side equally, instead of always favouring the side that runs second."""
    pattern = ["best", "candidate", "candidate", "best"]
    return [pattern[i % 4] for i in range(n_runs)]


def pair_differences(best_runs: list[float], candidate_runs: list[float], maximize: bool) -> list[float]:
    n = min(len(best_runs), len(candidate_runs))
    return [improvement(candidate_runs[i], best_runs[i], maximize) for i in range(n)]


def _sign_test_p(wins: int, n: int) -> float:
    """One-sided binomial P(X >= wins) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2 ** n


def _bootstrap_t_bounds(diffs: list[float], alpha: float, seed: int, resamples: int = 4000) -> tuple[float, float]:
    """Studentized (bootstrap-t) lower and upper bounds of the mean paired difference.

    A plain percentile bootstrap is far too optimistic with five or ten pairs; the studentized
    version keeps its error rate near the nominal one at these sizes."""
    n = len(diffs)
    mean = statistics.fmean(diffs)
    sd = statistics.stdev(diffs) if n > 1 else 0.0
    se = sd / math.sqrt(n)
    if se == 0.0:
        return mean, mean
    rng = random.Random(seed)
    ts = []
    for _ in range(resamples):
        sample = [diffs[rng.randrange(n)] for _ in range(n)]
        s_sd = statistics.stdev(sample)
        s_se = s_sd / math.sqrt(n)
        if s_se == 0.0:  # a resample of one repeated value says nothing about the spread
            continue
        ts.append((statistics.fmean(sample) - mean) / s_se)
    if not ts:
        return mean, mean
    ts.sort()
    hi_t = ts[min(len(ts) - 1, int(math.ceil((1 - alpha) * len(ts))) - 1)]
    lo_t = ts[max(0, int(math.floor(alpha * len(ts))))]
    return mean - hi_t * se, mean - lo_t * se


@dataclass
class PairedOutcome:
    decision: Decision
    pairs: int
    mean_improvement: float
    bound: float  # lower bound (bootstrap) or p-value (sign)
    alpha: float


def paired_decision(best_runs: list[float], candidate_runs: list[float], policy: VerdictSection,
                    maximize: bool, min_delta: float) -> PairedOutcome:
    """Sequential paired test over the confirmation runs so far.

    The error budget 1 - confidence is split evenly over every look the test may take
    (Bonferroni), so checking after each pair does not inflate the false-keep rate.
    """
    diffs = pair_differences(best_runs, candidate_runs, maximize)
    n = len(diffs)
    max_pairs = max(MIN_PAIRS, policy.max_runs // 2)
    looks = max(1, max_pairs - MIN_PAIRS + 1)
    alpha = (1.0 - policy.confidence) / looks
    mean = statistics.fmean(diffs) if diffs else 0.0
    if policy.test == "sign":
        shifted = [d - min_delta for d in diffs]
        wins = sum(1 for d in shifted if d > 0)
        p = _sign_test_p(wins, n) if n else 1.0
        best_possible = _sign_test_p(wins + (max_pairs - n), max_pairs)
        if n >= MIN_PAIRS and p <= alpha:
            return PairedOutcome("better", n, mean, p, alpha)
        if n >= max_pairs or best_possible > alpha:
            return PairedOutcome("not-better", n, mean, p, alpha)
        return PairedOutcome("continue", n, mean, p, alpha)
    if n < MIN_PAIRS:
        return PairedOutcome("continue", n, mean, -math.inf, alpha)
    seed = policy.seed * 1_000_003 + n
    lower, upper = _bootstrap_t_bounds(diffs, alpha, seed)
    if lower > min_delta:
        return PairedOutcome("better", n, mean, lower, alpha)
    if n >= max_pairs or upper <= min_delta:
        return PairedOutcome("not-better", n, mean, lower, alpha)
    return PairedOutcome("continue", n, mean, lower, alpha)


# -- noise ------------------------------------------------------------------------------------

@dataclass
class Spread:
    n: int
    mean: float
    median: float
    std: float
    mad: float
    min: float
    max: float

    def suggested_min_delta(self) -> float:
        """Twice the robust standard deviation (1.4826 x MAD), or the plain one if MAD is 0."""
        robust = 1.4826 * self.mad
        return 2.0 * (robust if robust > 0 else self.std)


def spread(values: list[float]) -> Spread:
    med = statistics.median(values)
    return Spread(
        n=len(values), mean=statistics.fmean(values), median=med,
        std=statistics.stdev(values) if len(values) > 1 else 0.0,
        mad=statistics.median(abs(v - med) for v in values), min=min(values), max=max(values),
    )


