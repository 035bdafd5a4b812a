"""The gain a decision measured, with its interval: what every printed gain is made of.

A keep's bar may be stale (the best re-measured during a burst of load), so a gain stated as
"metric against the bar" can be anything. The evidence of a confirmed decision is not: paired
runs of the parent and the candidate, side by side (`confirm = "paired" | "sequential"`), or the
candidate's runs against the best's reference runs with a fresh guard run (`confirm =
"reference"`). This module turns that stored evidence (an experiment's `details["confirm"]`, or
the runs of `autoresearch compare`) into an `Estimate`: the mean improvement (positive is better)
and a two-sided 95 % t interval.

What the interval does not remove: a keep's own estimate is taken where its stopping rule chose
to stop (it stops when the evidence looks good), so it leans optimistic; a side-by-side
`autoresearch compare` of baseline and best afterwards has no such selection, and is the
session's headline when there is one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from autoresearch.verdict.stats import fmean, improvement

LEVEL = 0.95  # the two-sided level of every printed interval


@dataclass(frozen=True)
class Estimate:
    """An improvement (positive is better) with its interval, and where it came from.

    HOW: "paired" (ABBA pairs of a confirmation), "reference" (runs against the best's reference
    runs), "compare" (`autoresearch compare`), "sum" (a session's keeps, summed) or "screen" (one
    run against the bar of its time: no interval, and not evidence). BASE: the level the gain is
    relative to (the parent's runs' mean, the baseline's), for the percentage."""

    value: float
    low: float | None
    high: float | None
    runs: int
    how: str
    base: float | None = None

    @property
    def half(self) -> float | None:
        """The interval's half width (it is symmetric), None without one."""
        return None if self.low is None or self.high is None else (self.high - self.low) / 2

    @property
    def pct(self) -> float | None:
        return 100.0 * self.value / abs(self.base) if self.base else None

    @property
    def pct_half(self) -> float | None:
        half = self.half
        return 100.0 * half / abs(self.base) if half is not None and self.base else None

    def covers(self, value: float) -> bool:
        """Whether VALUE lies in the interval (False without one)."""
        return self.low is not None and self.high is not None and self.low <= value <= self.high

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "low": self.low, "high": self.high, "half": self.half, "runs": self.runs,
                "how": self.how, "base": self.base, "pct": self.pct, "pct_half": self.pct_half}


# -- Student's t, for integer degrees of freedom ------------------------------------------------

def t_cdf(x: float, df: int) -> float:
    """P(T <= x) for Student's t with DF >= 1 degrees of freedom (the closed form for integer DF)."""
    if df < 1:
        raise ValueError("t_cdf needs df >= 1")
    theta = math.atan(x / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2:  # odd: 2/pi (theta + sin cos (1 + 2/3 c2 + 2.4/3.5 c2^2 + ...))
        total, term = 0.0, 1.0
        if df > 1:
            total = 1.0
            for k in range(1, (df - 1) // 2):
                term *= (2 * k) / (2 * k + 1) * c2
                total += term
        inside = (2 / math.pi) * (theta + math.sin(theta) * math.cos(theta) * total)
    else:  # even: sin (1 + 1/2 c2 + 1.3/2.4 c2^2 + ...)
        total, term = 1.0, 1.0
        for k in range(1, df // 2):
            term *= (2 * k - 1) / (2 * k) * c2
            total += term
        inside = math.sin(theta) * total
    return 0.5 + inside / 2  # inside = P(|T| < x) signed with x


def t_quantile(p: float, df: int) -> float:
    """The P quantile of Student's t with DF degrees of freedom (bisection on t_cdf)."""
    lo, hi = -1e6, 1e6
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10 * max(1.0, abs(mid)):
            break
    return (lo + hi) / 2


def _interval(mean: float, se: float, df: int) -> tuple[float | None, float | None]:
    if df < 1 or not math.isfinite(se):
        return None, None
    half = t_quantile(0.5 + LEVEL / 2, df) * se
    return mean - half, mean + half


# -- from runs --------------------------------------------------------------------------------------

def paired_estimate(first_runs: list[float], second_runs: list[float], maximize: bool, how: str = "paired") -> Estimate:
    """How much better SECOND is than FIRST, from runs made in pairs (first_runs[i] beside
    second_runs[i]): the mean paired difference and its t interval (none from one pair)."""
    n = min(len(first_runs), len(second_runs))
    if n == 0:
        raise ValueError("a paired estimate needs at least one pair")
    diffs = [improvement(second_runs[i], first_runs[i], maximize) for i in range(n)]
    mean = fmean(diffs)
    base = fmean(first_runs[:n])
    if n < 2:
        return Estimate(mean, None, None, 2 * n, how, base)
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
    low, high = _interval(mean, sd / math.sqrt(n), n - 1)
    return Estimate(mean, low, high, 2 * n, how, base)


def two_sample_estimate(reference: list[float], candidate: list[float], maximize: bool) -> Estimate:
    """How much better the CANDIDATE's runs are than the REFERENCE's (means), with the pooled-sd
    t interval (none when neither side has two runs)."""
    if not reference or not candidate:
        raise ValueError("a two-sample estimate needs runs on both sides")
    n, m = len(candidate), len(reference)
    mc, mr = fmean(candidate), fmean(reference)
    gain = improvement(mc, mr, maximize)
    df = n + m - 2
    if df < 1:
        return Estimate(gain, None, None, n + m, "reference", mr)
    ss = math.fsum((v - mc) ** 2 for v in candidate) + math.fsum((v - mr) ** 2 for v in reference)
    se = math.sqrt(ss / df) * math.sqrt(1.0 / n + 1.0 / m)
    low, high = _interval(gain, se, df)
    return Estimate(gain, low, high, n + m, "reference", mr)


def decision_estimate(details: dict[str, Any], maximize: bool) -> Estimate | None:
    """The estimate a confirmed decision stored (an experiment's DETAILS), or None when it has
    none: no confirmation ran (a greedy keep, a baseline), or an older record without its runs."""
    confirm = details.get("confirm") if isinstance(details, dict) else None
    if not isinstance(confirm, dict):
        return None
    cand = [float(v) for v in confirm.get("candidate_runs") or []]
    if confirm.get("test") == "reference":
        ref = [float(v) for v in (confirm.get("reference_runs") or []) + (confirm.get("best_runs") or [])]
        return two_sample_estimate(ref, cand, maximize) if ref and cand else None
    best = [float(v) for v in confirm.get("best_runs") or []]
    if not best or not cand:
        return None
    return paired_estimate(best, cand, maximize)


def sum_estimates(parts: list[Estimate], base: float | None) -> Estimate:
    """Independent estimates added up (a session's keeps): the values summed, the half widths in
    quadrature; no interval when any part has none."""
    value = math.fsum(p.value for p in parts)
    halves = [p.half for p in parts]
    if not parts or any(h is None for h in halves):
        return Estimate(value, None, None, sum(p.runs for p in parts), "sum", base)
    half = math.sqrt(math.fsum(h * h for h in halves if h is not None))
    return Estimate(value, value - half, value + half, sum(p.runs for p in parts), "sum", base)


__all__ = ["LEVEL", "Estimate", "decision_estimate", "paired_estimate", "sum_estimates", "t_cdf", "t_quantile",
           "two_sample_estimate"]
