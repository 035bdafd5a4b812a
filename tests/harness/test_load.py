"""How busy the machine was during a run (autoresearch/harness/load.py): real CPU hogs are seen;
the run's own CPU time is not counted as load; stolen time is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ar, git, make_task

from autoresearch.harness.load import load_between, load_words, sample_cpu, was_busy

TICK = os.sysconf("SC_CLK_TCK")


def stat_line(user: float, system: float, idle: float, steal: float = 0.0) -> str:
    """A /proc/stat first line, from seconds."""
    j = [round(v * TICK) for v in (user, 0, system, idle, 0, 0, 0, steal)]
    return "cpu  " + " ".join(map(str, j)) + " 0 0\n"


def test_two_cpu_hogs_make_the_machine_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTORESEARCH_PROC_STAT")  # the real machine
    cpus = os.cpu_count() or 1
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cpus)]
    try:
        time.sleep(0.3)  # the hogs are running
        before = sample_cpu()
        time.sleep(1.0)
        load = load_between(before, sample_cpu())
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert load is not None and load.busy, load
    assert load.others >= 0.75 * cpus and load.machine >= 0.9  # the hogs are "the rest of the machine"


def test_the_runs_own_cpu_is_not_load(tmp_path: Path) -> None:
    # The machine's readings say it was busy exactly by the run's own CPU time (a fake /proc/stat:
    # the real one here has the other jobs of a shared machine in it); the run is a real child
    # burning one CPU-second, reaped in between, so its CPU time is the real rusage.
    stat = tmp_path / "stat"
    stat.write_text(stat_line(100, 10, 1000))
    before = sample_cpu(str(stat))
    subprocess.run([sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 1: pass"],
                   check=True)
    after_raw = sample_cpu(str(stat))
    assert before is not None and after_raw is not None
    own = after_raw.children - before.children
    wall = after_raw.at - before.at
    stat.write_text(stat_line(100 + own, 10, 1000 + 2 * wall - own))  # 2 CPUs: one ran the run, one idled
    load = load_between(before, sample_cpu(str(stat)))
    assert load is not None and not load.busy, load
    assert load.run_cpu >= 0.9 and load.others < 0.05 and load.cpus == pytest.approx(2, rel=0.1)


def test_stolen_time_is_load(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text(stat_line(100, 10, 1000, steal=0))
    before = sample_cpu(str(stat))
    time.sleep(0.2)
    stat.write_text(stat_line(100, 10, 1000 + 0.3, steal=0.1))  # 0.4 s of two CPUs' time: a quarter stolen
    load = load_between(before, sample_cpu(str(stat)))
    assert load is not None and load.busy and load.steal == pytest.approx(0.25, abs=0.05)
    flags = {"load": load.to_json()}
    assert was_busy(flags) and "25% stolen" in load_words(flags)
    assert not was_busy({}) and load_words({}) == ""


def test_no_readings_no_verdict(tmp_path: Path) -> None:
    assert sample_cpu(str(tmp_path / "missing")) is None
    assert load_between(None, sample_cpu(str(tmp_path / "missing"))) is None


@pytest.mark.slow
def test_a_sandboxed_runs_own_cpu_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # bubblewrap's PID namespace keeps the run's CPU time out of our rusage: TreeWatch reads it from
    # /proc while the run lives, so a run that saturates the machine itself is not "under load"
    monkeypatch.delenv("AUTORESEARCH_PROC_STAT")
    root = make_task(tmp_path, start=False)
    (root / "train.py").write_text("import time\nt = time.process_time()\nwhile time.process_time() - t < 1.5: pass\n"
                                   "print('val_loss: 1.0')\n")
    git(root, "commit", "-qam", "burn 1.5 CPU-seconds")
    ar(root, "lock")
    ar(root, "start", "--tag", "t")
    ar(root, "baseline")
    exp = json.loads(ar(root, "show", "1", "--json").stdout)
    assert exp["details"]["sandbox"] == "bwrap"
    load = exp["details"]["load"]
    assert load["run_cpu_s"] >= 1.0, load
