"""Noise: the spread of repeated runs of one commit, the [verdict] settings advised from it, and
the drift of the best's reference (a machine that got slower between measurements).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autoresearch.config.task import VerdictSection
from autoresearch.verdict.stats import fmean, improvement, median, spread_parts, stdev


def _c4(n: int) -> float:
    """E[sample sd] / sd for n normal draws: the sample sd of 2-4 runs is biased low by 8-20 %."""
    return math.sqrt(2.0 / (n - 1)) * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2))


@dataclass
class Spread:
    n: int
    mean: float
    median: float
    std: float  # the plain sample sd
    mad: float  # median absolute deviation (reported; not used for advice, see noise_sd)
    min: float
    max: float

    @property
    def noise_sd(self) -> float:
        """The sd the advice uses: the sample sd, divided by c4(n) below five runs.

        Not the MAD: with three runs the MAD is the middle one of three distances and routinely a
        quarter of the real spread (issue 14: MAD 0.0015 beside an sd of 0.008)."""
        if self.n < 2:
            return 0.0
        return self.std / _c4(self.n) if self.n < 5 else self.std

    def relative(self, value: float) -> float | None:
        """VALUE as a fraction of |median|, or None when the median is 0 (no scale to compare)."""
        return abs(value) / abs(self.median) if self.median else None

    @property
    def rel_std(self) -> float | None:
        return self.relative(self.noise_sd)

    def suggested_min_delta(self, repeats: int = 1) -> float:
        """The screen's min_delta for a greedy policy (confirm = "none"): 2 sd of the difference
        between two medians of REPEATS runs, sd * sqrt(2 / repeats). About 2 % of null edits pass."""
        return 2.0 * self.noise_sd * math.sqrt(2.0 / max(1, repeats))


def spread(values: list[float]) -> Spread:
    med = median(values)
    return Spread(
        n=len(values), mean=fmean(values), median=med,
        std=stdev(values) if len(values) > 1 else 0.0,
        mad=median([abs(v - med) for v in values]), min=min(values), max=max(values),
    )


@dataclass
class Advice:
    """One recommendation for the task's [verdict], from a measured spread. `noise`, `status` and
    the report all print it (`headline`), so they never disagree."""

    policy: str  # "greedy screen" | "screen on medians of N runs" | "paired confirmation (TEST)" | "reference confirmation"
    settings: dict[str, object]  # [verdict] keys to set
    lines: list[str]  # what to tell the person, one sentence a line

    @property
    def headline(self) -> str:
        """The recommendation in one line: the [verdict] keys to set, for which policy."""
        keys = ", ".join(f"{k} = {_toml(v)}" for k, v in self.settings.items())
        return f"[verdict] {keys}  (for the {self.policy})"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    return f'"{value}"' if isinstance(value, str) else str(value)


GREEDY_TOO_COARSE = 0.05  # a greedy min_delta above 5 % of the metric hides the gains people look for


def advise(sp: Spread, policy: VerdictSection) -> Advice:
    """Settings for the policy the task uses, from the measured spread.

    Greedy (confirm = "none"): min_delta is the whole defence, so it must be about two sds of a
    difference of medians; when that is a large part of the metric, say so and suggest
    confirmation instead. With confirmation, min_delta is only the smallest gain worth keeping
    (the test handles the noise), so it is left to the person (0 keeps any real gain)."""
    sd = sp.noise_sd
    rel = sp.rel_std
    spread_line = (f"noise: sd {sd:.4g} ({rel:.2%} of the median {sp.median:.6g})" if rel is not None
                   else f"noise: sd {sd:.4g} (median 0)") + f", MAD {sp.mad:.4g}, over {sp.n} runs"
    lines = [spread_line]
    if sp.n < 5:
        lines.append(f"only {sp.n} runs: the sd is corrected for the small sample and still rough; -n 5 or more is firmer")
    if policy.confirm == "none":
        name = "greedy screen" if policy.repeats == 1 else f"screen on medians of {policy.repeats} runs"
        delta = sp.suggested_min_delta(policy.repeats)
        settings: dict[str, object] = {"min_delta": delta / abs(sp.median), "relative": True} if policy.relative and sp.median \
            else {"min_delta": delta}
        if rel is not None and delta / abs(sp.median) > GREEDY_TOO_COARSE:
            # one recommendation, not two: a greedy threshold this coarse hides the gains people look
            # for, so the advice is to confirm apparent wins instead (and no greedy min_delta)
            lines.append(f"a greedy screen would need min_delta = {_fmt_setting(settings)} (2 sd of a difference), "
                         f"{delta / abs(sp.median):.0%} of the metric: too coarse to see typical gains; "
                         "confirm = \"sequential\" re-runs only apparent wins and keeps any real gain (min_delta = 0)")
            return Advice("sequential confirmation", {"confirm": "sequential", "min_delta": 0.0}, lines)
        lines.append(f"for the {name} (confirm = \"none\"): min_delta = {_fmt_setting(settings)}, "
                     f"2 sd of a difference of two {'runs' if policy.repeats == 1 else 'medians'}; "
                     "smaller gains than that are not kept")
        return Advice(name, settings, lines)
    # confirm = "reference" has its own test (policy.test is then unused and says bootstrap)
    name = "reference confirmation" if policy.confirm == "reference" else f"paired confirmation ({policy.test})"
    lines.append(f"for the {name}: the test measures the noise itself; min_delta is only the smallest "
                 f"gain worth keeping (now {policy.min_delta:g}; 0 keeps any real gain)")
    if policy.confirm == "paired" and policy.test != "sequential":
        lines.append("confirm = \"sequential\" decides in fewer runs at the same false-keep bound")
    return Advice(name, {"min_delta": policy.min_delta}, lines)


def _fmt_setting(settings: dict[str, object]) -> str:
    value = settings["min_delta"]
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text + (" with relative = true" if settings.get("relative") else "")


# -- drift --------------------------------------------------------------------------------------

DRIFT_K = 3  # losses in a row that make the reference suspect
DRIFT_SDS = 3.0  # "far": each loss beyond this many noise sds of one run
RECHECK_EVERY = 0  # a scheduled re-measurement every N experiments; 0: only on evidence


def pooled_sd(groups: list[list[float]]) -> float | None:
    """The run-to-run sd from replicate runs of several commits (each group: one commit's runs),
    pooled over their within-commit spread; None without a commit measured twice. What drift
    detection uses when nobody ran `noise`: the baseline's runs, confirmation and reference runs."""
    ss, df = spread_parts(groups)
    return math.sqrt(ss / df) if df else None


def drift_suspected(recent_candidates: list[float], best_reference: float, noise_sd: float | None,
                    maximize: bool, k: int = DRIFT_K, *, since_check: int = 0,
                    every: int = RECHECK_EVERY) -> bool:
    """Whether the best's reference should be re-measured before the next comparison.

    The rule: (a) the last K screened candidates (their single-run or median metrics, oldest
    first) ALL lost to the reference by more than DRIFT_SDS noise sds: k independent edits that
    are each far worse is rare (real regressions happen, but the cost of a false alarm is only
    a re-measurement), while a machine that got slower produces exactly this; or (b) EVERY > 0
    and SINCE_CHECK experiments have passed since the last measurement of the reference.
    Without a noise sd (none recorded by `noise` and no commit measured twice: see pooled_sd)
    rule (a) cannot tell far from near and only (b) applies. A faster machine (candidates all "win") is left to confirmation, which
    re-measures the best beside the candidate anyway."""
    if every > 0 and since_check >= every:
        return True
    if not noise_sd or k < 1 or len(recent_candidates) < k:
        return False
    far = DRIFT_SDS * noise_sd
    return all(improvement(c, best_reference, maximize) < -far for c in recent_candidates[-k:])
