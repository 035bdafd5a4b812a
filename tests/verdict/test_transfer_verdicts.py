"""verdict.transfer: a gain that holds is `carries`, a loss `reverses`, a null change is never
`carries`, and the run order alternates so a drifting machine favours no commit."""

from __future__ import annotations

import random

from autoresearch.verdict.transfer import carried, round_order


def test_round_order_is_abba_for_two_and_mirrored_for_more() -> None:
    assert [i for r in round_order(2, 4) for i in r] == [0, 1, 1, 0, 0, 1, 1, 0]
    assert round_order(3, 2) == [[0, 1, 2], [2, 1, 0]]


def test_verdicts() -> None:
    assert carried([], 0.95).verdict == "crashed"
    assert carried([0.01] * 4, 0.95).verdict == "carries"
    assert carried([-0.01] * 4, 0.95).verdict == "reverses"
    assert carried([0.01], 0.95).verdict == "unclear"  # one pair is never enough
    mixed = carried([0.01, -0.012, 0.009, -0.011], 0.95)
    assert mixed.verdict == "no gain" and mixed.se is not None and mixed.pairs == 4


def test_a_null_change_rarely_carries() -> None:
    """The attack: pure noise, 4 pairs, 2,000 times: `carries` at most at the test's error rate."""
    rng = random.Random(7)
    false = sum(carried([rng.gauss(0, 1) for _ in range(4)], 0.95).verdict == "carries" for _ in range(2000))
    assert false / 2000 <= 0.05
