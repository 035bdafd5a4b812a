"""Recovery you can trust: a lost journal, a relock or a kill never produces a wrong record.

Attacks first: the journal deleted under a session, a relock followed by a bad edit, a native
experiment on a fresh branch, a rich session (keeps, discards, crashes, rejects, kills at named
steps, two slots, a relock, noise) whose journal is rebuilt from git alone.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import ar, git, make_task, set_knob


def records(root: Path) -> list[dict]:
    return json.loads(ar(root, "results", "--json").stdout)


def drop_journal(root: Path) -> None:
    for name in ("journal.db", "journal.db-wal", "journal.db-shm"):
        (root / ".autoresearch" / name).unlink(missing_ok=True)


@pytest.mark.slow
def test_a_lost_journal_is_rebuilt_before_the_next_experiment_never_restarted(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    set_knob(root, "LEARNING_RATE", "0.2")
    ar(root, "experiment", "-m", "lr 0.2", check=False)
    before = records(root)
    drop_journal(root)
    assert "rebuilds it from git" in ar(root, "status").stderr  # read-only: it says so, writes nothing
    set_knob(root, "LEARNING_RATE", "0.03")
    out = json.loads(ar(root, "experiment", "-m", "lr 0.03", "--json", check=False).stdout)
    # not a new history: the candidate is no baseline, and it met the best of the old journal
    assert not out["is_baseline"] and out["seq"] == 3
    best = [r for r in before if r["status"] == "keep"][-1]
    assert out["best_before"] == pytest.approx(best["metric"])
    after = records(root)
    assert [r["seq"] for r in after] == [1, 2, 3]
    assert after[:2] == before
    lines = (root / "results.tsv").read_text().splitlines()
    assert len(lines) == 4 and sum("[baseline]" in line or "\tkeep\t" in line for line in lines) >= 1


def test_a_relock_followed_by_a_bad_edit_is_never_the_new_best(tmp_path: Path) -> None:
    root = make_task(tmp_path, harness_owned=True)
    prepare = root / "prepare.py"  # the new harness scales every loss down: old numbers do not compare
    prepare.write_text(prepare.read_text().replace("return total / len(VAL)", "return total / len(VAL) / 16"))
    ar(root, "lock", "--force")
    set_knob(root, "LEARNING_RATE", "0.001")  # far worse than the best
    out = json.loads(ar(root, "experiment", "-m", "a bad edit after the relock", "--json", check=False).stdout)
    assert out["status"] == "discard" and not out["is_baseline"]
    rows = records(root)
    remeasured = rows[-2]
    assert remeasured["is_baseline"] and remeasured["status"] == "keep" and remeasured["details"]["epoch"] == 1
    assert out["best_before"] == pytest.approx(remeasured["metric"]) and out["metric"] > remeasured["metric"]
    assert out["details"]["after_baseline"] == remeasured["seq"]
    # the folder shows the best again, and the best is the re-measured one
    assert "LEARNING_RATE = 0.05" in (root / "train.py").read_text()


def test_a_native_experiment_on_a_fresh_branch_measures_the_best_first(tmp_path: Path) -> None:
    root = make_task(tmp_path, baseline=False)
    start = git(root, "rev-parse", "HEAD").strip()
    set_knob(root, "LEARNING_RATE", "0.001")
    out = json.loads(ar(root, "experiment", "-m", "a bad first edit", "--json", check=False).stdout)
    assert out["status"] == "discard" and not out["is_baseline"]
    first = records(root)[0]
    assert first["is_baseline"] and first["status"] == "keep" and first["parent"] == start
    assert git(root, "rev-parse", f"{first['commit_sha']}^{{tree}}") == git(root, "rev-parse", f"{start}^{{tree}}")


@pytest.mark.slow
def test_a_lost_journal_after_a_relock_keeps_the_epoch(tmp_path: Path) -> None:
    root = make_task(tmp_path, harness_owned=True)
    prepare = root / "prepare.py"
    prepare.write_text(prepare.read_text().replace("return total / len(VAL)", "return total / len(VAL) / 16"))
    ar(root, "lock", "--force")
    drop_journal(root)  # lost right after the relock: no experiment has told git of the epoch yet
    set_knob(root, "LEARNING_RATE", "0.001")
    out = json.loads(ar(root, "experiment", "-m", "after the relock and the loss", "--json", check=False).stdout)
    assert out["status"] == "discard" and out["details"]["epoch"] == 1
    assert records(root)[-2]["is_baseline"]


def _rich_session(root: Path) -> None:
    """Keeps, discards, crashes, rejects, kills at named steps, two slots, noise, a relock."""
    for value in ("0.2", "0.001"):
        set_knob(root, "LEARNING_RATE", value)
        ar(root, "experiment", "-m", f"lr {value}", check=False)
    train = root / "train.py"
    good = train.read_text()
    train.write_text(good + "\nraise SystemExit(3)\n")
    ar(root, "experiment", "-m", "a crash", check=False)
    train.write_text(good)
    (root / "prepare.py").write_text((root / "prepare.py").read_text() + "\n# edited by the agent\n")
    ar(root, "experiment", "-m", "touches the harness", check=False)  # rejected
    git(root, "checkout", "HEAD", "--", "prepare.py")
    (root / "notes.txt").write_text("not editable\n")
    ar(root, "experiment", "-m", "out of scope", check=False)  # rejected
    (root / "notes.txt").unlink(missing_ok=True)  # quarantined by the experiment
    for step in ("begun", "measured", "settled", "tsv-written"):  # a kill at named steps
        set_knob(root, "STEPS", str(150 + len(step)))
        ar(root, "experiment", "-m", f"killed after {step}", check=False, env={"AUTORESEARCH_KILL_AT": step})
        ar(root, "repair")
    ar(root, "noise", "-n", "2")
    ar(root, "run", "-q", "--agent", "tune", "-n", "4", "--slots", "2", check=False)
    prepare = root / "prepare.py"
    prepare.write_text(prepare.read_text().replace("return total / len(VAL)", "return total / len(VAL) / 16"))
    ar(root, "lock", "--force")
    set_knob(root, "MOMENTUM", "0.5")
    ar(root, "experiment", "-m", "after the relock", check=False)


def _parsed(value: str) -> object:
    return json.loads(value) if value[:1] in "[{" else value


def _timeless(finalized: dict) -> dict:
    """The final branch's commits carry the time they were made: what they hold is compared."""
    out = {k: v for k, v in finalized.items() if k != "tip"}
    out["applied"] = [{k: v for k, v in a.items() if k != "commit"} for a in finalized["applied"]]
    return out


