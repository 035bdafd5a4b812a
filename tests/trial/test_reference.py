"""Drift decides nothing: the machine gets slower after the baseline, and the loop still keeps a
real improvement and no null edit.

The task's run reads a counter in $AUTORESEARCH_CACHE: the first four runs (the baseline and
three `noise` runs) are quiet, every later run is 5 units slower, as on a machine that got
busy. Without a re-measured reference every candidate loses to the quiet baseline, so the
real improvement (LEVEL 10 -> 9) would be discarded; the test fails then.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest
from conftest import ar, git, make_task

from autoresearch.trial.reference import calm_reference

TRAIN = '''import os
from pathlib import Path
LEVEL = 10.0
counter = Path(os.environ["AUTORESEARCH_CACHE"]) / "drift-count"
count = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(count))
slow = 5.0 if count > 4 else 0.0
print(f"val_loss: {LEVEL + slow + 0.01 * (count % 3):.6f}")
'''

# seq 2..4: null edits (a comment); seq 5: the real improvement; seq 6, 7: null edits again
AGENT = '''import sys
from pathlib import Path
seq = int(sys.argv[1])
path = Path("train.py")
text = path.read_text()
if seq == 5:
    text = text.replace("LEVEL = 10.0", "LEVEL = 9.0")
path.write_text(text + f"# note {seq}\\n")
print(f"summary: {'lower level' if seq == 5 else 'a comment'} ({seq})")
'''


def drifting_task(tmp_path: Path, train: str, verdict: str) -> Path:
    """A started task whose run is TRAIN (it counts its runs in $AUTORESEARCH_CACHE/drift-count,
    reset here), sandbox off (the runs share that counter), [verdict] VERDICT, baseline measured."""
    cache = Path(os.environ["AUTORESEARCH_CACHE"])
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "drift-count").unlink(missing_ok=True)
    root = make_task(tmp_path, start=False,
                     config_edits={"[agent]": f'[sandbox]\nkind = "none"\n\n[verdict]\n{verdict}\n\n[agent]'})
    (root / "train.py").write_text(train)
    git(root, "commit", "-qam", "a task on a machine whose speed changes")
    ar(root, "lock")
    ar(root, "start", "--tag", "t")
    ar(root, "baseline")
    return root


@pytest.mark.slow
def test_a_slower_machine_neither_hides_a_real_gain_nor_keeps_noise(tmp_path: Path) -> None:
    root = drifting_task(tmp_path, TRAIN, 'min_delta = 0.05')
    ar(root, "noise", "-n", "3")  # quiet: sd about 0.01 (min_delta 0.05 is about what it suggests)
    (tmp_path / "agent.py").write_text(AGENT)
    out = ar(root, "run", "-q", "-n", "6", "--agent", f"command:{sys.executable} {tmp_path / 'agent.py'} {{seq}}")
    assert "the best's reference was re-measured" in out.stderr, out.stdout + out.stderr
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    rows = dict(db.execute("SELECT seq, status FROM experiments WHERE seq > 1"))
    assert rows[5] == "keep", rows  # the real gain, measured on the slow machine
    assert [rows[q] for q in (2, 3, 4, 6, 7)] == ["discard"] * 5  # no null edit kept
    references = db.execute("SELECT COUNT(*) FROM runs WHERE role = 'reference'").fetchone()[0]
    assert references >= 3  # journaled runs, not experiments
    assert db.execute("SELECT COUNT(*) FROM experiments").fetchone()[0] == 7


@pytest.mark.slow
def test_without_a_noise_run_the_baselines_own_runs_tell_far_from_near(tmp_path: Path) -> None:
    """The quickstart case: nobody runs `noise`, the policy confirms apparent wins (tinylm's
    `confirm = "sequential"`), and the machine gets busy right after the baseline. The baseline
    is then measured three times (as carefully as a confirmed candidate), their spread is the
    noise, and three far losses re-measure the reference long before the 20-experiment re-check:
    the real gain is kept on the slow machine, the null edits are not."""
    # quiet for the baseline's 3 runs
    root = drifting_task(tmp_path, TRAIN.replace("count > 4", "count > 3"), 'confirm = "sequential"')
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    assert db.execute("SELECT COUNT(*) FROM runs WHERE seq = 1").fetchone()[0] == 3  # the baseline, 3 runs
    assert db.execute("SELECT COUNT(*) FROM noise").fetchone()[0] == 0  # no `noise` record behind what follows
    (tmp_path / "agent.py").write_text(AGENT)
    out = ar(root, "run", "-q", "-n", "6", "--agent", f"command:{sys.executable} {tmp_path / 'agent.py'} {{seq}}")
    assert "the best's reference was re-measured" in out.stderr, out.stdout + out.stderr
    assert "lost by far more than the noise" in out.stderr  # the drift rule, not the schedule
    rows = dict(db.execute("SELECT seq, status FROM experiments WHERE seq > 1"))
    assert rows[5] == "keep", rows
    assert [rows[q] for q in (2, 3, 4, 6, 7)] == ["discard"] * 5


FAST_TRAIN = '''import os, random
from pathlib import Path
LEVEL = 10.0
counter = Path(os.environ["AUTORESEARCH_CACHE"]) / "drift-count"
count = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(count))
fast = -5.0 if count > 4 else 0.0  # the machine gets faster after the baseline's 4 runs
noise = random.Random(int(os.environ["AUTORESEARCH_SEED"])).gauss(0.0, 0.05)
print(f"val_loss: {LEVEL + fast + noise:.6f}")
'''

# seq 2, 3: null edits; seq 4: the real gain; seq 5: a null edit again
FAST_AGENT = AGENT.replace("seq == 5", "seq == 4")


@pytest.mark.slow
def test_reference_confirmation_is_not_fooled_by_a_faster_machine(tmp_path: Path) -> None:
    """`confirm = "reference"` compares a candidate with the best's stored runs instead of
    re-running the best beside it, so a machine that got faster makes every null edit look like a
    gain. Its guard (one fresh run of the best before a keep) must catch that: the null edit is
    not kept, the reference is re-measured, and a real gain afterwards is still kept."""
    root = drifting_task(tmp_path, FAST_TRAIN, 'confirm = "reference"')
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    assert db.execute("SELECT COUNT(*) FROM runs WHERE seq = 1").fetchone()[0] == 4  # the reference, 4 runs
    (tmp_path / "agent.py").write_text(FAST_AGENT)
    out = ar(root, "run", "-q", "-n", "4", "--agent", f"command:{sys.executable} {tmp_path / 'agent.py'} {{seq}}")
    rows = dict(db.execute("SELECT seq, status FROM experiments WHERE seq > 1"))
    assert rows[2] == "discard" and rows[3] == "discard" and rows[5] == "discard", (rows, out.stderr)
    assert rows[4] == "keep", (rows, out.stderr)
    details = json.loads(db.execute("SELECT details_json FROM experiments WHERE seq = 2").fetchone()[0])
    assert details.get("reference_moved") is not None, details  # the guard saw it
    assert "the best's reference was re-measured" in out.stderr
    kept = json.loads(db.execute("SELECT details_json FROM experiments WHERE seq = 4").fetchone()[0])["confirm"]
    assert kept["test"] == "reference" and len(kept["candidate_runs"]) >= 4  # the new best's own reference


@pytest.mark.slow
def test_the_native_experiment_re_measures_a_stale_reference_at_once(tmp_path: Path) -> None:
    """The same faster machine, by hand: the guard's finding re-measures the best right away, so
    the person's next experiment meets a current reference."""
    root = drifting_task(tmp_path, FAST_TRAIN, 'confirm = "reference"\nreference_runs = 4')
    (root / "train.py").write_text((root / "train.py").read_text() + "# a comment\n")
    out = ar(root, "experiment", "-m", "a null edit", check=False)
    assert out.stdout.startswith("discard: "), out.stdout + out.stderr
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    events = json.loads(db.execute("SELECT value FROM meta WHERE key = 'references:t'").fetchone()[0])
    assert [e["why"] for e in events] == ["drift"] and events[0]["value"] < 6.0  # the fast machine's level
    assert db.execute("SELECT COUNT(*) FROM runs WHERE role = 'reference'").fetchone()[0] == 4


