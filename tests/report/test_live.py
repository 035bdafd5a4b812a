"""The views of a running loop show a decision that needs many runs as it happens: a line per
confirmation run in a pipe, a progress bar in the live panel."""

from __future__ import annotations

import io

from rich.console import Console

from autoresearch.journal.records import Experiment
from autoresearch.report.live import LiveView, PlainView
from autoresearch.report.view import render_state


def events(view) -> None:  # noqa: ANN001 - either view
    view.on_phase("running", {"seq": 7, "label": "run", "budget": 60.0})
    view.on_phase("confirming", {"seq": 7})
    view.on_phase("confirming", {"seq": 7, "run": 1, "of": 20, "paired": True})
    view.on_phase("confirming", {"seq": 7, "run": 2, "of": 20, "paired": True, "best": 1.61, "candidate": 1.49,
                                 "diff": -0.12, "half": None})
    view.on_phase("running", {"seq": 7, "label": "confirm-2-candidate", "budget": 60.0})
    view.on_phase("confirming", {"seq": 7, "run": 7, "of": 20, "paired": True, "best": 1.61, "candidate": 1.49,
                                 "diff": -0.07, "half": 0.03})


def test_a_pipe_gets_a_line_per_confirmation_run() -> None:
    out = io.StringIO()
    view = PlainView(stream=out)
    events(view)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].endswith("seq 7 run 1/20")
    assert lines[2].endswith("seq 7 run 7/20: candidate 1.49 vs best 1.61, paired diff -0.07 ± 0.03")
    view.on_phase("done", {"experiment": Experiment(seq=7, tag="t", status="discard", started_at=0.0, metric=1.5,
                                                    best_before=1.4, reason="unconfirmed", description="x")})
    assert "seq 7 discard" in out.getvalue().splitlines()[-1]
    assert view.state.confirm == {}  # the next experiment starts without a bar


def test_the_live_panel_shows_how_far_the_confirmation_is() -> None:
    view = LiveView(console=Console(file=io.StringIO(), width=120))
    events(view)
    console = Console(file=io.StringIO(), width=160, force_terminal=False)
    console.print(render_state(view.state))
    panel = console.file.getvalue()  # type: ignore[attr-defined]
    assert "confirming: run 7/20: candidate 1.49 vs best 1.61, paired diff -0.07 ± 0.03" in panel


def test_a_confirmed_keeps_line_states_its_evidence_not_its_stale_bar() -> None:
    # the bar (886.82) was re-measured during a burst; the paired confirmation measured ~5 %
    confirm = {"test": "sequential", "best_runs": [510.0, 515.0, 505.0], "candidate_runs": [485.0, 488.0, 480.0]}
    keep = Experiment(seq=9, tag="t", status="keep", started_at=0.0, metric=486.0, best_before=886.82,
                      reason="improved", description="cache the parser", details={"confirm": confirm})
    out = io.StringIO()
    view = PlainView(stream=out)
    view.state.maximize = False
    view.on_phase("done", {"experiment": keep})
    line = out.getvalue()
    assert "improved by 25.67 ± " in line and "(+5.03% ±" in line and "6 runs side by side with its parent" in line
    assert "-400" not in line and "886" not in line  # not the metric against the stale bar
