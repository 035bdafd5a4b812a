"""An agent that edits the harness gets a named outcome, visible wherever a user looks.

A scripted agent (tests/fake_agents/fake_command_agent, FAKE_AGENT_BEHAVIOR=harness) edits the
read-only prepare.py of the example task during `autoresearch run`. Its edit is quarantined,
never applied; the attempt is `rejected: harness-edit prepare.py`, and `results`, `review`,
`show`, `diff` and report.html all say so (before, it was a `crash no-change` with the file
only in a JSON blob, `diff` printed nothing and `show` blamed "a baseline" parent).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FAKE = Path(__file__).parent / "fake_agents" / "fake_command_agent"
CLI = [sys.executable, "-c", "import sys; from autoresearch.cli import main; sys.argv[0] = 'autoresearch'; main()"]

pytestmark = pytest.mark.slow


def ar(cwd: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=180,
                          env={**os.environ, **(env or {})})
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_a_harness_edit_is_named_everywhere(tmp_path: Path) -> None:
    ar(tmp_path, "init", "task", "--template", "example")
    task = tmp_path / "task"
    ar(task, "start", "--tag", "t")
    ar(task, "baseline")
    agent = f"command:{sys.executable} {FAKE} --brief-file {{brief_file}} -- {{files}}"
    run = ar(task, "run", "--agent", agent, "--max-experiments", "1", "--quiet",
             env={"FAKE_AGENT_BEHAVIOR": "harness"})
    assert "fake agent was here" not in (task / "prepare.py").read_text()
    quarantined = task / ".autoresearch" / "runs" / "2" / "quarantine" / "prepare.py"
    assert "fake agent was here" in quarantined.read_text()  # kept, not applied

    wide = {"COLUMNS": "200"}
    results = ar(task, "results", env=wide).stdout
    row = [line for line in results.splitlines() if line.split("│")[1:2] == ["   2 "]]
    assert row and "rejected" in row[0] and "harness-edit prepare.py" in row[0], results
    review = ar(task, "review", env=wide).stdout
    assert "harness-edit prepare.py" in review, review
    show = ar(task, "show", "2").stdout
    assert "rejected (harness-edit prepare.py)" in show
    assert "(a baseline)" not in show and "seq 1, keep" in show, show  # the real parent
    assert "+# the fake agent was here" in show  # the quarantined edit, as a diff
    diff = ar(task, "diff", "2").stdout
    assert "quarantined" in diff and "+# the fake agent was here" in diff, diff
    ar(task, "report")
    html = (task / "report.html").read_text()
    assert "harness-edit prepare.py" in html and "the fake agent was here" in html
    assert run.returncode == 0


def test_a_failed_agents_edit_is_kept_and_shown(tmp_path: Path) -> None:
    """An agent that edits and then fails: its unfinished edit is the attempt's commit (never
    run), so `show` and `diff` show it instead of losing it."""
    ar(tmp_path, "init", "task", "--template", "example")
    task = tmp_path / "task"
    ar(task, "start", "--tag", "t")
    ar(task, "baseline")
    agent = f"command:{sys.executable} {FAKE} --brief-file {{brief_file}} -- {{files}}"
    ar(task, "run", "--agent", agent, "--max-experiments", "1", "--quiet", env={"FAKE_AGENT_BEHAVIOR": "editfail"},
       check=False)
    assert "MOMENTUM = 0.0" in (task / "train.py").read_text()  # the folder shows the best
    show = ar(task, "show", "2").stdout
    assert "crash (agent-error)" in show and "unfinished edit (kept, never run)" in show, show
    assert "+MOMENTUM = 0.5" in show
    assert "+MOMENTUM = 0.5" in ar(task, "diff", "2").stdout


def test_an_edit_of_only_out_of_scope_files_is_named(tmp_path: Path) -> None:
    """Only a file outside the editable surface changed: `rejected out-of-scope ideas.txt`, the
    file quarantined, rather than a `no-change` that hides what the agent did."""
    ar(tmp_path, "init", "task", "--template", "example")
    task = tmp_path / "task"
    ar(task, "start", "--tag", "t")
    ar(task, "baseline")
    script = tmp_path / "agent.py"
    script.write_text("open('ideas.txt', 'w').write('momentum would help\\n')\nprint('summary: wrote ideas')\n")
    ar(task, "run", "--agent", f"command:{sys.executable} {script}", "--max-experiments", "1", "--quiet")
    show = ar(task, "show", "2").stdout
    assert "rejected (out-of-scope ideas.txt)" in show, show
    assert "+momentum would help" in show