def _views(root: Path) -> dict:
    report = root / "report.html"
    ar(root, "report", "--no-static-chart", "-o", str(report))
    finalized = json.loads(ar(root, "finalize", "--force", "--json").stdout)
    last = records(root)[-1]["seq"]
    return {"results": records(root), "tsv": (root / "results.tsv").read_text(),
            "finalize": _timeless(finalized),
            "final_tree": git(root, "rev-parse", "autoresearch/t-final^{tree}").strip(),
            "show": json.loads(ar(root, "show", str(last), "--json").stdout),
            "status": {k: v for k, v in json.loads(ar(root, "status", "--json").stdout).items() if k != "busy"},
            "report": report.read_text()}


@pytest.mark.slow
def test_repair_after_a_lost_journal_gives_back_every_view(tmp_path: Path) -> None:
    root = make_task(tmp_path, harness_owned=True)
    _rich_session(root)
    statuses = {(r["status"], r["reason"]) for r in records(root)}
    assert {"keep", "discard", "crash", "rejected"} <= {s for s, _ in statuses}
    assert ("crash", "interrupted") in statuses
    rows = records(root)
    assert any(r["reason"] == "interrupted" and not r["commit_sha"] for r in rows)  # killed before its commit
    assert any(r["slot"] == 1 for r in rows) and any(r["details"].get("epoch") for r in rows)
    before = _views(root)
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    drop_journal(root)
    out = ar(root, "repair")
    assert f"rebuilt {len(before['results'])} experiment records" in out.stdout
    after = _views(root)
    for key in before:
        assert after[key] == before[key], key
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    old = sqlite3.connect(copy / ".autoresearch" / "journal.db")
    for table in ("runs", "noise"):
        assert db.execute(f"SELECT * FROM {table} ORDER BY id").fetchall() == \
            old.execute(f"SELECT * FROM {table} ORDER BY id").fetchall(), table
    # the meta repair needs (best, start, epochs, references), not the bookkeeping of the moment
    meta = "SELECT key, value FROM meta WHERE key NOT IN ('unnoted', 'seq_floor') AND key NOT LIKE 'tsv:%'"
    assert {k: _parsed(v) for k, v in db.execute(meta)} == {k: _parsed(v) for k, v in old.execute(meta)}
    top = "SELECT MAX(seq) FROM experiments"
    floor = int(db.execute("SELECT value FROM meta WHERE key = 'seq_floor'").fetchone()[0])
    assert max(floor, db.execute(top).fetchone()[0]) == old.execute(top).fetchone()[0]  # numbering goes on