LOADED_TRAIN = '''import os, random, time
from pathlib import Path
LEVEL = 10.0
time.sleep(0.2)  # long enough for the harness to tell a load (it judges none over 0.05 s)
burst, stat = Path({burst!r}), Path({stat!r})
busy = burst.exists()
if busy:  # a neighbour keeps two CPUs busy for 2 s: the machine's CPU readings say so
    fields = stat.read_text().split()
    fields[1] = str(int(fields[1]) + 4 * {tick})
    stat.write_text(" ".join(fields) + "\\n")
noise = random.Random(int(os.environ["AUTORESEARCH_SEED"])).gauss(0.0, 0.01)
print(f"val_loss: {{LEVEL + (5.0 if busy else 0.0) + noise:.6f}}")
'''


def loaded_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verdict: str) -> tuple[Path, Path]:
    """A started task (baseline measured on a calm machine) whose runs, while the returned burst
    file exists, are 5 units slower and leave the machine's CPU readings saying it was busy."""
    stat, burst = tmp_path / "proc-stat", tmp_path / "burst"
    stat.write_text("cpu  100 0 100 1000 0 0 0 0 0 0\n")
    monkeypatch.setenv("AUTORESEARCH_PROC_STAT", str(stat))
    root = drifting_task(tmp_path, LOADED_TRAIN.format(burst=str(burst), stat=str(stat), tick=os.sysconf("SC_CLK_TCK")),
                         verdict)
    return root, burst


