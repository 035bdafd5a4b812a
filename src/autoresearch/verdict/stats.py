"""Verdicts: keep, discard, crash or rejected, and the noise policy behind a keep.

Everything here is pure: numbers in, a decision out. The experiment runs whatever extra runs a
policy asks for (repeats, paired confirmation) and feeds the results back.

Sign convention: an *improvement* is positive when the candidate is better, whatever the goal.

What `min_delta` means (one meaning, applied once): the smallest improvement worth keeping.
With `confirm = "none"` the screen is the whole decision, so the screen applies it. With
confirmation on, the screen only asks "does it look better at all?" (gain > 0) and the
confirmation test applies min_delta as its margin (H0: true gain <= min_delta). Applying it in
both places, as before, demanded the margin twice: a noise-sized min_delta then rejected every
real gain of that size.

The sequential confirmation test (`test = "sequential"`, or `confirm = "sequential"`)
----------------------------------------------------------------------------------------
Confirmation looks at the data after every pair and wants to stop as soon as it can, so its
error rate must survive optional stopping; the paired differences have an unknown variance
(the noise of the machine today, not last week's `noise` record), and there are few of them.

The test is a sequential probability ratio test on the *t statistic*: the likelihood ratio of
the maximal invariant of the paired differences under scaling (equivalently, the ratio of the
noncentral-t density with noncentrality DELTA*sqrt(n) to the central one, at the observed t).
For a location family with an unknown scale this ratio is the Bayes factor with the right-Haar
prior 1/sigma on the scale, and it is a nonnegative martingale under H0 (Perez-Ortiz, Lardy,
de Heide, Gruenwald 2022, "E-statistics, group invariance and anytime valid testing"; the
classical form is Wald's sequential t-test). Ville's inequality then gives
P(sup_n BF_n >= 1/alpha) <= alpha: the bound is on the whole path, so it holds for *any*
stopping rule (optional stopping, the screen in front of it, a cap on the pairs). H0 is the
boundary "gain = min_delta"; a worse candidate shifts every t down while the BF is increasing
in t, so it is kept even less often. Keep when BF >= 1/alpha, alpha = 1 - confidence.
Futility: stop "not-better" when BF <= SEQ_FUTILITY (the reciprocal BF is a martingale under
the alternative, so a candidate at least SEQ_DELTA better is dropped by this rule with
probability <= SEQ_FUTILITY) or at the cap of max_runs // 2 pairs. Stopping for futility never
adds false keeps.

Why not the alternatives: the Bonferroni-split bootstrap and sign test need >= 5 pairs before a
keep and pay for every look; a known-variance SPRT or a normal mixture would need a variance we
do not have (last week's `noise` record is not today's machine); a Bayesian posterior rule has
no frequentist guarantee under optional stopping.

What it costs (benchmarks/false_keeps.py, 1000 simulated experiments per cell, one-run screen,
confirmation of apparent wins, max_runs = 20): A/A 1.5 false keeps per 100 (1.0 at
confidence = 0.97) at 3.5 runs per experiment; a real 2-sd gain is kept 79 % of the time at
10.9 runs, where the paired bootstrap keeps 69 % at 10.9 and 2.3 A/A false keeps per 100.
No paired test can do much better on real gains: even with the variance known, Wald's bound
on the expected sample size of any test with these error rates is ~3.7 pairs for a 2-sd gain
(a pair difference carries 1 nat of evidence at that gain), i.e. 7-8 runs with the screen.
Fewer runs on real gains need fewer re-runs of the best (a multi-run reference of the best,
kept current by drift_suspected), not a better paired test.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Literal

from autoresearch.config.task import VerdictSection, parse_constraint

Decision = Literal["better", "not-better", "continue"]
MIN_PAIRS = 5  # bootstrap and sign: no keep before this many pairs (tiny samples fool them)
# The sequential test's design alternative, in units of the paired differences' sd: a gain of
# DELTA * sd(pair difference) = a gain of 2 run sds (the pair difference has sd sqrt(2) run sds).
# Smaller gains are still kept, more slowly; tuned in benchmarks/false_keeps.py (1.0 and 2.0 were
# worse: 1.0 needs more pairs for every keep, 2.0 loses power on 1-2 sd gains).
SEQ_DELTA = 1.4
SEQ_FUTILITY = 0.2  # stop "not-better" once the BF falls to this (evidence for "no gain")
# confirm = "reference": the design gain in run sds (the contrast's own sd shrinks with the runs on
# both sides, so it is a plain gain in run sds here). Why 1.1 and not 2: the likelihood ratio of a
# design gain D grows only for true gains above D/2, so a 2-sd design cannot see a 1-sd gain at all
# (5.9 % power in benchmarks/false_keeps.py, against 25.6 % at 1.1); a 2-sd gain still passes a
# 1.1 design quickly (94 % power at 6.9 runs when every edit is one, against 91 % at 7.7 for D = 2).
REF_DELTA = 1.1
# ... and it gives up on a candidate (never a false keep) at BF <= REF_FUTILITY: a gain of REF_DELTA
# is dropped so with probability <= 0.5 (1/BF is a martingale under that alternative; a 2-sd gain far
# less often), which ends null edits after 2.6 runs on average; not before REF_FUTILITY_RUNS runs
# (the screen's run and one more). The grid behind these three numbers (design, futility, and the
# policy's default confidence 0.97) is in the closing note of the session that chose them; each
# cell was run through decide_flow itself.
REF_FUTILITY = 0.5
REF_FUTILITY_RUNS = 2


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


def _stdev(values: list[float]) -> float:
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
    mean = fmean(diffs)
    sd = _stdev(diffs) if n > 1 else 0.0
    se = sd / math.sqrt(n)
    if se == 0.0:
        return mean, mean
    rng = random.Random(seed)
    ts = []
    root_n = math.sqrt(n)
    for _ in range(resamples):
        sample = rng.choices(diffs, k=n)
        # plain float moments: statistics.stdev is exact but ~20x slower, and this runs 4000 times a look
        s_mean = math.fsum(sample) / n
        s_var = math.fsum((v - s_mean) ** 2 for v in sample) / (n - 1)
        s_se = math.sqrt(s_var) / root_n
        if s_se <= 1e-12 * (abs(s_mean) + se):  # one repeated value says nothing about the spread
            continue
        ts.append((s_mean - mean) / s_se)
    if not ts:
        return mean, mean
    ts.sort()
    hi_t = ts[min(len(ts) - 1, int(math.ceil((1 - alpha) * len(ts))) - 1)]
    lo_t = ts[max(0, int(math.floor(alpha * len(ts))))]
    return mean - hi_t * se, mean - lo_t * se


def _invariant_bf(w: float, n: int, lam: float) -> float:
    """The t statistic's likelihood ratio, noncentrality LAM against 0, at w = t / sqrt(n - 1 + t^2).

    Closed form of  integral u^(n-1) exp(-u^2/2 + sqrt(2) lam w u - lam^2/2) du / integral u^(n-1)
    exp(-u^2/2) du  as the series  e^(-lam^2/2) sum_k x^k/k! Gamma((n+k)/2)/Gamma(n/2),
    x = sqrt(2) lam w. Its terms are summed in log space (they grow before they shrink), and
    |x| <= sqrt(2) lam keeps it short. n = 1 (w = +-1) is the sign alone: 2 Phi(+-lam)."""
    x = math.sqrt(2.0) * lam * w
    if x == 0.0:
        return math.exp(-lam * lam / 2)
    base, lx, half = math.lgamma(n / 2), math.log(abs(x)), lam * lam / 2
    terms, peak = [], -math.inf
    for k in range(2000):
        log_term = k * lx - math.lgamma(k + 1) + math.lgamma((n + k) / 2) - base - half
        terms.append(-math.exp(log_term) if x < 0 and k % 2 else math.exp(log_term))
        peak = max(peak, log_term)
        if k > 2 and log_term < peak - 40:  # past the peak, the rest is below double precision
            break
    return max(0.0, math.fsum(terms))


def _t_bf(diff: float, ss: float, nu: int, lam: float) -> float:
    """The t statistic's likelihood ratio from its parts: DIFF = t * pooled sd, SS the residual sum
    of squares behind that sd, NU its degrees of freedom (>= 0), LAM the noncentrality."""
    if ss == 0.0:
        w = 0.0 if diff == 0.0 else math.copysign(1.0, diff)
    else:
        w = diff / math.sqrt(diff * diff + ss)  # = t / sqrt(nu + t^2)
    return _invariant_bf(max(-1.0, min(1.0, w)), nu + 1, lam)


def sequential_bf(diffs: list[float], delta: float | None = None) -> float:
    """Evidence that the mean of DIFFS is DELTA standard deviations above 0 rather than 0, from the
    scale-invariant (t-based) likelihood ratio: an e-value that stays valid under optional stopping."""
    n = len(diffs)
    if n == 0:
        return 1.0
    mean = fmean(diffs)
    ss = math.fsum((d - mean) ** 2 for d in diffs)
    if n == 1:
        ss = 0.0  # one difference alone: only its sign is scale-free evidence
    lam = (SEQ_DELTA if delta is None else delta) * math.sqrt(n)
    return _t_bf(mean * math.sqrt(n), ss, n - 1, lam)


def _sequential_outcome(diffs: list[float], policy: VerdictSection, min_delta: float) -> "PairedOutcome":
    """The sequential t-test of H0 "gain <= min_delta": keep at BF >= 1/alpha, drop at
    BF <= SEQ_FUTILITY or at the cap. No split of alpha over the looks: the bound holds for all."""
    n = len(diffs)
    alpha = 1.0 - policy.confidence
    mean = fmean(diffs) if diffs else 0.0
    bf = sequential_bf([d - min_delta for d in diffs])
    max_pairs = max(2, policy.max_runs // 2)
    if n and bf >= 1.0 / alpha:
        return PairedOutcome("better", n, mean, bf, alpha)
    if n >= max_pairs or (n and bf <= SEQ_FUTILITY):
        return PairedOutcome("not-better", n, mean, bf, alpha)
    return PairedOutcome("continue", n, mean, bf, alpha)


@dataclass
class PairedOutcome:
    decision: Decision
    pairs: int
    mean_improvement: float
    bound: float  # lower bound (bootstrap), p-value (sign) or Bayes factor (sequential)
    alpha: float


def paired_decision(best_runs: list[float], candidate_runs: list[float], policy: VerdictSection,
                    maximize: bool, min_delta: float) -> PairedOutcome:
    """Sequential paired test over the confirmation runs so far; MIN_DELTA is its margin.

    bootstrap and sign split the error budget 1 - confidence evenly over every look the test
    may take (Bonferroni); sequential needs no split (see the module docstring).
    """
    diffs = pair_differences(best_runs, candidate_runs, maximize)
    if policy.test == "sequential" or policy.confirm == "sequential":  # the latter: not loaded via task.py
        return _sequential_outcome(diffs, policy, min_delta)
    n = len(diffs)
    max_pairs = max(MIN_PAIRS, policy.max_runs // 2)
    looks = max(1, max_pairs - MIN_PAIRS + 1)
    alpha = (1.0 - policy.confidence) / looks
    mean = fmean(diffs) if diffs else 0.0
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


# -- the reference test ---------------------------------------------------------------------------

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


@dataclass(frozen=True)
class Reference:
    """What `confirm = "reference"` compares a candidate with: the best's reference RUNS (since
    its reference was last measured), and the spread of other commits' replicate runs (SS, DF)
    that sharpen the estimate of the run-to-run sd."""

    runs: list[float]
    other_ss: float = 0.0
    other_df: int = 0

    def spread(self, cand_runs: list[float]) -> tuple[float, int]:
        """The pooled sum of squares and degrees of freedom with CAND_RUNS as one more group."""
        ss, df = spread_parts([self.runs, cand_runs])
        return self.other_ss + ss, self.other_df + df


def reference_decision(ref: Reference, cand_runs: list[float], policy: VerdictSection, maximize: bool,
                       min_delta: float) -> PairedOutcome:
    """The sequential t-test of H0 "the candidate's mean is at most min_delta better than the
    reference's", over the candidate's runs and the best's reference runs (flow.py decides which
    side runs next: reference_arm).

    The contrast is the two-sample t: (mean of the candidate's runs vs mean of the reference's)
    over a pooled sd whose degrees of freedom come from the reference, the candidate and other
    commits' replicates. Its likelihood ratio (noncentrality REF_DELTA run sds over the contrast's
    scale) is the group-invariant Bayes factor again, now for per-commit locations and one common
    scale, so Ville's bound holds under optional stopping as for the paired test. Keep at
    BF >= 1/alpha; drop at BF <= REF_FUTILITY (from REF_FUTILITY_RUNS runs on) or at max_runs."""
    alpha = 1.0 - policy.confidence
    n, m = len(cand_runs), len(ref.runs)
    mean_c, mean_r = fmean(cand_runs), fmean(ref.runs)
    gain = improvement(mean_c, mean_r, maximize)
    ss, nu = ref.spread(cand_runs)
    scale = math.sqrt(1.0 / n + 1.0 / m)
    bf = _t_bf((gain - min_delta) / scale, ss, nu, REF_DELTA / scale) if nu >= 1 else 1.0
    if bf >= 1.0 / alpha:
        return PairedOutcome("better", n, gain, bf, alpha)
    if n >= policy.max_runs or (bf <= REF_FUTILITY and n >= REF_FUTILITY_RUNS):
        return PairedOutcome("not-better", n, gain, bf, alpha)
    return PairedOutcome("continue", n, gain, bf, alpha)


def reference_arm(n_candidate: int, n_reference: int) -> str:
    """Which side `confirm = "reference"` runs next: the one whose run shrinks the standard error
    of the difference of means, sd * sqrt(1/n + 1/m), the most, i.e. the side with fewer runs. A
    tie goes to the best: its runs stay in its reference for every later candidate, the
    candidate's are spent on this one. The choice (like the flow's guard run before a keep) is
    made from what is known before the run, a predictable design: each run's likelihood ratio
    is then its conditional density ratio given the past, the design cancels, and the product
    stays a martingale under H0 (Ville's bound holds as for a fixed design)."""
    if n_reference < n_candidate:
        return "best"
    if n_reference > n_candidate:
        return "candidate"
    return "best"


def reference_moved(ref: Reference, fresh: float, sd: float, maximize: bool) -> bool:
    """Whether a fresh run of the best says its reference is stale in the candidate's favour (the
    machine got faster): better than the reference's mean by more than DRIFT_SDS sds of the
    difference. The slower direction is drift_suspected's; this is the one it leaves open."""
    m = len(ref.runs)
    return improvement(fresh, fmean(ref.runs), maximize) > DRIFT_SDS * sd * math.sqrt(1.0 + 1.0 / m)


def pooled(ref: Reference, cand_runs: list[float]) -> float:
    """The pooled run sd of the reference, the candidate and the other replicates (0 without df)."""
    ss, df = ref.spread(cand_runs)
    return math.sqrt(ss / df) if df else 0.0


# -- noise ------------------------------------------------------------------------------------

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

    @property
    def rel_mad(self) -> float | None:
        return self.relative(self.mad)

    def suggested_min_delta(self, repeats: int = 1) -> float:
        """The screen's min_delta for a greedy policy (confirm = "none"): 2 sd of the difference
        between two medians of REPEATS runs, sd * sqrt(2 / repeats). About 2 % of null edits pass."""
        return 2.0 * self.noise_sd * math.sqrt(2.0 / max(1, repeats))


def spread(values: list[float]) -> Spread:
    med = median(values)
    return Spread(
        n=len(values), mean=fmean(values), median=med,
        std=_stdev(values) if len(values) > 1 else 0.0,
        mad=median([abs(v - med) for v in values]), min=min(values), max=max(values),
    )


@dataclass
class Advice:
    policy: str  # "greedy screen" | "screen on medians of N runs" | "paired confirmation (TEST)"
    settings: dict[str, object]  # [verdict] keys to set
    lines: list[str]  # what to tell the person, one sentence a line


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
        lines.append(f"for the {name} (confirm = \"none\"): min_delta = {_fmt_setting(settings)}, "
                     f"2 sd of a difference of two {'runs' if policy.repeats == 1 else 'medians'}; "
                     "smaller gains than that are not kept")
        if rel is not None and delta / abs(sp.median) > GREEDY_TOO_COARSE:
            lines.append(f"that threshold is {delta / abs(sp.median):.0%} of the metric: too coarse to see typical gains; "
                         "use confirm = \"sequential\" (min_delta = 0), which re-runs only apparent wins")
        return Advice(name, settings, lines)
    name = f"paired confirmation ({policy.test})"
    lines.append(f"for the {name}: the test measures the noise itself; min_delta is only the smallest "
                 f"gain worth keeping (now {policy.min_delta:g}; 0 keeps any real gain)")
    if policy.test != "sequential":
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