def test_status_after_a_kill_says_interrupted_not_running(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    set_knob(root, "LEARNING_RATE", "0.2")
    ar(root, "experiment", "-m", "killed mid-run", check=False, env={"AUTORESEARCH_KILL_AT": "measured"})
    tsv = (root / "results.tsv").read_text()
    info = json.loads(ar(root, "status", "--json").stdout)
    assert info["interrupted"] == [2] and info["last"]["status"] == "running"  # the record as it is
    text = ar(root, "status").stdout
    assert "seq 2 interrupted" in text and "the next command records it" in text and "pending" in text
    assert "last     seq 2 running" not in text
    assert (root / "results.tsv").read_text() == tsv  # a read-only command wrote nothing
    ar(root, "repair")
    assert json.loads(ar(root, "status", "--json").stdout)["interrupted"] == []
    assert (root / "results.tsv").read_text().splitlines()[-1].split("\t")[3] == "crash"


def _words(root: Path, pid: int, at: float) -> None:
    path = root / ".autoresearch" / "last-words"
    path.write_bytes(json.dumps({"pid": pid, "at": at, "cause": "disk-full", "message": "the disk holding x is full"})
                     .encode().ljust(path.stat().st_size))


@pytest.mark.parametrize("whose", ["another process", "before the experiment started", "its own"])
def test_last_words_name_a_cause_only_for_the_command_that_left_them(tmp_path: Path, whose: str) -> None:
    """A stale or foreign last-words file cannot put a cause on a record; the dead command's own
    words (its pid, after its experiment started) can, and are said once."""
    root = make_task(tmp_path)
    set_knob(root, "LEARNING_RATE", "0.2")
    ar(root, "experiment", "-m", "killed mid-run", check=False, env={"AUTORESEARCH_KILL_AT": "measured"})
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    pid, started = db.execute("SELECT pid, started_at FROM experiments WHERE seq = 2").fetchone()
    db.close()
    _words(root, {"another process": pid + 1, "before the experiment started": pid, "its own": pid}[whose],
           started - 5 if whose == "before the experiment started" else started + 1)
    ar(root, "repair")
    cause = records(root)[-1]["details"].get("cause")
    assert cause == ("disk-full" if whose == "its own" else None)
    shown = ar(root, "show", "2", "--no-diff").stdout
    assert ("lost to the full disk" in shown) == (whose == "its own"), shown
    assert (root / ".autoresearch" / "last-words").read_bytes().strip() == b"", "said once, then blank"


def _forge_lock(root: Path) -> None:
    """What a native agent can do: write lock.json (here: prepare.py's hash, as if relocked)."""
    path = root / ".autoresearch" / "lock.json"
    data = json.loads(path.read_text())
    data["files"]["prepare.py"] = "0" * 64
    path.write_text(json.dumps(data))


def test_a_forged_lock_is_diagnosed_as_the_lock_and_the_loop_recovers(tmp_path: Path) -> None:
    root = make_task(tmp_path, harness_owned=True)
    honest = (root / ".autoresearch" / "lock.json").read_text()
    _forge_lock(root)
    out = ar(root, "verify", check=False)
    assert out.returncode == 1 and "lock.json" in out.stdout + out.stderr
    assert "prepare.py: changed" not in out.stdout  # prepare.py equals the commit: not what changed
    assert "lock.json" in json.loads(ar(root, "status", "--json").stdout)["lock"]
    set_knob(root, "LEARNING_RATE", "0.03")
    record = json.loads(ar(root, "experiment", "-m", "an honest edit", "--json", check=False).stdout)
    assert record["status"] in ("keep", "discard"), record["reason"]  # not harness-modified-during-run
    assert "lock.json" in record["details"]["lock_forged"]
    assert (root / ".autoresearch" / "lock.json").read_text() == honest  # put back from git
    assert "ok" in ar(root, "verify").stdout


def test_a_real_harness_change_is_still_caught_with_an_honest_lock(tmp_path: Path) -> None:
    root = make_task(tmp_path, harness_owned=True)
    (root / "prepare.py").write_text((root / "prepare.py").read_text() + "\n# changed\n")
    out = ar(root, "verify", check=False)
    assert out.returncode == 1 and "prepare.py: changed" in out.stdout and "lock.json" not in out.stdout


@pytest.mark.slow
def test_huge_numbers_print_in_exponent_form_everywhere(tmp_path: Path) -> None:
    root = make_task(tmp_path, baseline=False)
    train = root / "train.py"
    train.write_text('print("val_loss: 1e308")\n')
    git(root, "commit", "-qam", "a metric of 1e308")
    outputs = [ar(root, "baseline").stdout]
    train.write_text('print("val_loss: -1e308")\n')
    outputs.append(ar(root, "experiment", "-m", "far better", check=False).stdout)
    for command in (("status",), ("review",), ("results",), ("show", "2")):
        outputs.append(ar(root, *command).stdout)
    ar(root, "report", "--no-static-chart")
    outputs.append((root / "results.tsv").read_text())
    outputs.append(ar(root, "finalize").stdout)
    text = "\n".join(outputs)
    assert "e+307" in text or "e+308" in text
    assert not re.search(r"\d{20,}", text), re.search(r".{40}\d{20,}", text)
    assert not re.search(r">[^<]*\d{20,}", (root / "report.html").read_text())


@pytest.mark.slow
def test_a_stale_index_lock_refuses_before_measuring(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    (root / ".git" / "index.lock").write_text("")  # a git killed mid-write left it
    set_knob(root, "LEARNING_RATE", "0.03")
    out = ar(root, "experiment", "-m", "with a stale index.lock", check=False)
    assert out.returncode != 0 and "index.lock" in out.stderr and "Traceback" not in out.stderr
    assert [r["seq"] for r in records(root)] == [1]  # nothing measured, nothing half-recorded
    assert "LEARNING_RATE = 0.03" in (root / "train.py").read_text()  # the edit waits on disk
    (root / ".git" / "index.lock").unlink()
    record = json.loads(ar(root, "experiment", "-m", "after", "--json", check=False).stdout)
    assert record["status"] in ("keep", "discard")


def test_untracked_files_at_start_are_in_the_start_record(tmp_path: Path) -> None:
    root = make_task(tmp_path, start=False)
    (root / "scratch.txt").write_text("mine, not committed\n")
    out = ar(root, "start", "--tag", "t").stdout
    assert "scratch.txt" in out and "not guarded" in out
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    assert json.loads(db.execute("SELECT value FROM meta WHERE key = 'preexisting:t'").fetchone()[0]) == ["scratch.txt"]


@pytest.mark.slow
def test_an_attempt_killed_before_its_commit_is_recorded_in_git(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    set_knob(root, "LEARNING_RATE", "0.2")
    ar(root, "experiment", "-m", "killed before its commit", check=False, env={"AUTORESEARCH_KILL_AT": "begun"})
    ar(root, "repair")
    record = records(root)[-1]
    assert (record["status"], record["reason"], record["commit_sha"]) == ("crash", "interrupted", "")
    note = json.loads(git(root, "notes", "--ref=autoresearch", "show", "refs/autoresearch/t/2"))
    assert note["seq"] == 2 and note["description"] == "killed before its commit"
    assert "interrupted before the candidate was committed" in ar(root, "show", "2").stdout
