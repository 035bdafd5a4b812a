"""progress.png, report.html and the live views, on journals made by driving the real CLI.

`build_research` makes a realistic run on the `example` template (baseline, keeps, a discard, a
crash from a syntax error, a rejected edit to prepare.py): real git refs, real SQLite. The other
report test files import it from here.
"""

from __future__ import annotations

import io
import json
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import AUTORESEARCH, ar, make_task, set_knob
from PIL import Image

from autoresearch.journal.store import Journal
from autoresearch.report.html import build_report, write_report
from autoresearch.report.live import LiveView, PlainView, watch
from autoresearch.report.plot import DPI, FIGSIZE, focus_range, write_plot
from autoresearch.report.view import infer_phase, state_from_journal
from autoresearch.trial.session import Session

# The experiments build_research makes, by seq: (status, description).
PLAN = {
    1: ("keep", "baseline"),
    2: ("keep", "raise the learning rate to 0.1"),
    3: ("discard", "fewer steps"),
    4: ("crash", "a syntax error"),
    5: ("rejected", "edit the harness"),
    6: ("keep", "momentum 0.5"),
    7: ("keep", "degree 5 polynomial, 400 steps"),
}

_REPORT_CLI: list[str] | None = None


def report_cli() -> list[str]:
    """The real `autoresearch` executable once the lead has registered these commands, else the
    commands' own group (`python -m autoresearch.report.commands`)."""
    global _REPORT_CLI
    if _REPORT_CLI is None:
        probe = subprocess.run([*AUTORESEARCH, "plot", "--help"], check=False, capture_output=True, text=True)
        _REPORT_CLI = AUTORESEARCH if probe.returncode == 0 else [sys.executable, "-m", "autoresearch.report.commands"]
    return _REPORT_CLI


def rep(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*report_cli(), *args], check=False, cwd=cwd, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def build_research(parent: Path, name: str = "task") -> Path:
    """A task with the experiments of PLAN, made through the real CLI."""
    root = make_task(parent, name=name)  # init, start --tag t, baseline (seq 1)
    set_knob(root, "LEARNING_RATE", "0.1")
    assert ar(root, "experiment", "-m", PLAN[2][1], check=False).returncode == 0
    set_knob(root, "STEPS", "50")
    assert ar(root, "experiment", "-m", PLAN[3][1], check=False).returncode == 0
    with open(root / "train.py", "a") as fh:
        fh.write("x = (\n")
    assert ar(root, "experiment", "-m", PLAN[4][1], check=False).returncode == 3
    with open(root / "prepare.py", "a") as fh:
        fh.write("# the agent was here\n")
    assert ar(root, "experiment", "-m", PLAN[5][1], check=False).returncode == 4
    set_knob(root, "MOMENTUM", "0.5")
    assert ar(root, "experiment", "-m", PLAN[6][1], check=False).returncode == 0
    set_knob(root, "DEGREE", "5")
    set_knob(root, "STEPS", "400")
    assert ar(root, "experiment", "-m", PLAN[7][1], check=False).returncode == 0
    with Session.open(root) as s:
        got = {e.seq: (e.status, e.description) for e in s.journal.experiments("t")}
    assert got == PLAN, got
    return root


def research_copy(factory: pytest.TempPathFactory, name: str) -> Path:
    """A private copy (work tree, .git, journal) of one run built once per test session: the
    report test files each get their own, so none sees another's changes, for the price of one
    build. (The journal's log paths still name the first build's files, which stay in place.)"""
    template = factory.getbasetemp() / "research-template"
    if not (template / "task" / ".autoresearch" / "journal.db").exists():
        if template.exists():
            shutil.rmtree(template)
        template.mkdir()
        build_research(template)
    copy = factory.mktemp(name) / "task"
    shutil.copytree(template / "task", copy, symlinks=True)
    return copy


