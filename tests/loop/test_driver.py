"""The autonomous loop through the real CLI: stop conditions, failing proposers, crash repair."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import AUTORESEARCH, ar, git, make_task

from autoresearch.config.task import load_config
from autoresearch.journal.records import Experiment
from autoresearch.proposers.brief import Limits, build_brief

AGENT = r'''#!/usr/bin/env python3
"""A scripted agent: reads the brief file, edits train.py according to MODE."""
import os, re, sys, time
mode, brief_file = sys.argv[1], sys.argv[2]
brief = open(brief_file).read()
seq = int(os.environ.get("AUTORESEARCH_SEQ", "0"))
path = "train.py"
text = open(path).read()

def set_knob(name, value):
    global text
    text = re.sub(rf"^{name} = [^#\n]*", f"{name} = {value}", text, flags=re.M)

if mode == "improve":          # each call raises STEPS: val_loss keeps going down
    steps = int(re.search(r"^STEPS = (\d+)", text, re.M).group(1))
    set_knob("STEPS", steps + 100)
    print(f"summary: STEPS {steps} -> {steps + 100}")
elif mode == "worse":
    set_knob("LEARNING_RATE", 0.0001 + seq * 1e-6)
    print("summary: tiny learning rate")
elif mode == "fail":
    print("the model is overloaded", file=sys.stderr)
    sys.exit(1)
elif mode == "nothing":
    print("summary: I looked around")
elif mode == "break-then-fix":
    if "crashed" in brief and "Fix the bug" in brief:
        text = text.replace("undefined_name_here()", "")
        print("summary: fixed the typo")
    else:
        set_knob("LEARNING_RATE", 0.2)
        text = text.replace("def train() -> list[float]:\n", "def train() -> list[float]:\n    undefined_name_here()\n")
        print("summary: lr 0.2 (with a bug)")
elif mode == "slow":
    set_knob("LEARNING_RATE", 0.05 + seq * 0.001)
    time.sleep(1.5)
    print("summary: slow agent")
open(path, "w").write(text)
'''


def agent(tmp_path: Path, mode: str) -> str:
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    return f"command:{sys.executable} {script} {mode} {{brief_file}}"


def rows(root: Path) -> list[dict]:
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    db.row_factory = sqlite3.Row
    return [dict(r) for r in db.execute("SELECT * FROM experiments ORDER BY seq")]


def run(root: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    return ar(root, "run", "-q", *args, check=check, timeout=300)


@pytest.mark.slow
def test_run_starts_a_branch_runs_the_baseline_and_stops_after_n(tmp_path: Path) -> None:
    root = make_task(tmp_path, start=False)
    out = run(root, "--agent", agent(tmp_path, "improve"), "--max-experiments", "3")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "stopped: 3 experiments done" in out.stdout
    branch = git(root, "rev-parse", "--abbrev-ref", "HEAD").strip()
    assert branch.startswith("autoresearch/")  # a date tag was made
    statuses = [(r["status"], r["description"]) for r in rows(root)]
    assert statuses[0] == ("keep", "baseline")
    assert [s for s, _ in statuses[1:]] == ["keep", "keep", "keep"]
    assert statuses[1][1] == "STEPS 200 -> 300"
    assert (root / "progress.png").exists() and (root / "report.html").exists()
    brief = (root / ".autoresearch" / "runs" / "2" / "brief.md").read_text()
    assert "val_loss" in brief and "train.py" in brief and "program.md" in brief
    assert (root / ".autoresearch" / "runs" / "2" / "agent.log").exists()


@pytest.mark.slow
def test_plateau_and_target_stop_the_loop(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    out = run(root, "--agent", agent(tmp_path, "worse"), "--plateau", "2")
    assert "stopped: 2 experiments without a keep" in out.stdout, out.stdout + out.stderr
    assert [r["status"] for r in rows(root)] == ["keep", "discard", "discard"]
    best = rows(root)[0]["metric"]
    out = run(root, "--agent", agent(tmp_path, "improve"), "--target", str(best - 1e-9), "-n", "10")
    assert "target" in out.stdout and "reached" in out.stdout, out.stdout + out.stderr
    assert rows(root)[-1]["status"] == "keep"


@pytest.mark.slow
def test_failing_proposer_stops_after_max_failures(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    out = run(root, "--agent", agent(tmp_path, "fail"))
    assert out.returncode == 1
    assert "failed 5 times in a row" in out.stdout
    failures = rows(root)[1:]
    assert len(failures) == 5 and {(r["status"], r["reason"]) for r in failures} == {("crash", "agent-error")}
    assert "overloaded" in (root / ".autoresearch" / "runs" / "2" / "agent.log").read_text()
    tsv = (root / "results.tsv").read_text().splitlines()
    assert len(tsv) == 7


@pytest.mark.slow
def test_agent_that_changes_nothing_is_recorded(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    out = run(root, "--agent", agent(tmp_path, "nothing"), "-n", "2")
    assert out.returncode == 0
    assert [(r["status"], r["reason"]) for r in rows(root)[1:]] == [("crash", "no-change")] * 2


@pytest.mark.slow
def test_crash_repair_gets_the_log_tail(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    out = run(root, "--agent", agent(tmp_path, "break-then-fix"), "-n", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    crashed, fixed = rows(root)[1:3]
    assert crashed["status"] == "crash" and "NameError" in crashed["log_tail"]
    assert fixed["status"] == "keep" and json.loads(fixed["details_json"])["fix_of"] == crashed["seq"]
    brief = (root / ".autoresearch" / "runs" / str(fixed["seq"]) / "brief.md").read_text()
    assert "NameError" in brief and "Fix the bug" in brief


def _start_loop(root: Path, agent_spec: str) -> subprocess.Popen:
    return subprocess.Popen([*AUTORESEARCH, "run", "-q", "--agent", agent_spec], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_rows(root: Path, n: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if len(rows(root)) >= n:
                return
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    raise AssertionError("the loop did not get going")


@pytest.mark.slow
def test_stop_from_another_terminal(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    proc = _start_loop(root, agent(tmp_path, "slow"))
    _wait_for_rows(root, 2)
    ar(root, "stop")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert "stopped: stop requested" in out
    assert all(r["status"] != "running" for r in rows(root))
    assert not (root / ".autoresearch" / "stop").exists()


@pytest.mark.slow
def test_ctrl_c_records_and_leaves_a_consistent_tree(tmp_path: Path) -> None:
    root = make_task(tmp_path, start=False)
    train = root / "train.py"
    train.write_text(train.read_text().replace('if __name__ == "__main__":', 'if __name__ == "__main__":\n'
                     '    import time\n    time.sleep(60)\n'))
    git(root, "commit", "-qam", "slow run")
    ar(root, "start", "--tag", "slow")
    proc = _start_loop(root, agent(tmp_path, "improve"))
    _wait_for_rows(root, 1)
    deadline = time.time() + 30
    while time.time() < deadline and not (root / ".autoresearch" / "runs" / "1" / "run.log").exists():
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    last = rows(root)[-1]
    assert last["status"] == "crash" and last["reason"] == "interrupted"
    assert git(root, "status", "--porcelain", "--untracked-files=no") == ""
    out = ar(root, "status", "--json")
    assert json.loads(out.stdout)["last"]["status"] == "crash"


@pytest.mark.slow
def test_sigterm_stops_the_loop_cleanly(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    proc = _start_loop(root, agent(tmp_path, "slow"))
    _wait_for_rows(root, 2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert all(r["status"] != "running" for r in rows(root))


def test_unknown_agent_is_a_clear_error(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    out = run(root, "--agent", "nosuchagent")
    assert out.returncode == 1 and "unknown agent" in out.stderr


def _fake_history(n: int) -> list[Experiment]:
    return [Experiment(seq=i, tag="t", status="discard" if i % 3 else "keep", started_at=0.0, metric=1.0 + i * 1e-3,
                       best_before=1.0, description="an idea described at some length " * 4, commit_sha="a" * 40)
            for i in range(1, n + 1)]


def test_brief_is_bounded_whatever_the_history(tmp_path: Path) -> None:
    root = make_task(tmp_path, start=False)
    config = load_config(root)
    program = (root / "program.md").read_text()
    sizes = []
    for n in (10, 100, 1000):
        history = _fake_history(n)
        history[-1].status, history[-1].reason = "crash", "exit-1"
        history[-1].log_tail = "\n".join(f"line {i} " + "x" * 500 for i in range(5000))
        brief = build_brief(config, program, best=history[0], best_commit="b" * 40, history=history[-16:],
                            files=["train.py"], limits=Limits(experiments_left=5, hours_left=1.5))
        sizes.append(len(brief))
        assert "Tail of the crash log" in brief and "5 experiments" in brief and "LEARNING_RATE" in brief
    assert sizes[0] <= sizes[1] and sizes[2] - sizes[1] < 100  # 100 and 1000: the same bounded table
    assert max(sizes) < 20_000


@pytest.mark.slow
def test_run_with_slots_goes_through_the_parallel_loop(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    out = run(root, "--agent", agent(tmp_path, "slow"), "--slots", "2", "-n", "4")
    assert out.returncode == 0, out.stdout + out.stderr
    finished = rows(root)[1:]
    assert len(finished) >= 4 and {r["slot"] for r in finished} == {0, 1}
    status = json.loads(ar(root, "status", "--json").stdout)
    assert status["throughput"]["slots"] == 2 and status["throughput"]["per_hour"] > 0
    assert not (root / ".autoresearch" / "worktrees").exists() or not any((root / ".autoresearch" / "worktrees").iterdir())