def references(root: Path) -> list[dict]:
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    row = db.execute("SELECT value FROM meta WHERE key = 'references:t'").fetchone()
    return json.loads(row[0]) if row else []


@pytest.mark.slow
def test_noise_under_load_is_no_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, burst = loaded_task(tmp_path, monkeypatch, "min_delta = 0.05")
    burst.write_text("busy")
    out = ar(root, "noise", "-n", "3").stdout
    assert "3 of 3 runs were under load" in out and "not a reference, the old one stays" in out, out
    assert "the best's reference stays" in out
    assert references(root) == []  # the bar is still the calm baseline's
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    assert db.execute("SELECT COUNT(*) FROM runs WHERE role = 'noise' AND status = 'busy'").fetchone()[0] == 3
    status = json.loads(ar(root, "status", "--json").stdout)
    assert status["best"]["metric"] < 10.1
    burst.unlink()  # calm again: now it is a reference
    out = ar(root, "noise", "-n", "3").stdout
    assert "the best's reference is now " in out, out
    assert [e["why"] for e in references(root)] == ["noise"] and references(root)[0]["value"] < 10.1


@pytest.mark.slow
def test_the_drift_rule_does_not_re_measure_under_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine gets visibly busy after the baseline: every candidate loses by far, the drift
    rule re-measures the best, and those runs, under load too, do not become its reference."""
    root, burst = loaded_task(tmp_path, monkeypatch, "min_delta = 0.05")
    ar(root, "noise", "-n", "3")  # calm: the noise sd the drift rule needs, and a calm reference
    burst.write_text("busy")
    (tmp_path / "agent.py").write_text(AGENT)
    out = ar(root, "run", "-q", "-n", "4", "--agent", f"command:{sys.executable} {tmp_path / 'agent.py'} {{seq}}")
    assert "re-measuring the best: 3 of 3 runs were under load" in out.stderr, out.stdout + out.stderr
    assert "the best's reference was re-measured" not in out.stderr
    assert [e["why"] for e in references(root)] == ["noise"]  # the calm one only


def test_a_reference_is_made_of_calm_runs_only() -> None:
    assert calm_reference([1.0, 2.0, 3.0], [], []) == (2.0, "")
    value, said = calm_reference([1.0, 2.0], [9.0], ["the machine 100% busy"])
    assert value == 1.5 and "1 of 3 runs were under load (the machine 100% busy)" in said
    assert calm_reference([1.0], [9.0, 9.5], ["x", "y"])[0] is None
    assert calm_reference([1.0, 2.0], [9.0, 9.5], ["x", "y"])[0] is None  # calm runs must be the majority
    assert calm_reference([], [], []) == (None, "")
