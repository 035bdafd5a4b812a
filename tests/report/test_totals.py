"""The agents' totals: failed attempts count, the baseline and replays do not, an unpriced
attempt is said to be unpriced, and the report's summary and `review` carry the same line."""

from __future__ import annotations

import io

from rich.console import Console

from autoresearch.journal.records import Experiment
from autoresearch.report.html import build_report
from autoresearch.report.review import Review, render_review, summarize
from autoresearch.report.totals import totals


def exp(seq: int, status: str, **kw) -> Experiment:
    return Experiment(seq=seq, tag="t", status=status, started_at=1000.0 + seq, finished_at=1000.5 + seq,
                      commit_sha=f"{seq:040x}", **kw)


EXPERIMENTS = [
    exp(1, "keep", is_baseline=True, metric=1.0, tokens_in=999, cost_usd=9.0),  # never counted
    exp(2, "keep", metric=0.9, best_before=1.0, tokens_in=1000, tokens_out=50, cost_usd=0.012, propose_seconds=30),
    exp(3, "crash", reason="agent-error", tokens_in=2000, tokens_out=10, cost_usd=0.02, propose_seconds=60),
    exp(4, "discard", metric=0.95, best_before=0.9, tokens_in=500, tokens_out=5, propose_seconds=30),  # no price
    exp(5, "discard", metric=0.95, best_before=0.9, details={"replay_of": 4}, cost_usd=5.0),  # a replay: none
]


def test_totals_count_failed_attempts_and_say_what_is_unpriced():
    t = totals(EXPERIMENTS)
    assert (t.proposals, t.tokens_in, t.tokens_out, t.priced) == (3, 3500, 65, 2)
    assert abs((t.cost_usd or 0) - 0.032) < 1e-12 and t.agent_seconds == 120
    assert t.line() == "3 proposals, 3,500 tokens in / 65 out, $0.032 (2 of 3 priced), 2.0 min of agent time"
    assert totals([EXPERIMENTS[0]]).line() == "0 proposals, no tokens reported, cost not reported, 0 s of agent time"


def test_review_and_report_show_the_totals():
    line = totals(EXPERIMENTS).line()
    page = build_report(EXPERIMENTS, task="x", tag="t", metric="loss", maximize=False, static_chart=False)
    assert "agent time" in page and line in page
    out = io.StringIO()
    review = Review(tag="t", metric="loss", maximize=False, holdout="", summary=summarize(EXPERIMENTS, False),
                    kept=[], crashes={}, rejections={}, closest=[], since_last_keep=2)
    render_review(review, Console(file=out, width=200))
    assert f"agent: {line}" in out.getvalue()
