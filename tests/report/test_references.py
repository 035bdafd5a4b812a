"""The best's reference re-measurements in report.html and progress.png.

The events are made the way a user gets them: `autoresearch noise` (why "noise", runs of role
`noise`) and the loop's drift rule on the drifting task of trial/test_reference.py (why "drift", runs of
role `reference`), or, without a noise record, its scheduled re-check (why "recheck"). Then the
real `report` / `plot` commands draw them. They are not experiments: no row, no count.
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import sys
from pathlib import Path

import pytest
from conftest import ar, git, make_task
from PIL import Image
from report.test_report import page_data, rep, research_copy
from test_report_browser import CHROMIUM, chromium, rows
from trial.test_reference import AGENT, TRAIN

pytestmark = pytest.mark.slow  # real loops through the CLI

ORANGE = (0xFF, 0x7F, 0x0E)  # plot.REF_COLOR
COMMENT_AGENT = 'import sys\nopen("train.py", "a").write(f"# note {sys.argv[1]}\\n")\nprint("summary: a comment")\n'


def drifting_task(parent: Path, agent: str, runs: int, *, noise: bool) -> tuple[Path, str]:
    """trial/test_reference.py's task (every run after the fourth is 5 units slower), a loop of RUNS
    experiments driven by AGENT; with NOISE, `noise -n 3` first. Returns the root and the
    loop's stderr (where it says that it re-measured)."""
    cache = Path(os.environ["AUTORESEARCH_CACHE"])
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "drift-count").unlink(missing_ok=True)
    root = make_task(parent, start=False, config_edits={
        "[agent]": '[sandbox]\nkind = "none"\n\n[verdict]\nmin_delta = 0.05\n\n[agent]'})
    (root / "train.py").write_text(TRAIN)
    git(root, "commit", "-qam", "a drifting task")
    ar(root, "lock")
    ar(root, "start", "--tag", "t")
    ar(root, "baseline")
    if noise:
        ar(root, "noise", "-n", "3")
    (parent / "agent.py").write_text(agent)
    out = ar(root, "run", "-q", "-n", str(runs), "--agent", f"command:{sys.executable} {parent / 'agent.py'} {{seq}}")
    return root, out.stderr


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with pytest.MonkeyPatch.context() as mp:  # conftest's cache isolation is per test, this is per module
        if "AUTORESEARCH_CACHE" not in os.environ:
            mp.setenv("AUTORESEARCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        root, stderr = drifting_task(tmp_path_factory.mktemp("drifted"), AGENT, 6, noise=True)
    assert "the best's reference was re-measured" in stderr, stderr
    return root


def section(page: str) -> str:
    match = re.search(r'<section id="references">(.*?)</section>', page, re.DOTALL)
    assert match, "the page has a references section"
    return match.group(1)


def test_report_draws_and_lists_reference_events_that_count_as_no_experiment(drifted: Path) -> None:
    (drifted / "report.html").unlink(missing_ok=True)
    rep(drifted, "report")
    page = (drifted / "report.html").read_text()
    data = page_data(page)
    db = sqlite3.connect(drifted / ".autoresearch" / "journal.db")
    best = db.execute("SELECT commit_sha FROM experiments WHERE seq = 1").fetchone()[0]
    noise_runs = [r[0] for r in db.execute("SELECT metric FROM runs WHERE role = 'noise' ORDER BY id")]
    ref_runs = [r[0] for r in db.execute("SELECT metric FROM runs WHERE role = 'reference' ORDER BY id")]
    assert len(noise_runs) == 3 and len(ref_runs) == 3

    # The chart's data: `noise` after the baseline, then the drift re-measurement after the three
    # candidates that lost by 5 units (seq 2-4), each with its runs and the bar it replaced.
    refs = data["refs"]
    assert [(r["a"], r["w"], r["c"]) for r in refs] == [(1, "noise", best), (4, "drift", best)]
    assert refs[0]["o"] == pytest.approx(10.01) and refs[0]["v"] == pytest.approx(10.01)
    assert refs[0]["rn"] == noise_runs
    assert refs[1]["o"] == pytest.approx(10.01) and refs[1]["v"] == pytest.approx(15.01)
    assert refs[1]["rn"] == ref_runs
    lo, hi = data["meta"]["focus"]
    assert lo < 10.01 and hi > 15.01  # the drifted level is in view, not pinned to the edge

    # The table: one row per event, after which seq, commit, old -> new, why, the runs.
    table = section(page)
    assert "Reference re-measurements" in table
    rows = re.findall(r'<tr data-after="(\d+)">(.*?)</tr>', table, re.DOTALL)
    assert [a for a, _ in rows] == ["1", "4"]
    drift = rows[1][1]
    assert "after seq 4" in drift and best[:7] in drift
    assert "10.01 → 15.01 (+5)" in drift
    assert "drift suspected" in drift
    assert "3: " + ", ".join(f"{v:.6g}" for v in ref_runs) in drift
    assert "`autoresearch noise`" in rows[0][1]

    # Never experiments: 7 rows (baseline + 6), the summary counts only them.
    assert db.execute("SELECT COUNT(*) FROM experiments").fetchone()[0] == 7
    assert sorted(r["s"] for r in data["rows"]) == list(range(1, 8))
    summary = page[page.index('id="summary"'):page.index('id="chart"')]
    assert '<div class="label">experiments</div><div class="value">7</div>' in summary
    assert "2 keep · 5 discard · 0 crash · 0 rejected" in summary
    assert "16.7%" in summary  # keep rate: 1 of 6 candidates (1 of 8 if re-measurements counted)


def test_plot_draws_reference_events_in_their_own_colour(drifted: Path, tmp_path: Path) -> None:
    rep(drifted, "plot", "-o", str(tmp_path / "with.png"))
    with Image.open(tmp_path / "with.png") as img:
        colors = {c for _, c in img.convert("RGB").getcolors(maxcolors=1 << 20)}
    assert ORANGE in colors


def test_report_and_plot_without_reference_events_show_none(tmp_path_factory: pytest.TempPathFactory,
                                                           tmp_path: Path) -> None:
    root = research_copy(tmp_path_factory, "noref")
    rep(root, "report")
    page = (root / "report.html").read_text()
    assert page_data(page)["refs"] == []
    assert 'id="references"' not in page and "Reference re-measurements" not in page
    rep(root, "plot", "-o", str(tmp_path / "without.png"))
    with Image.open(tmp_path / "without.png") as img:
        colors = {c for _, c in img.convert("RGB").getcolors(maxcolors=1 << 20)}
    assert ORANGE not in colors


def test_a_scheduled_recheck_is_labelled_as_such(tmp_path: Path) -> None:
    # Without a noise record the drift rule cannot judge "far", so only the schedule (every 20
    # experiments) re-measures: 20 comment-only candidates on the slowed machine.
    root, stderr = drifting_task(tmp_path, COMMENT_AGENT, 20, noise=False)
    assert "scheduled re-check" in stderr, stderr
    rep(root, "report")
    page = (root / "report.html").read_text()
    refs = page_data(page)["refs"]
    assert [(r["a"], r["w"]) for r in refs] == [(21, "recheck")]
    assert refs[0]["v"] == pytest.approx(15.01) and len(refs[0]["rn"]) == 3
    assert "scheduled re-check" in section(page)
    assert '<div class="label">experiments</div><div class="value">21</div>' in page


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium is not installed at /usr/bin/chromium")
def test_the_chart_draws_reference_markers_in_a_browser(drifted: Path, tmp_path: Path) -> None:
    rep(drifted, "report")
    dom = chromium(tmp_path, (drifted / "report.html").as_uri(), "--dump-dom")
    assert 'data-ready="1"' in dom, "the page's script ran to the end"
    # one diamond per event (the legend's own diamond has no data-after), their runs as rings
    assert re.findall(r'class="pt ref" data-after="(\d+)"', dom) == ["1", "4"]
    assert len(re.findall(r'class="ref-run"', dom)) == 6
    assert dom.count('class="refline"') == 3  # two steps and the legend's sample
    assert "reference re-measured" in dom and "the best's reference" in dom
    assert rows(dom) == list(range(1, 8))  # the table still lists experiments only


# -- the session's gain when the bar moved (autoresearch/report/gains.py) ---------------------------------
# The drifted run: baseline 10.01 on the quiet machine, the bar re-measured at 15.01 after the
# slowdown, one real keep (LEVEL 10 -> 9) at 14.02 against it. Best minus baseline reads 4.01
# worse (-40.06%); the session's real gain is 0.99 (+9.89% of the baseline).
GAIN = "improved by 0.99, +9.89%"
RAW = "raw best vs baseline (14.02 vs 10.01, worse by 4.01, -40.06%) is not a like-for-like comparison"


def test_review_leads_with_the_keeps_gain_and_says_why_best_minus_baseline_is_not_it(drifted: Path) -> None:
    out = rep(drifted, "review").stdout
    assert "baseline 10.010000 -> best 14.020000 as measured (not like-for-like), at seq 5" in out
    assert f"gain: {GAIN}, the keeps summed" in out
    assert "the best was re-measured after the baseline" in out and RAW in out
    assert "% better" not in out.replace("9.89%", "")  # no "-40.06% better" anywhere
    s = json.loads(rep(drifted, "review", "--json").stdout)["summary"]
    assert s["remeasured"] is True
    assert s["improvement"] == pytest.approx(0.99) and s["improvement_pct"] == pytest.approx(9.89, abs=0.01)
    assert s["raw_improvement"] == pytest.approx(-4.01) and s["raw_improvement_pct"] == pytest.approx(-40.06, abs=0.01)
    assert s["noise"]["improvement_in_std"] > 0  # judged on the real gain, not the drifted difference


def test_report_headline_shows_the_keeps_gain_the_raw_figure_and_the_note(drifted: Path) -> None:
    rep(drifted, "report")
    page = (drifted / "report.html").read_text()
    summary = page[page.index('id="summary"'):page.index('id="chart"')]
    assert ('<div class="label">improvement (sum of keeps)</div><div class="value">0.99</div>'
            '<div class="note">9.89% better · each keep vs the bar of its time</div>') in summary
    assert ('<div class="label">raw best vs baseline</div><div class="value">-4.01</div>'
            '<div class="note">40.06% worse · not like-for-like</div>') in summary
    assert "40.06% better" not in summary
    assert 'id="gain-note"' in summary and RAW in summary


def test_status_states_the_keeps_gain_with_the_note(drifted: Path) -> None:
    out = ar(drifted, "status").stdout
    assert f"gain     {GAIN}: 1 keep, each against the bar of its time" in out
    assert "note     the best was re-measured after the baseline" in out and RAW in out
    gain = json.loads(ar(drifted, "status", "--json").stdout)["gain"]
    assert gain["remeasured"] is True and gain["headline"] == pytest.approx(0.99)
    assert gain["raw"] == pytest.approx(-4.01) and gain["shift"] == pytest.approx(-5.0)
    assert [(s["seq"], s["bar"], s["metric"]) for s in gain["steps"]] == [(5, 15.01, 14.02)]


def test_quickstart_plot_and_live_view_summaries_agree(drifted: Path) -> None:
    # quickstart's closing lines, progress.png's title and the live panel's head, from the
    # same journal (quickstart itself runs tune on its own template)
    from rich.console import Console

    from autoresearch.report.gains import headline_lines, session_gain
    from autoresearch.report.plot import _title
    from autoresearch.report.view import render_state, state_from_journal
    from autoresearch.trial.session import Session

    with Session.open(drifted) as s:
        exps = s.journal.experiments("t")
        state = state_from_journal(s)
    lines = headline_lines(session_gain(exps, maximize=False), None)
    assert lines[0] == f"gain     {GAIN}: 1 keep, each against the bar of its time"
    assert RAW in lines[1]
    title = _title(exps, "val_loss", False, "t")
    assert "baseline 10.01 → best 14.02 (not like-for-like)" in title
    assert "keeps gained 0.99 (9.89% better) against the bar of their time" in title
    console = Console(width=240, record=True, file=io.StringIO())
    console.print(render_state(state))
    head = console.export_text()
    assert "9.89% better (sum of keeps: the bar was re-measured" in head and "40.06%" not in head
