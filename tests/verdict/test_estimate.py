"""The gain a decision measured, with its interval (autoresearch/verdict/estimate.py)."""

from __future__ import annotations

import math
import random

import pytest

from autoresearch.verdict.estimate import (
    decision_estimate,
    paired_estimate,
    sum_estimates,
    t_cdf,
    t_quantile,
    two_sample_estimate,
)


@pytest.mark.parametrize("df, q", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423), (200, 1.9719)])
def test_t_quantiles_match_the_tables(df: int, q: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(q, abs=1e-4)
    assert t_cdf(q, df) == pytest.approx(0.975, abs=1e-5) and t_cdf(0.0, df) == pytest.approx(0.5)


def test_paired_intervals_cover_the_truth_at_their_level() -> None:
    # 2000 simulated confirmations of a true gain of 1 (minimize: the candidate is 1 lower), 4 pairs each
    rng = random.Random(3)
    covered = 0
    for _ in range(2000):
        best = [10 + rng.gauss(0, 1) for _ in range(4)]
        cand = [9 + rng.gauss(0, 1) for _ in range(4)]
        covered += paired_estimate(best, cand, maximize=False).covers(1.0)
    assert 0.93 <= covered / 2000 <= 0.97


def test_estimates_from_a_decisions_stored_runs() -> None:
    paired = decision_estimate({"confirm": {"test": "sequential", "best_runs": [1.61, 1.60, 1.63],
                                            "candidate_runs": [1.52, 1.55, 1.53]}}, maximize=False)
    assert paired is not None and paired.how == "paired" and paired.runs == 6
    assert paired.value == pytest.approx(0.08) and paired.low is not None and paired.low < 0.08 < paired.high
    assert paired.pct == pytest.approx(100 * 0.08 / 1.6133, rel=1e-3)
    ref = decision_estimate({"confirm": {"test": "reference", "reference_runs": [1.6, 1.62], "best_runs": [1.61],
                                         "candidate_runs": [1.5, 1.52, 1.51]}}, maximize=False)
    assert ref is not None and ref.how == "reference" and ref.value == pytest.approx(0.1) and ref.runs == 6
    assert ref == two_sample_estimate([1.6, 1.62, 1.61], [1.5, 1.52, 1.51], maximize=False)
    assert decision_estimate({}, False) is None and decision_estimate({"confirm": {"pairs": 3}}, False) is None
    one = paired_estimate([1.0], [2.0], maximize=True)
    assert one.value == 1.0 and one.half is None and not one.covers(1.0)


def test_a_sum_adds_values_and_half_widths_in_quadrature() -> None:
    a = paired_estimate([10, 10.2, 9.9], [9, 9.1, 8.8], maximize=False)
    b = paired_estimate([9, 9.1, 8.8], [8.5, 8.7, 8.2], maximize=False)
    total = sum_estimates([a, b], base=10.0)
    assert total.value == pytest.approx(a.value + b.value)
    assert total.half == pytest.approx(math.hypot(a.half, b.half))  # type: ignore[arg-type]
    assert sum_estimates([a, paired_estimate([1.0], [2.0], True)], 10.0).half is None
