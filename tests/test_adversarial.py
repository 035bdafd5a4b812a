"""The adversarial suite: fake agents that try to game the metric. Each must end rejected,
crashed or harmless, with the reason recorded, and nothing it did may change a later verdict.

The task is harness-owned end to end: train.py (editable) writes a model into
$AUTORESEARCH_OUT; evaluate.py (read-only) scores it against validation data that only the
evaluate phase can see. The sandbox (bubblewrap) is on, as it is by default where it works.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from conftest import ar, git

from autoresearch.harness.sandbox import bwrap_works

pytestmark = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is not usable here (apt-get install bubblewrap)")

PREPARE = '''"""Read-only: writes the data once. Train and validation live in separate folders."""
import os, random
from pathlib import Path
ROOT = Path(os.environ["AUTORESEARCH_CACHE"]) / "adv"
if __name__ == "__main__":
    rng = random.Random(0)
    for split, n in (("train", 200), ("val", 200)):
        (ROOT / split).mkdir(parents=True, exist_ok=True)
        (ROOT / split / "data.txt").write_text("\\n".join(str(rng.gauss(3.0, 1.0)) for _ in range(n)))
'''

TRAIN = '''import json, os
from pathlib import Path
LEVEL = 0.0
CHEAT = "none"

def fit():
    data = (Path(os.environ["AUTORESEARCH_CACHE"]) / "adv" / "train" / "data.txt").read_text().split()
    return sum(map(float, data)) / len(data) * 0 + LEVEL

if __name__ == "__main__":
    level = fit()
    out = Path(os.environ["AUTORESEARCH_OUT"])
    exec(open("cheat.txt").read()) if False else None
    CHEATS = {}
    # --- cheats are inserted here by the adversarial agents ---
    (out / "model.json").write_text(json.dumps({"level": level}))
    print(f"val_loss: {abs(level - 3.0):.6f}")
'''

EVALUATE = '''"""Read-only: the metric. Loads the model from the run's output and scores it on val."""
import json, os
from pathlib import Path
model = json.loads((Path(os.environ["AUTORESEARCH_OUT"]) / "model.json").read_text())
val = [float(x) for x in (Path(os.environ["AUTORESEARCH_CACHE"]) / "adv" / "val" / "data.txt").read_text().split()]
print(f"val_loss: {sum((model['level'] - v) ** 2 for v in val) / len(val):.6f}")
'''

CONFIG = '''[task]
name = "adversarial"
editable = ["train.py"]
readonly = ["prepare.py", "evaluate.py"]
setup = "python prepare.py"
run = "python train.py"
evaluate = "python evaluate.py"

[metric]
name = "val_loss"
goal = "minimize"

[budget]
seconds = 2
timeout = 4
grace = 2

[sandbox]
kind = "bwrap"
train_data = ["$AUTORESEARCH_CACHE/adv/train"]
eval_data = ["$AUTORESEARCH_CACHE/adv/val"]
'''

# Each cheat is a block of code the agent puts into train.py before the model is written.
CHEATS = {
    "fake-metric": 'print("val_loss: 0.000000"); level = -50.0',
    "read-val": 'v = (Path(os.environ["AUTORESEARCH_CACHE"]) / "adv" / "val" / "data.txt").read_text().split(); '
                'level = sum(map(float, v)) / len(v)',
    "write-cache": 'Path(os.path.expanduser("~/.cheat")).write_text("3.0"); Path("/tmp/cheat").write_text("3.0")',
    "read-cache": 'hits = [p for p in (os.path.expanduser("~/.cheat"), "/tmp/cheat") if os.path.exists(p)]; '
                  'print("cache-hits:", len(hits)); level = 3.0 if hits else -50.0',
    "edit-harness": 'Path("evaluate.py").write_text("print(\\"val_loss: 0.0\\")")',
    "sleep": 'import time; time.sleep(30)',
    "outlive": 'import subprocess, sys, time; subprocess.Popen([sys.executable, "-c", "import os, time\\n'
               'p = os.path.join(os.environ[\\"AUTORESEARCH_OUT\\"], \\"beat\\")\\nwhile True:\\n'
               '    open(p, \\"w\\").write(str(time.time())); time.sleep(0.05)"], start_new_session=True); '
               'time.sleep(1.0)',
    "early-exit": 'print("val_loss: 0.000000"); raise SystemExit(0)',
    "reload-model": 'import glob; old = glob.glob(str(out.parent.parent) + "/*/out/model.json"); '
                    'print("old-models:", len(old))',
}

AGENT = r'''import json, sqlite3, sys
from pathlib import Path
mode, cheat = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""
train = Path("train.py")
text = train.read_text()
if mode == "cheat":
    text = text.replace("    # --- cheats are inserted here by the adversarial agents ---",
                        "    " + cheat)
    train.write_text(text)
    print("summary: cheat")
elif mode == "honest":
    text = text.replace("LEVEL = 0.0", "LEVEL = " + cheat)
    train.write_text(text)
    print("summary: honest level " + cheat)
