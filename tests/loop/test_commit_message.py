"""A long description is not lost to the 72-character subject: the experiment's commit, and
the finalized branch's, carry it whole in the body."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ar, git

pytestmark = pytest.mark.slow

LONG = ("Raise MOMENTUM to 0.9 because the loss curve oscillates between steps 40 and 80, which heavy-ball "
        "momentum damps; keep the learning rate as it is")


def test_long_description_goes_whole_into_the_commit_body(tmp_path: Path) -> None:
    ar(tmp_path, "init", "task", "--template", "example")
    task = tmp_path / "task"
    ar(task, "start", "--tag", "t")
    ar(task, "baseline")
    script = tmp_path / "agent.py"
    script.write_text("import re, pathlib\np = pathlib.Path('train.py')\n"
                      "p.write_text(re.sub(r'^MOMENTUM = [0-9.]+', 'MOMENTUM = 0.9', p.read_text(), flags=re.M))\n"
                      f"print('summary: {LONG}')\n")
    ar(task, "run", "--agent", f"command:{sys.executable} {script}", "--max-experiments", "1", "--quiet")
    message = git(task, "log", "-1", "--format=%B", "refs/autoresearch/t/2")
    subject, blank, body = message.split("\n", 2)
    assert len(subject) <= 72 and subject.endswith("…") and blank == ""
    assert body.startswith(LONG + "\n"), message
    ar(task, "finalize")
    final = subprocess.run(["git", "log", "-1", "--format=%B", "autoresearch/t-final"], cwd=task, capture_output=True,
                           text=True, check=True).stdout
    assert LONG in final and final.splitlines()[0] == subject
