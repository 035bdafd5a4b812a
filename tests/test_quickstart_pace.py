"""The quickstart ends in its time, whatever it finds: runs slower than the demo's time are
stopped at its end and the candidate in flight is reported as undecided, never as a keep or a
discard; in a pipe a line comes at least once a minute. Through the real CLI."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from conftest import AUTORESEARCH, git, make_task

from autoresearch.cli import _pace
from autoresearch.config.task import load_config
from autoresearch.scaffold import init_from_template, with_budget


@pytest.mark.slow
@pytest.mark.serial  # it times the wall clock
def test_a_slow_quickstart_ends_in_its_time_and_says_undecided(tmp_path: Path) -> None:
    root = make_task(tmp_path, start=False, baseline=False)
    train = root / "train.py"  # each run waits 30 s (not charged on the cpu clock: it is not over budget)
    train.write_text(train.read_text().replace('if __name__ == "__main__":',
                                               'if __name__ == "__main__":\n    import time; time.sleep(30)'))
    git(root, "commit", "-qam", "slow runs")
    start = time.monotonic()
    proc = subprocess.Popen([*AUTORESEARCH, "quickstart", str(root), "-n", "20", "--minutes", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    stamped = [(time.monotonic() - start, line.rstrip()) for line in proc.stdout]
    assert proc.wait(timeout=120) == 0, stamped
    took = time.monotonic() - start
    text = "\n".join(line for _, line in stamped)
    assert took < 90, text  # one minute, plus the interpreter's start and the report on a busy machine
    gaps = [b - a for (a, _), (b, _) in zip(stamped, stamped[1:])]
    assert stamped[0][0] < 30 and max(gaps) < 60, stamped
    assert "stopping the experiment in flight" in text
    assert "UNDECIDED (seq 2" in text and "undecided" in text.split("UNDECIDED")[0], text
    assert "quickstart: done in" in text


def test_the_heartbeat_names_the_phase_in_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pace, "BEAT_S", 0.3)
    lines: list[str] = []
    pace = _pace.Pace(None, time.monotonic(), soft_s=1e9, hard_s=1e9, echo=lines.append, beat=True)  # type: ignore[arg-type]
    with pace:
        pace.tap("running", {"seq": 3, "label": "confirm-1-candidate"})
        time.sleep(1.6)
    assert lines and "now running (experiment 3, confirm-1-candidate)" in lines[-1]
    assert "1 runs so far" in lines[-1]


def test_no_heartbeat_under_the_live_view(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pace, "BEAT_S", 0.1)
    lines: list[str] = []
    with _pace.Pace(None, time.monotonic(), soft_s=1e9, hard_s=1e9, echo=lines.append, beat=False):  # type: ignore[arg-type]
        time.sleep(1.2)
    assert lines == []


def test_clock_text() -> None:
    assert _pace.clock_text(0) == "0:00" and _pace.clock_text(61.7) == "1:01" and _pace.clock_text(-3) == "0:00"


class _Busy:
    """What request_stop needs of a session whose loop is running."""

    def __init__(self, folder: Path) -> None:
        self.state_dir = folder

    def is_busy(self) -> bool:
        return True


def test_no_new_experiment_once_a_run_no_longer_fits(tmp_path: Path) -> None:
    """The runs so far took about a second each and under 1.5 of them fit before the hard
    deadline: the stop note (after the current experiment) is left, long before the fixed soft
    deadline (never, here), and the hard one has not come."""
    lines: list[str] = []
    pace = _pace.Pace(_Busy(tmp_path), time.monotonic(), soft_s=1e9, hard_s=3.5, echo=lines.append,  # type: ignore[arg-type]
                      beat=False)
    with pace:
        pace.tap("running", {"seq": 1, "label": "run"})
        time.sleep(0.4)
        pace.tap("running", {"seq": 1, "label": "repeat-1"})
        time.sleep(2.0)  # the watch looks every second: at 2 s, 1.5 s are left, under 1.5 runs of 2 s
    assert (tmp_path / "stop").read_text() == "after-current"
    assert any("no new experiment starts" in line for line in lines) and not pace.hard_sent


def test_the_demo_budget_is_the_folders_own_so_later_commands_measure_the_same(tmp_path: Path) -> None:
    """The attack: the quickstart claims results on 20 s runs, then `noise` (or a later `run`) in
    the same folder measures on the template's 60 s and finds a "best" 16 % better than its
    claim. The demo's budget is written into the copy's config, committed and locked."""
    root = tmp_path / "qs"
    init_from_template(root, "tinylm", budget=20)
    assert load_config(root).budget.seconds == 20
    text = (root / "autoresearch.toml").read_text()
    assert "seconds = 20  # the quickstart's budget (the template's own: 60)" in text
    assert git(root, "status", "--porcelain") == ""  # committed with the scaffold
    out = subprocess.run([*AUTORESEARCH, "verify"], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr  # and locked as it is


def test_a_budget_for_an_existing_demo_folder_is_refused_not_mixed(tmp_path: Path) -> None:
    root = tmp_path / "qs"
    init_from_template(root, "example")
    head = git(root, "rev-parse", "HEAD")
    out = subprocess.run([*AUTORESEARCH, "quickstart", str(root), "--budget", "3"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "[budget] seconds = 10" in out.stderr and "new folder" in out.stderr and "Traceback" not in out.stderr
    assert git(root, "rev-parse", "HEAD") == head and not (root / "results.tsv").exists()


@pytest.mark.parametrize("toml, expected", [
    ('[budget]\nclock = "cpu"\ngrace = 2\nseconds = 10\n[verdict]\nseconds = 5\n',
     '[budget]\nclock = "cpu"\ngrace = 2\nseconds = 3  # the quickstart\'s budget (the template\'s own: 10)\n'
     '[verdict]\nseconds = 5\n'),
    ('[budget]\nclock = "cpu"\n', '[budget]\nseconds = 3\nclock = "cpu"\n'),
    ('[task]\nname = "t"\n', '[task]\nname = "t"\n\n[budget]\nseconds = 3\n'),
])
def test_with_budget_sets_only_the_budget_section(toml: str, expected: str) -> None:
    assert with_budget(toml, 3) == expected
