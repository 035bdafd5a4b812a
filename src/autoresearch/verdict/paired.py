"""Paired confirmation: ABBA runs of the best and the candidate, and the tests over their
paired differences (`test = "bootstrap" | "sign" | "sequential"`).

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
from dataclasses import dataclass
from typing import Literal

from autoresearch.config.task import VerdictSection
from autoresearch.verdict.stats import fmean, improvement, stdev

Decision = Literal["better", "not-better", "continue"]
MIN_PAIRS = 5  # bootstrap and sign: no keep before this many pairs (tiny samples fool them)
# The sequential test's design alternative, in units of the paired differences' sd: a gain of
# DELTA * sd(pair difference) = a gain of 2 run sds (the pair difference has sd sqrt(2) run sds).
# Smaller gains are still kept, more slowly; tuned in benchmarks/false_keeps.py (1.0 and 2.0 were
# worse: 1.0 needs more pairs for every keep, 2.0 loses power on 1-2 sd gains).
SEQ_DELTA = 1.4
SEQ_FUTILITY = 0.2  # stop "not-better" once the BF falls to this (evidence for "no gain")


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
    sd = stdev(diffs) if n > 1 else 0.0
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


def t_bf(diff: float, ss: float, nu: int, lam: float) -> float:
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
    return t_bf(mean * math.sqrt(n), ss, n - 1, lam)


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
    if n and bf <= SEQ_FUTILITY:
        return PairedOutcome("not-better", n, mean, bf, alpha)
    if n >= max_pairs:  # the run cap, not the evidence, ended it
        return PairedOutcome("not-better", n, mean, bf, alpha, capped=True)
    return PairedOutcome("continue", n, mean, bf, alpha)


@dataclass
class PairedOutcome:
    decision: Decision
    pairs: int
    mean_improvement: float
    bound: float  # lower bound (bootstrap), p-value (sign) or Bayes factor (sequential)
    alpha: float
    capped: bool = False  # not-better only because the runs ran out: the test could not tell


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
            # out of runs to reach alpha: undecided where the candidate still won most pairs
            return PairedOutcome("not-better", n, mean, p, alpha, capped=wins > n - wins)
        return PairedOutcome("continue", n, mean, p, alpha)
    if n < MIN_PAIRS:
        return PairedOutcome("continue", n, mean, -math.inf, alpha)
    seed = policy.seed * 1_000_003 + n
    lower, upper = _bootstrap_t_bounds(diffs, alpha, seed)
    if lower > min_delta:
        return PairedOutcome("better", n, mean, lower, alpha)
    if upper <= min_delta:
        return PairedOutcome("not-better", n, mean, lower, alpha)
    if n >= max_pairs:
        return PairedOutcome("not-better", n, mean, lower, alpha, capped=True)
    return PairedOutcome("continue", n, mean, lower, alpha)