@pytest.fixture(scope="module")
def research(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return research_copy(tmp_path_factory, "research")


def fake_journal(state_dir: Path, n: int, seed: int = 0, tag: str = "t") -> Journal:
    """N finished experiments written through the Journal API (no git): for scale and edge cases."""
    rng = random.Random(seed)
    journal = Journal(state_dir)
    best, t = 1.0, 1_700_000_000.0
    for i in range(n):
        exp = journal.begin(tag, f"idea {i}: " + rng.choice(["wider", "deeper", "lr up", "warmup", "no bias"]),
                            "tune", "p" * 40)
        status = "keep" if i == 0 else rng.choices(["keep", "discard", "crash", "rejected"], [1, 6, 2, 1])[0]
        exp.is_baseline = i == 0
        exp.best_before = None if i == 0 else best
        exp.started_at, exp.finished_at = t, t + 290
        exp.slot = i % 2
        t += 300
        if status in ("keep", "discard"):
            exp.metric = best - rng.uniform(0.0001, 0.01) if status == "keep" else best + rng.uniform(0, 0.05)
            exp.metrics = {"val_loss": exp.metric}
            if status == "keep":
                best = exp.metric
        else:
            exp.reason = rng.choice(["exit-1", "timeout"]) if status == "crash" else "out-of-scope"
        exp.status = status
        exp.reason = exp.reason or ("baseline" if i == 0 else "improved" if status == "keep" else "not-better")
        journal.update(exp)
    return journal


# -- plot ---------------------------------------------------------------------------------------

@pytest.mark.slow  # a real run through the CLI
def test_plot_of_a_real_run_is_a_png_of_the_expected_size(research: Path) -> None:
    out = research / "progress.png"
    out.unlink(missing_ok=True)
    proc = rep(research, "plot")
    assert "progress.png" in proc.stdout
    with Image.open(out) as img:
        img.load()
        assert img.size == (FIGSIZE[0] * DPI, FIGSIZE[1] * DPI)
        rgb = img.convert("RGB")
    # The kept points are drawn in green (#2ca02c) and the crash marks in red (#d62728).
    colors = {c for _, c in rgb.getcolors(maxcolors=1 << 20)}
    assert (0x2C, 0xA0, 0x2C) in colors
    assert (0xD6, 0x27, 0x28) in colors


def test_plot_of_an_empty_or_baseline_only_journal_does_not_crash(tmp_path: Path) -> None:
    empty = Journal(tmp_path / "empty")
    path = write_plot(empty, tmp_path / "empty.png")
    with Image.open(path) as img:
        assert img.size == (FIGSIZE[0] * DPI, FIGSIZE[1] * DPI)
    one = fake_journal(tmp_path / "one", 1)
    path = write_plot(one, tmp_path / "one.png", metric_name="val_loss")
    with Image.open(path) as img:
        img.load()
        assert img.size == (FIGSIZE[0] * DPI, FIGSIZE[1] * DPI)


def test_focus_range_spans_best_to_baseline_not_the_outliers(tmp_path: Path) -> None:
    journal = fake_journal(tmp_path / "j", 60, seed=3)
    exps = journal.experiments("t")
    journal_far = exps[5]
    journal_far.status, journal_far.metric = "discard", 50.0  # an exploded run
    journal.update(journal_far)
    exps = journal.experiments("t")
    lo, hi = focus_range(exps, maximize=False)
    keeps = [e.metric for e in exps if e.status == "keep"]
    assert lo < min(keeps) < max(keeps) < hi
    assert hi < 2.0  # the outlier at 50 does not stretch the axis
    path = write_plot(journal, tmp_path / "p.png", metric_name="val_loss")
    assert path.stat().st_size > 10_000


# -- report.html --------------------------------------------------------------------------------

def page_data(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="ar-data">(.*?)</script>', page, re.DOTALL)
    assert match, "the page carries its data as one JSON block"
    return json.loads(match.group(1))


@pytest.mark.slow  # a real run through the CLI
def test_report_is_self_contained_and_carries_every_experiment(research: Path) -> None:
    proc = rep(research, "report")
    assert "report.html" in proc.stdout
    page = (research / "report.html").read_text()
    # Nothing is fetched: no external scripts, styles or images.
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page)
    assert "<style>" in page and "<script>" in page and "data:image/png;base64," in page
    data = page_data(page)
    rows = {r["s"]: r for r in data["rows"]}
    assert {s: (r["st"], r["ds"]) for s, r in rows.items()} == PLAN
    assert "+LEARNING_RATE = 0.1" in data["diffs"]["2"]
    assert "1" not in data["diffs"] or data["diffs"]["1"] == ""  # the baseline changed nothing
    assert "+# the agent was here" in data["diffs"]["5"]  # every attempt is a commit, rejected ones too
    assert "SyntaxError" in data["logs"]["4"]
    # Summary: baseline, best, improvement, counts, keep rate.
    with Session.open(research) as s:
        exps = s.journal.experiments("t")
    base, best = exps[0].metric, exps[6].metric
    summary = page[page.index('id="summary"'):page.index('id="chart"')]
    assert f"{base:.6f}" in summary and f"{best:.6f}" in summary
    assert f"{100 * (base - best) / base:.2f}% better" in summary
    # no re-measurement: the same card as before gains.py, best minus baseline, and no note
    assert ('<div class="label">improvement</div><div class="value">0.032326</div>'
            '<div class="note">78.00% better</div>') in summary
    assert 'id="gain-note"' not in page and "like-for-like" not in page
    assert "4 keep · 1 discard · 1 crash · 1 rejected" in summary
    assert "50.0%" in summary  # 3 keeps out of 6 experiments after the baseline
    # Top hits are ranked by improvement: seq 2, then 7, then 6.
    hits = page[page.index('id="top-hits"'):]
    gains = {seq: -(rows[seq]["d"]) for seq in (2, 6, 7)}
    order = sorted(gains, key=gains.get, reverse=True)
    assert order == [2, 7, 6]
    positions = [hits.index(f'href="#open={seq}"') for seq in order]
    assert positions == sorted(positions)


def test_report_inlines_its_css_and_script_from_package_data(tmp_path: Path) -> None:
    from importlib import resources

    assets = resources.files("autoresearch.report") / "assets"
    css = (assets / "report.css").read_text(encoding="utf-8")
    js = (assets / "report.js").read_text(encoding="utf-8")
    assert "--keep:" in css and "function drawChart()" in js
    # Pasted into <style>/<script>, they must not close their own element or pull anything in.
    assert "</style" not in css.lower() and "</script" not in js.lower()
    assert not re.search(r"url\(|@import", css) and not re.search(r"fetch\(|XMLHttpRequest|import\(", js)
    exps = fake_journal(tmp_path / "j", 5, seed=3).experiments("t")
    page = build_report(exps, task="x", tag="t", metric="val_loss", maximize=False, static_chart=False)
    assert f"<style>\n{css}</style>" in page and f"<script>\n{js}</script>" in page


def test_report_shows_noise_and_holdout_once_measured(tmp_path: Path) -> None:
    journal = fake_journal(tmp_path / "j", 20, seed=1)
    from autoresearch.journal.records import NoiseRecord

    journal.add_noise(NoiseRecord(tag="t", commit_sha="c" * 40, n=5, mean=0.9, median=0.9, std=0.0021, mad=0.0015,
                                  min=0.897, max=0.903, suggested_min_delta=0.0042, values=[0.9] * 5))
    exps = journal.experiments("t")
    for e in exps:
        if e.status == "keep":
            e.holdout = (e.metric or 0) + 0.01
    without = build_report(exps, task="x", tag="t", metric="val_loss", maximize=False, static_chart=False)
    assert "noise (std)" not in without and "holdout_loss" not in without
    page = build_report(exps, task="x", tag="t", metric="val_loss", maximize=False, holdout="holdout_loss",
                        noise=journal.latest_noise("t"), static_chart=False, advice="[verdict] min_delta = 0.0042")
    assert "noise (std)" in page and "0.0021" in page and "suggested [verdict] min_delta = 0.0042" in page
    assert "holdout_loss (held out)" in page
    hits = page[page.index('id="top-hits"'):]
    assert "<th>holdout_loss</th>" in hits
    # Throughput per slot: the fake journal alternates two slots.
    assert "2 slots" in page and "slot 0:" in page and "slot 1:" in page


def test_report_of_1000_experiments_is_built_fast_and_stays_compact(tmp_path: Path) -> None:
    journal = fake_journal(tmp_path / "j", 1000, seed=7)
    exps = journal.experiments("t")
    diff = "".join(f"@@ -{i},1 +{i},1 @@\n-A = {i}\n+A = {i + 1}\n" for i in range(8))
    diffs = {e.seq: diff for e in exps}
    began = time.perf_counter()
    page = build_report(exps, task="x", tag="t", metric="val_loss", maximize=False, diffs=diffs, static_chart=False)
    seconds = time.perf_counter() - began
    assert seconds < 5.0, seconds
    assert len(page) < 3_000_000, len(page)
    # The rows are not pre-rendered as HTML: the script draws them (and details only on demand).
    assert page.count("<tr") < 40
    assert len(page_data(page)["rows"]) == 1000


# -- live views ---------------------------------------------------------------------------------

def _edit_and_run(root: Path, view, knob: str, value: str, message: str):
    from autoresearch.trial.lifecycle import experiment

    set_knob(root, knob, value)
    with Session.open(root) as s:
        s.acquire("test")
        return experiment(s, message, on_phase=view.on_phase)


@pytest.mark.slow  # a real run through the CLI
def test_plain_and_live_views_follow_real_experiments(tmp_path: Path) -> None:
    from rich.console import Console

    root = make_task(tmp_path)
    # PlainView: one line per verdict, nothing else.
    out = io.StringIO()
    with Session.open(root) as s:
        plain = PlainView(s, stream=out)
    with plain:
        _edit_and_run(root, plain, "LEARNING_RATE", "0.1", "lr up")
        _edit_and_run(root, plain, "STEPS", "50", "fewer steps")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert re.search(r"seq 2 keep: val_loss \d\.\d{6} \(-\d\.\d{6}\) \| best \d\.\d{6} \| lr up$", lines[0])
    assert re.search(r"seq 3 discard: val_loss \d\.\d{6} \(\+\d\.\d{6}\) .*\| fewer steps$", lines[1])

    # LiveView without a session (as `run` makes it): it learns the metric and best as it goes.
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120, color_system=None)
    phases: list[str] = []
    view = LiveView(console=console, refresh_per_second=20)
    with view:
        original = view.on_phase

        def spy(phase: str, info: dict) -> None:
            phases.append(phase)
            original(phase, info)
            if phase == "running":
                # Mid-run, the panel names the phase and shows the budget bar.
                text = _render_text(view)
                assert "seq 4 running" in text and "/ 10s" in text

        view.on_phase = spy  # type: ignore[method-assign]
        exp = _edit_and_run(root, view, "MOMENTUM", "0.5", "momentum")
    assert exp.status == "keep"
    assert phases[:2] == ["guarding", "running"] and phases[-1] == "done"
    text = _render_text(view)
    assert f"best {exp.metric:.6f} val_loss (seq 4)" in text
    assert "keep 1" in text and "momentum" in text and "waiting for the next experiment" in text
    assert "momentum" in buf.getvalue()  # it drew to its console


