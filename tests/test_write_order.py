"""Nothing is lost: a SIGKILL at every named step of an experiment, and at random moments.

The lifecycle (trial/lifecycle.py) has fault-injection points: `AUTORESEARCH_KILL_AT=<step>` kills the
process right after that step, as a power cut would. After each kill the next command repairs,
and these invariants must hold:

- the edit is recoverable: on disk, in its experiment ref, or in a rescue ref;
- no record stays `running`; results.tsv is exactly the journal's rendering;
- every settled attempt has its ref, and its record beside it (a git note);
- the branch tip and the recorded best are one commit, and that commit is a keep.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from conftest import AUTORESEARCH, ar, git, make_task, set_knob

from autoresearch.journal.results import render_tsv
from autoresearch.journal.store import Journal
from autoresearch.trial.lifecycle import STEPS


def rows(root: Path) -> list[dict]:
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM experiments ORDER BY seq")]
    finally:
        db.close()


def holds(root: Path, text: str) -> bool:
    """Whether TEXT (the edit) is on disk or in any ref autoresearch keeps."""
    if text in (root / "train.py").read_text():
        return True
    refs = git(root, "for-each-ref", "--format=%(refname)", "refs/autoresearch/").split()
    return any(text in (git(root, "show", f"{ref}:train.py") or "") for ref in refs)


def check_invariants(root: Path) -> None:
    ar(root, "repair")
    records = rows(root)
    assert all(r["status"] != "running" for r in records), records
    with Journal(root / ".autoresearch") as journal:
        expected = render_tsv(journal.experiments("t"), "val_loss", 1 / 1024)
        best = journal.get_meta("best:t")
        last_keep = journal.best("t")
    assert (root / "results.tsv").read_text() == expected
    tip = git(root, "rev-parse", "refs/heads/autoresearch/t").strip()
    assert tip == best, "the branch and the recorded best disagree"
    assert last_keep is not None and last_keep.commit_sha == best, "best is not a kept experiment"
    for r in records:
        if r["commit_sha"]:
            assert git(root, "rev-parse", f"refs/autoresearch/t/{r['seq']}").strip() == r["commit_sha"]
            note = json.loads(git(root, "notes", "--ref", "autoresearch", "show", r["commit_sha"]))
            assert (note["seq"], note["status"]) == (r["seq"], r["status"])


@pytest.mark.slow
def test_a_kill_after_every_named_step_loses_nothing(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    for i, step in enumerate(STEPS):
        value = f"0.{11 + i}"
        set_knob(root, "LEARNING_RATE", value)
        edit = f"LEARNING_RATE = {value}"
        out = ar(root, "experiment", "-m", f"kill at {step}", check=False, env={"AUTORESEARCH_KILL_AT": step})
        assert out.returncode == -signal.SIGKILL, (step, out.stdout, out.stderr)
        assert holds(root, edit), f"the edit is gone after a kill at {step}"
        check_invariants(root)
        # the next experiment works and numbering goes on
        before = rows(root)[-1]["seq"]
        set_knob(root, "STEPS", str(100 + i))
        ar(root, "experiment", "-m", f"after {step}", check=False)
        assert rows(root)[-1]["seq"] == before + 1
        check_invariants(root)


@pytest.mark.slow
def test_random_kills_lose_nothing(tmp_path: Path) -> None:
    """30 kills at random moments (seeded), each followed by the invariants."""
    root = make_task(tmp_path)
    rng = random.Random(1234)
    for i in range(30):
        value = f"0.{200 + i}"
        set_knob(root, "LEARNING_RATE", value)
        proc = subprocess.Popen([*AUTORESEARCH, "experiment", "-m", f"random {i}"], cwd=root,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, 0.9))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert holds(root, f"LEARNING_RATE = {value}"), f"kill {i}: the edit is gone"
        check_invariants(root)


@pytest.mark.slow
def test_a_lost_journal_is_rebuilt_and_numbers_are_never_reused(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    for value in ("0.2", "0.03"):
        set_knob(root, "LEARNING_RATE", value)
        ar(root, "experiment", "-m", f"lr {value}", check=False)
    before = rows(root)
    state = root / ".autoresearch"
    for name in ("journal.db", "journal.db-wal", "journal.db-shm"):
        (state / name).unlink(missing_ok=True)
    out = ar(root, "repair")
    assert "rebuilt 3 experiment records" in out.stdout
    after = rows(root)
    assert [(r["seq"], r["status"], r["commit_sha"], r["metric"]) for r in after] == \
        [(r["seq"], r["status"], r["commit_sha"], r["metric"]) for r in before]
    set_knob(root, "STEPS", "250")
    ar(root, "experiment", "-m", "after the rebuild", check=False)
    assert rows(root)[-1]["seq"] == 4  # not 1: the refs of 1..3 are never overwritten
    check_invariants(root)


def test_a_corrupt_journal_is_one_clear_message(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    (root / ".autoresearch" / "journal.db").write_bytes(b"this is not a database" * 100)
    for name in ("journal.db-wal", "journal.db-shm"):
        (root / ".autoresearch" / name).unlink(missing_ok=True)
    out = ar(root, "status", check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "autoresearch repair" in out.stderr and "journal.db" in out.stderr


@pytest.mark.slow
def test_corrupt_lock_and_state_files_are_clear_messages(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    (root / ".autoresearch" / "lock.json").write_text("{not json")
    set_knob(root, "LEARNING_RATE", "0.2")
    out = ar(root, "experiment", "-m", "x", check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr and "autoresearch lock" in out.stderr
    ar(root, "lock")
    (root / ".autoresearch" / "state.json").write_text("[]]")
    out = ar(root, "status", check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr and "state.json" in out.stderr


@pytest.mark.slow
def test_a_hand_edit_is_rescued_not_discarded_by_run(tmp_path: Path) -> None:
    """`run` used to reset the folder to best, dropping an uncommitted edit of a tracked file."""
    root = make_task(tmp_path)
    set_knob(root, "MOMENTUM", "0.5")
    (root / "notes.txt").write_text("my notes\n")
    out = ar(root, "run", "-q", "-n", "1", "--agent", "command:true")
    assert "saved as refs/autoresearch/t/rescue/1" in out.stderr
    assert "MOMENTUM = 0.5" in git(root, "show", "refs/autoresearch/t/rescue/1:train.py")
    assert git(root, "show", "refs/autoresearch/t/rescue/1:notes.txt") == "my notes\n"
    listing = ar(root, "rescue").stdout
    assert "refs/autoresearch/t/rescue/1" in listing and "notes.txt" in listing


def test_noise_never_touches_the_task_folder(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    set_knob(root, "MOMENTUM", "0.5")
    (root / "notes.txt").write_text("my notes\n")
    ar(root, "noise", "-n", "2")
    assert "MOMENTUM = 0.5" in (root / "train.py").read_text()
    assert (root / "notes.txt").read_text() == "my notes\n"


def test_stop_without_a_loop_says_so(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    out = ar(root, "stop", check=False)
    assert out.returncode == 1 and "no loop is running" in out.stderr
    assert not (root / ".autoresearch" / "stop").exists()


def test_an_edit_made_while_a_native_run_runs_is_rescued(tmp_path: Path) -> None:
    """The folder is looked at twice: before the run (the candidate) and before it is reset to
    best. The second look is a cheap `git add --dry-run` on the first look's index; an edit made
    in between (a person saving a file, a tool writing one) must still be seen and rescued."""
    late = tmp_path / "late-edit.sh"
    armed = tmp_path / "armed"  # not during the baseline
    late.write_text(f"#!/bin/sh\n[ -f {armed} ] || exit 0\n"
                    f"echo '# edited during the run' >> {tmp_path / 'task' / 'train.py'}\n"
                    f"echo 'made during the run' > {tmp_path / 'task' / 'late.txt'}\n")
    late.chmod(0o755)
    root = make_task(tmp_path, config_edits={'run = "python train.py"': f'run = "python train.py && {late}"',
                                             "[agent]": '[sandbox]\nkind = "none"\n\n[agent]'})
    set_knob(root, "LEARNING_RATE", "0.001")  # a discard: the folder goes back to best
    armed.touch()
    out = ar(root, "experiment", "-m", "worse lr", check=False)
    assert out.returncode == 0, out.stderr
    candidate = git(root, "show", "refs/autoresearch/t/2:train.py")
    assert "LEARNING_RATE = 0.001" in candidate and "edited during the run" not in candidate
    rescued = git(root, "for-each-ref", "--format=%(refname)", "refs/autoresearch/t/rescue/").split()
    assert rescued, f"the late edit was not rescued: {out.stdout}{out.stderr}"
    assert "# edited during the run" in git(root, "show", f"{rescued[0]}:train.py")
    assert git(root, "show", f"{rescued[0]}:late.txt") == "made during the run\n"
    assert "edited during the run" not in (root / "train.py").read_text()  # the folder shows best


def test_a_discarded_new_file_goes_to_quarantine_and_the_folder_to_best(tmp_path: Path) -> None:
    """After a discard the files the candidate added are moved aside (never deleted) without a
    git listing of untracked files: the experiment knows what it added."""
    root = make_task(tmp_path)
    set_knob(root, "LEARNING_RATE", "0.001")
    (root / "helper_notes.md").write_text("ideas\n")
    (root / "sub").mkdir()
    (root / "sub" / "data.txt").write_text("1 2 3\n")
    out = ar(root, "experiment", "-m", "worse, with new files", check=False)
    assert "discard" in out.stdout or "rejected" in out.stdout, out.stdout + out.stderr
    assert not (root / "helper_notes.md").exists() and not (root / "sub").exists()
    moved = sorted(p.relative_to(root / ".autoresearch" / "runs" / "2" / "quarantine").as_posix()
                   for p in (root / ".autoresearch" / "runs" / "2" / "quarantine").rglob("*") if p.is_file())
    assert moved == ["helper_notes.md", "sub/data.txt"]
    assert git(root, "status", "--porcelain") == ""
