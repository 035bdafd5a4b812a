"""Drift decides nothing: the machine gets slower after the baseline, and the loop still keeps a
real improvement and no null edit.

The task's run reads a counter in $AUTORESEARCH_CACHE: the first four runs (the baseline and
three `noise` runs) are quiet, every later run is 5 units slower, as on a machine that got
busy. Without a re-measured reference every candidate loses to the quiet baseline, so the
real improvement (LEVEL 10 -> 9) would be discarded; the test fails then.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

from conftest import ar, git, make_task

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


def test_a_slower_machine_neither_hides_a_real_gain_nor_keeps_noise(tmp_path: Path) -> None:
    cache = Path(os.environ["AUTORESEARCH_CACHE"])
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "drift-count").unlink(missing_ok=True)
    # the slowdown is simulated with a counter the runs share, so they must be able to write it
    root = make_task(tmp_path, start=False, config_edits={"[agent]": '[sandbox]\nkind = "none"\n\n[verdict]\nmin_delta = 0.05\n\n[agent]'})
    (root / "train.py").write_text(TRAIN)
    git(root, "commit", "-qam", "a drifting task")
    ar(root, "lock")
    ar(root, "start", "--tag", "t")
    ar(root, "baseline")
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


def test_without_a_noise_run_the_baselines_own_runs_tell_far_from_near(tmp_path: Path) -> None:
    """The quickstart case: nobody runs `noise`, the policy confirms apparent wins (tinylm's
    `confirm = "sequential"`), and the machine gets busy right after the baseline. The baseline
    is then measured three times (as carefully as a confirmed candidate), their spread is the
    noise, and three far losses re-measure the reference long before the 20-experiment re-check:
    the real gain is kept on the slow machine, the null edits are not."""
    cache = Path(os.environ["AUTORESEARCH_CACHE"])
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "drift-count").unlink(missing_ok=True)
    root = make_task(tmp_path, start=False, config_edits={
        "[agent]": '[sandbox]\nkind = "none"\n\n[verdict]\nconfirm = "sequential"\n\n[agent]'})
    (root / "train.py").write_text(TRAIN.replace("count > 4", "count > 3"))  # quiet for the baseline's 3 runs
    git(root, "commit", "-qam", "a drifting task")
    ar(root, "lock")
    ar(root, "start", "--tag", "t")
    ar(root, "baseline")
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