def _render_text(view: LiveView) -> str:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(view.__rich__())
    return console.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.slow  # a real run through the CLI
def test_watch_reads_a_running_experiment_from_the_journal(research: Path, tmp_path: Path) -> None:
    from rich.console import Console

    with Session.open(research) as s:
        exp = s.journal.begin("t", "try a cosine schedule", "claude", s.best_commit("t"))
        try:
            assert infer_phase(s, exp)[0] == "guarding"
            run_dir = s.run_dir(exp.seq)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "run.log").write_text("step 1\n")
            phase, label, since = infer_phase(s, exp)
            assert (phase, label) == ("running", "run") and abs(since - time.time()) < 60
            state = state_from_journal(s)
            assert state.seq == exp.seq and state.phase == "running" and state.best_seq == 7
            buf = io.StringIO()
            watch(research, once=True, console=Console(file=buf, width=120, force_terminal=True, color_system=None))
            panel = buf.getvalue()
            assert f"seq {exp.seq} running · try a cosine schedule" in panel
            assert "degree 5 polynomial" in panel  # the last verdicts
            plain = rep(research, "watch", "--once", "--plain").stdout
            assert f"seq {exp.seq} running: try a cosine schedule" in plain
            assert "seq 7 keep: val_loss" in plain and "seq 4 crash: exit-1" in plain
            (run_dir / "run.evaluate.log").write_text("")
            assert infer_phase(s, exp)[0] == "evaluating"
        finally:
            s.journal.db.execute("DELETE FROM experiments WHERE seq = ?", (exp.seq,))
            shutil.rmtree(s.run_dir(exp.seq), ignore_errors=True)


@pytest.mark.slow  # a real run through the CLI
def test_write_report_api_for_the_loop(research: Path, tmp_path: Path) -> None:
    with Session.open(research) as s:
        path = write_report(s, tmp_path / "out" / "r.html", static_chart=False)
        png = write_plot(s, tmp_path / "out" / "p.png")
    assert path.read_text().startswith("<!doctype html>")
    assert "data:image/png" not in path.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
