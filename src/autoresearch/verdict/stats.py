"""Verdicts: keep, discard, crash or rejected, from the screen of a candidate's metric; and the
plain numbers (means, medians, pooled spreads) that every test here is made of.

Everything in this package's statistics is pure: numbers in, a decision out. The experiment runs
whatever extra runs a policy asks for (repeats, paired confirmation) and feeds the results back.
The confirmation tests live beside this module: `paired` (ABBA pairs: bootstrap, sign and the
sequential t-test), `reference` (the candidate against the best's reference runs) and `noise`
(the measured spread, the advice drawn from it, drift of the best's reference).

Sign convention: an *improvement* is positive when the candidate is better, whatever the goal.

What `min_delta` means (one meaning, applied once): the smallest improvement worth keeping.
With `confirm = "none"` the screen is the whole decision, so the screen applies it. With
confirmation on, the screen only asks "does it look better at all?" (gain > 0) and the
confirmation test applies min_delta as its margin (H0: true gain <= min_delta). Applying it in
both places, as before, demanded the margin twice: a noise-sized min_delta then rejected every
real gain of that size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from autoresearch.config.task import VerdictSection, parse_constraint


@dataclass
class Verdict:
    status: str  # keep | discard | crash | rejected
    reason: str = ""
    details: dict = field(default_factory=dict)


def improvement(candidate: float, best: float, maximize: bool) -> float:
    return candidate - best if maximize else best - candidate


def threshold(best: float, policy: VerdictSection) -> float:
    """min_delta in the metric's units (absolute, or relative to |best|): the smallest improvement
    worth keeping. With confirmation on, it is the confirmation test's margin, not the screen's."""
    return policy.min_delta * abs(best) if policy.relative else policy.min_delta


def screen_threshold(best: float, policy: VerdictSection) -> float:
    """How much better than best the screened metric must be to go further: min_delta when the
    screen decides alone; 0 when a confirmation test follows (that test applies min_delta)."""
    return 0.0 if policy.confirm != "none" else threshold(best, policy)


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
    needed = screen_threshold(best, policy)
    details = {"improvement": gain, "threshold": needed}
    if gain > needed:
        return Verdict("keep", "improved", details)
    # "simpler" tolerates a loss up to the band: min_delta or the measured noise, whichever is larger
    band = max(threshold(best, policy), noise_band)
    if policy.simplicity and lines_delta < 0 and gain >= -band:
        return Verdict("keep", "simpler", {**details, "lines_delta": lines_delta, "band": band})
    return Verdict("discard", "not-better" if gain <= 0 else "below-min-delta", details)


# The statistics module is not used here: importing it (fractions, decimal) costs every native
# experiment ~3 ms, and these are the float forms it would compute anyway (fmean is fsum / n).

def fmean(values: list[float]) -> float:
    values = list(values)
    if not values:
        raise ValueError("mean of no values")
    return math.fsum(values) / len(values)


def stdev(values: list[float]) -> float:
    """The sample standard deviation (n - 1), from the exact-sum mean."""
    mean = fmean(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median of no values")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def spread_parts(groups: list[list[float]]) -> tuple[float, int]:
    """The within-group sum of squares of GROUPS (each one commit's runs) and its degrees of
    freedom: what a pooled run sd is made of."""
    ss, df = 0.0, 0
    for values in groups:
        if len(values) >= 2:
            mean = fmean(values)
            ss += math.fsum((v - mean) ** 2 for v in values)
            df += len(values) - 1
    return ss, df
