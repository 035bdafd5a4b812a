"""The reference test (`confirm = "reference"`): the candidate's runs against the best's reference
runs, a sequential two-sample t-test whose reference grows where candidates need it and is reused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autoresearch.config.task import VerdictSection
from autoresearch.verdict.noise import DRIFT_SDS
from autoresearch.verdict.paired import PairedOutcome, t_bf
from autoresearch.verdict.stats import fmean, improvement, spread_parts

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
    bf = t_bf((gain - min_delta) / scale, ss, nu, REF_DELTA / scale) if nu >= 1 else 1.0
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
