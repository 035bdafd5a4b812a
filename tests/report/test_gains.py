"""The session's gain (autoresearch/report/gains.py): the chain of keeps, each against the bar of its time.

Journal records are built as the loop writes them (status, metric, best_before); the CLI views
of a real drifting session are tested in report/test_references.py.
"""

from __future__ import annotations

import pytest

from autoresearch.journal.records import Experiment
from autoresearch.report.gains import change_words, headline_lines, pct_words, raw_note, session_gain


def exp(seq: int, status: str, metric: float | None = None, bar: float | None = None, *,
        baseline: bool = False, details: dict | None = None) -> Experiment:
    return Experiment(seq=seq, tag="t", status=status, started_at=float(seq), metric=metric, best_before=bar,
                      is_baseline=baseline, details=details or {})


def test_minimize_on_a_machine_that_slowed_sums_the_keeps_not_best_minus_baseline() -> None:
    # trial/test_reference.py's story: baseline 10.01 on a quiet machine; the bar re-measured at 15.01; one
    # real keep at 14.02 against it; a null edit discarded after it.
    exps = [exp(1, "keep", 10.01, baseline=True), exp(2, "discard", 15.02, 10.01), exp(3, "discard", 15.0, 10.01),
            exp(4, "keep", 14.02, 15.01), exp(5, "discard", 14.0, 14.02)]
    g = session_gain(exps, maximize=False)
    assert g.remeasured
    assert g.chain == pytest.approx(0.99) and g.chain_pct == pytest.approx(100 * 0.99 / 10.01)
    assert g.raw == pytest.approx(-4.01) and g.raw_pct == pytest.approx(-40.06, abs=0.01)
    assert g.shift == pytest.approx(-5.0)  # the bar came out 5 worse
    assert g.raw == pytest.approx(g.chain + g.shift)
    assert (g.headline, g.headline_pct) == (g.chain, g.chain_pct)
    assert [(s.seq, s.bar, s.metric) for s in g.steps] == [(4, 15.01, 14.02)]
    note = raw_note(g)
    assert "not a like-for-like comparison" in note and "5 worse" in note and "worse by 4.01, -40.06%" in note


def test_maximize_with_a_crash_and_a_rejection_between_keeps() -> None:
    # accuracy: 0.50 -> keep 0.60 (bar 0.50); a crash and a rejection change nothing; the bar is
    # re-measured at 0.55 (the machine got worse); keep 0.65 against it.
    exps = [exp(1, "keep", 0.50, baseline=True), exp(2, "keep", 0.60, 0.50), exp(3, "crash", None, 0.60),
            exp(4, "rejected", None, 0.60), exp(5, "discard", 0.40, 0.55), exp(6, "keep", 0.65, 0.55)]
    g = session_gain(exps, maximize=True)
    assert g.remeasured
    assert [s.seq for s in g.steps] == [2, 6]
    assert [s.gain for s in g.steps] == pytest.approx([0.10, 0.10])
    assert [s.shift for s in g.steps] == pytest.approx([0.0, -0.05])
    assert g.chain == pytest.approx(0.20) and g.chain_pct == pytest.approx(40.0)
    assert g.raw == pytest.approx(0.15) and g.raw_pct == pytest.approx(30.0)
    assert g.headline == pytest.approx(0.20)


def test_without_a_re_measurement_the_headline_is_exactly_best_minus_baseline() -> None:
    # keeps that telescope (each bar is the previous keep's metric): the raw figure, to the bit
    exps = [exp(1, "keep", 1.3, baseline=True), exp(2, "keep", 1.1, 1.3), exp(3, "crash", None, 1.1),
            exp(4, "discard", 1.2, 1.1), exp(5, "keep", 0.7, 1.1)]
    g = session_gain(exps, maximize=False)
    assert not g.remeasured and g.shift == 0.0
    assert g.headline == 1.3 - 0.7 and g.headline_pct == 100.0 * (1.3 - 0.7) / 1.3
    assert g.chain == pytest.approx(g.raw)
    assert raw_note(g) == ""
    assert headline_lines(g, None) == ["gain     improved by 0.6, +46.15% vs the baseline 1.300000 (seq 1), not measured side by side"]


def test_a_session_without_keeps_gained_nothing() -> None:
    exps = [exp(1, "keep", 2.0, baseline=True), exp(2, "discard", 2.5, 2.0), exp(3, "crash", None, 2.0)]
    g = session_gain(exps, maximize=False)
    assert (g.chain, g.raw, g.headline, g.remeasured, g.steps) == (0.0, 0.0, 0.0, False, [])
    assert (g.best, g.best_seq, g.baseline_seq) == (2.0, 1, 1)
    nothing = session_gain([exp(1, "crash", None, baseline=True)], maximize=True)
    assert (nothing.baseline, nothing.chain, nothing.raw, nothing.headline) == (None, None, None, None)
    assert headline_lines(nothing, None) == [] and raw_note(nothing) == ""


def test_a_confirmed_keep_counts_with_its_confirmed_metric_and_is_the_next_bar() -> None:
    # a paired confirmation replaced the screening run (0.90) by the median 0.94 (verdict/flow.py);
    # the next candidate was measured against 0.94, so nothing moved the bar
    confirm = {"pairs": 3, "mean_improvement": 0.05}
    exps = [exp(1, "keep", 1.0, baseline=True), exp(2, "keep", 0.94, 1.0, details={"confirm": confirm}),
            exp(3, "keep", 0.92, 0.94)]
    g = session_gain(exps, maximize=False)
    assert [s.confirmed for s in g.steps] == [True, False]
    assert not g.remeasured
    assert [s.gain for s in g.steps] == pytest.approx([0.06, 0.02])
    assert g.headline == g.raw == pytest.approx(0.08)


def test_a_new_epochs_baseline_is_a_move_of_the_bar_not_a_gain() -> None:
    # the harness changed: the new epoch's baseline measures the best at 5.0; a keep beats it by 1
    exps = [exp(1, "keep", 3.0, baseline=True), exp(2, "keep", 2.0, 3.0), exp(3, "keep", 5.0, None, baseline=True),
            exp(4, "keep", 4.0, 5.0)]
    g = session_gain(exps, maximize=False)
    assert g.remeasured
    assert [(s.seq, s.bar, s.gain) for s in g.steps] == [(2, 3.0, 1.0), (3, None, 0.0), (4, 5.0, 1.0)]
    assert g.chain == pytest.approx(2.0) and g.raw == pytest.approx(-1.0) and g.shift == pytest.approx(-3.0)


def test_a_loss_reads_as_a_loss() -> None:
    assert change_words(0.99, 9.89) == "improved by 0.99, +9.89%"
    assert change_words(-4.01, -40.06) == "worse by 4.01, -40.06%"
    assert change_words(0.0, None) == "no change"
    assert pct_words(9.894) == "9.89% better" and pct_words(-40.06) == "40.06% worse"