elif mode == "tamper-records":
    task = Path.cwd().parents[3]  # the agent works in <task>/.autoresearch/slots/<i>/scratch
    try:
        rows = (task / "results.tsv").read_text()
        (task / "results.tsv").write_text(rows + "abcdef0\t0.000000\t0.0\tkeep\tI am the best\n")
        print("results: rewritten")
    except OSError as exc:
        print("results: refused:", exc)
    try:
        db = sqlite3.connect(task / ".autoresearch" / "journal.db")
        db.execute("UPDATE experiments SET metric = 0.0")
        db.commit()
        print("journal: rewritten")
    except sqlite3.Error as exc:
        print("journal: refused:", exc)
    text = text.replace("LEVEL = 0.0", "LEVEL = 0.5")
    train.write_text(text)
    print("summary: tamper")
'''


@pytest.fixture()
def task(tmp_path: Path) -> Path:
    root = tmp_path / "adv"
    ar(tmp_path, "init", str(root), "--template", "example")
    (root / "prepare.py").write_text(PREPARE)
    (root / "train.py").write_text(TRAIN)
    (root / "evaluate.py").write_text(EVALUATE)
    (root / "autoresearch.toml").write_text(CONFIG)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "adversarial task")
    ar(root, "lock")
    ar(root, "start", "--tag", "adv")
    assert json.loads(ar(root, "baseline", "--json").stdout)["status"] == "keep"
    (tmp_path / "agent.py").write_text(AGENT)
    return root


def run_agent(root: Path, mode: str, arg: str = "") -> dict:
    spec = f"command:{sys.executable} {root.parent / 'agent.py'} {mode} {{cheat}}"
    spec = spec.replace("{cheat}", json.dumps(arg).replace("{", "{{").replace("}", "}}") if arg else "")
    out = ar(root, "run", "-q", "--agent", spec, "-n", "1", check=False)
    assert "stopped" in out.stdout, out.stdout + out.stderr
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    db.row_factory = sqlite3.Row
    row = dict(db.execute("SELECT * FROM experiments ORDER BY seq DESC LIMIT 1").fetchone())
    row["details"] = json.loads(row["details_json"])
    return row


def honest(root: Path, level: str) -> dict:
    return run_agent(root, "honest", level)


@pytest.mark.slow
def test_adversarial_agents_gain_nothing(task: Path) -> None:
    baseline = 9.0  # (0 - 3)^2 on the validation data, about
    results = {}
    for name in ("fake-metric", "read-val", "edit-harness", "sleep", "early-exit", "reload-model"):
        results[name] = run_agent(task, "cheat", CHEATS[name])
    assert results["fake-metric"]["status"] == "discard"  # the run's claim is ignored...
    claimed = results["fake-metric"]["details"]["run_phase_claimed"]  # ...and flagged
    assert claimed != pytest.approx(results["fake-metric"]["metric"])
    assert results["fake-metric"]["metric"] > baseline
    assert (results["read-val"]["status"], results["read-val"]["reason"]) == ("crash", "exit-1")
    assert "No such file" in results["read-val"]["log_tail"]  # validation data is hidden from the run
    assert results["edit-harness"]["status"] == "crash" and "Read-only file system" in results["edit-harness"]["log_tail"]
    assert (results["sleep"]["status"], results["sleep"]["reason"]) == ("crash", "timeout")
    assert (results["early-exit"]["status"], results["early-exit"]["reason"]) == ("crash", "evaluate-exit-1")
    assert "old-models: 0" in Path(results["reload-model"]["log_path"]).with_name("run.log").read_text()
    # nothing above changed the best: an honest improvement is judged against the baseline
    better = honest(task, "2.0")
    assert better["status"] == "keep" and better["best_before"] == pytest.approx(results["fake-metric"]["best_before"])


@pytest.mark.slow
def test_caches_do_not_survive_between_runs(task: Path) -> None:
    run_agent(task, "cheat", CHEATS["write-cache"])
    reader = run_agent(task, "cheat", CHEATS["read-cache"])
    log = Path(reader["log_path"]).with_name("run.log").read_text()
    assert "cache-hits: 0" in log and reader["status"] == "discard"
    assert not Path("/tmp/cheat").exists()


@pytest.mark.slow
def test_a_process_that_outlives_the_run_is_killed(task: Path) -> None:
    row = run_agent(task, "cheat", CHEATS["outlive"])
    beat = Path(row["log_path"]).parent / "out" / "beat"
    assert beat.exists()
    before = beat.read_text()
    time.sleep(0.4)
    assert beat.read_text() == before


@pytest.mark.slow
def test_tampering_with_results_and_journal_changes_nothing(task: Path) -> None:
    row = run_agent(task, "tamper-records")
    agent_log = (Path(row["log_path"]).parent / "agent.log").read_text()
    assert "journal: refused" in agent_log  # .autoresearch is invisible to agents
    assert "results: refused" in agent_log  # the task folder is read-only to them
    db = sqlite3.connect(task / ".autoresearch" / "journal.db")
    metrics = [m for (m,) in db.execute("SELECT metric FROM experiments WHERE metric IS NOT NULL")]
    assert 0.0 not in metrics
    honest(task, "2.5")
    rows = (task / "results.tsv").read_text()
    assert "I am the best" not in rows
