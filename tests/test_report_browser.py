"""report.html in a real browser: headless Chromium renders the table and the chart, a row opens
its diff (`#open=SEQ`), and a page of 1,000 experiments renders quickly."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageStat
from report.test_report import PLAN, fake_journal, rep, research_copy

from autoresearch.report.html import build_report

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium is not installed at /usr/bin/chromium "
                       "(Debian: apt-get install -y chromium); the browser tests need it"),
]

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=5000"]


def chromium(tmp_path: Path, url: str, *extra: str) -> str:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    proc = subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *extra, url],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shutil.rmtree(profile, ignore_errors=True)
    return proc.stdout


def rows(dom: str) -> list[int]:
    return [int(s) for s in re.findall(r'<tr class="row[^"]*" data-seq="(\d+)"', dom)]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = research_copy(tmp_path_factory, "browser")
    rep(root, "report")
    return root / "report.html"


def test_report_renders_table_chart_and_opens_a_rows_diff(report: Path, tmp_path: Path) -> None:
    dom = chromium(tmp_path, f"{report.as_uri()}#open=2", "--dump-dom")
    assert 'data-ready="1"' in dom, "the page's script ran to the end"
    assert rows(dom) == sorted(PLAN)
    # The chart: one point per measured experiment (4 keeps and the discard, which is far above
    # the focused range and so pinned to its top edge), marks for the crash and the rejection,
    # and the running-best line.
    assert len(re.findall(r'<circle[^>]*class="pt keep"', dom)) == 4
    assert len(re.findall(r'class="pt pinned discard" data-seq="3"', dom)) == 1
    assert 'class="pt crash"' in dom and 'class="pt rejected"' in dom and 'class="best"' in dom
    # Row 2 was opened by the URL: its detail row holds its diff and its log tail.
    detail = re.search(r'<tr class="detail" data-seq="2">(.*?)</tr>', dom, re.DOTALL)
    assert detail, "row 2 is expanded"
    assert '<span class="add">+LEARNING_RATE = 0.1' in detail.group(1)
    assert '<span class="del">-LEARNING_RATE = 0.05' in detail.group(1)
    assert "val_loss:" in detail.group(1)
    assert dom.count('class="detail"') == 1  # the other rows stay closed (built on demand)

    shot = tmp_path / "report.png"
    chromium(tmp_path, report.as_uri(), "--window-size=1400,1000", f"--screenshot={shot}", "--hide-scrollbars")
    with Image.open(shot) as img:
        assert img.size == (1400, 1000)
        spread = ImageStat.Stat(img.convert("L")).stddev[0]
    assert spread > 10, "the screenshot is not a blank page"


def test_report_opens_a_crash_with_its_log(report: Path, tmp_path: Path) -> None:
    dom = chromium(tmp_path, f"{report.as_uri()}#open=4,5", "--dump-dom")
    crash = re.search(r'<tr class="detail" data-seq="4">(.*?)</tr>', dom, re.DOTALL)
    rejected = re.search(r'<tr class="detail" data-seq="5">(.*?)</tr>', dom, re.DOTALL)
    assert crash and rejected
    assert "SyntaxError" in crash.group(1) and '<span class="add">+x = (' in crash.group(1)
    # every attempt is a commit: the rejected one shows its commit and the harness edit it tried
    assert "rejected (harness-modified)" in rejected.group(1) and "commit " in rejected.group(1)


def test_a_report_of_1000_experiments_renders_fast(tmp_path: Path) -> None:
    journal = fake_journal(tmp_path / "j", 1000, seed=11)
    exps = journal.experiments("t")
    diffs = {e.seq: f"@@ -1 +1 @@\n-A = {e.seq}\n+A = {e.seq + 1}\n" for e in exps if e.status != "rejected"}
    page = tmp_path / "big.html"
    page.write_text(build_report(exps, task="big", tag="t", metric="val_loss", maximize=False, diffs=diffs))
    dom = chromium(tmp_path, f"{page.as_uri()}#open=500", "--dump-dom")
    assert len(rows(dom)) == 1000
    assert '<tr class="detail" data-seq="500">' in dom and "+A = 501" in dom
    measured = sum(1 for e in exps if e.status in ("keep", "discard"))
    assert len(re.findall(r'class="pt (?:pinned )?(?:keep|discard)', dom)) == measured
    render_ms = int(re.search(r'data-render-ms="(\d+)"', dom).group(1))
    assert render_ms < 3000, f"the page took {render_ms} ms to render"
