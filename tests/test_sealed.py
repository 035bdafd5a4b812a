"""Sealed: an agent cannot fake a keep, reach outside its files, or see what it must not.

One test per class of attack that once produced a keep that was not real, each driven through
the real CLI (`run --agent command:...` for the orchestrated mode, `experiment` for the native
one) on the `example` template, whose metric is computed by its read-only evaluate phase. Each
asserts: no keep, harness and best unchanged, nothing left running, nothing applied outside the
editable files.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from conftest import ar, git, make_task, processes_with, set_knob

from autoresearch.harness.sandbox import bwrap_works

needs_bwrap = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is not usable here (apt-get install bubblewrap)")

# The agent: a script run in its scratch copy; MODE picks the attack. It always also makes a
# harmless edit, so the attempt is measured (and must still not be a keep).
AGENT = r'''import os, subprocess, sys, time, py_compile, importlib.util
from pathlib import Path
mode = sys.argv[1]
task = Path(sys.argv[2])
train = Path("train.py")
train.write_text(train.read_text().replace("STEPS = 200", "STEPS = 10"))  # a worse change
if mode == "bytecode":
    fake = Path("fake_prepare.py")
    fake.write_text(Path("prepare.py").read_text().replace("return total / len(VAL)", "return 0.0"))
    tag = sys.implementation.cache_tag
    for root in (Path("."), task):  # its copy, and the task folder by absolute path
        try:
            (root / "__pycache__").mkdir(exist_ok=True)
            py_compile.compile(str(fake), cfile=str(root / "__pycache__" / f"prepare.{tag}.pyc"),
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
            print("planted in", root)
        except OSError as exc:
            print("refused:", root, exc)
    fake.unlink()
elif mode == "escape":
    # a process in its own session, environment cleared, that waits for the run and swaps the harness
    code = ("import time, pathlib; time.sleep(1.5); p = pathlib.Path(%r) / 'prepare.py'; "
            "t = p.read_text(); p.write_text(t.replace('return total / len(VAL)', 'return 0.0')); "
            "time.sleep(6); p.write_text(t); pathlib.Path(%r).write_text('still alive')") % (str(task), str(task.parent / "escaped"))
    subprocess.Popen(["setsid", "env", "-i", sys.executable, "-c", code], start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print("escapee started")
elif mode == "write-outside":
    import site
    targets = [Path.home() / "pwned.txt", Path("/tmp/pwned-by-agent.txt"), task / "pwned.txt",
               task / "prepare.py", Path(site.getsitepackages()[0]) / "zz_pwned.pth",
               Path(importlib.util.find_spec("autoresearch").origin).parent / "pwned.py"]
    for target in targets:
        try:
            if target.name == "prepare.py":
                target.write_text(target.read_text() + "\n# edited by the agent\n")
            else:
                target.write_text("import os; os.environ['PWNED'] = '1'\n" if target.suffix == ".pth" else "pwned\n")
            print("WROTE", target)
        except OSError as exc:
            print("refused:", target, type(exc).__name__)
elif mode == "read-hidden":
    for target in (task / ".autoresearch" / "journal.db", Path(os.environ["AUTORESEARCH_CACHE"]) / "evaldata" / "val.txt"):
        try:
            data = target.read_bytes()
            print("READ", target, len(data))
            train.write_text(train.read_text() + f"\n# stolen {len(data)} bytes\n")
        except OSError as exc:
            print("refused:", target, type(exc).__name__)
elif mode == "leak-secret":
    print("my key is", os.environ.get("OPENAI_API_KEY"))
    train.write_text(train.read_text().replace('if __name__ == "__main__":',
        'if __name__ == "__main__":\n    import os; print("run sees:", os.environ.get("OPENAI_API_KEY")); raise SystemExit(3)'))
elif mode == "linger":
    print("lingering", flush=True)
    subprocess.Popen(["setsid", sys.executable, "-c", "import time; time.sleep(120)", "linger-child"])
    time.sleep(120)
print("summary:", mode)
'''


@pytest.fixture()
def task(tmp_path: Path) -> Path:
    root = make_task(tmp_path, harness_owned=True)
    (tmp_path / "agent.py").write_text(AGENT)
    return root


def run_agent(root: Path, mode: str, env: dict | None = None) -> dict:
    spec = f"command:{sys.executable} {root.parent / 'agent.py'} {mode} {root}"
    out = ar(root, "run", "-q", "--agent", spec, "-n", "1", check=False, env=env)
    assert "stopped" in out.stdout, out.stdout + out.stderr
    return last_row(root)


def last_row(root: Path) -> dict:
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    db.row_factory = sqlite3.Row
    row = dict(db.execute("SELECT * FROM experiments ORDER BY seq DESC LIMIT 1").fetchone())
    db.close()
    row["details"] = json.loads(row["details_json"])
    return row


def assert_sealed(root: Path, row: dict) -> None:
    """No keep; the harness, the lock and the best are what they were."""
    assert row["status"] != "keep", row
    assert ar(root, "verify").returncode == 0
    status = json.loads(ar(root, "status", "--json").stdout)
    assert status["best"]["seq"] == 1  # still the baseline
    assert git(root, "status", "--porcelain", "--untracked-files=no") == ""


@pytest.mark.slow
@needs_bwrap
def test_planted_bytecode_is_never_loaded(task: Path) -> None:
    row = run_agent(task, "bytecode")
    agent_log = (task / ".autoresearch" / "runs" / str(row["seq"]) / "agent.log").read_text()
    assert "refused: " + str(task) in agent_log  # the task folder is read-only to the agent
    assert row["metric"] > 0.04  # STEPS = 10 is worse; a loaded fake would print 0.0
    assert_sealed(task, row)
    # native mode: a cache planted in the task folder's ignored __pycache__ is not in the export
    import py_compile

    fake = task.parent / "fake_prepare.py"
    fake.write_text((task / "prepare.py").read_text().replace("return total / len(VAL)", "return 0.0"))
    (task / "__pycache__").mkdir(exist_ok=True)
    py_compile.compile(str(fake), cfile=str(task / "__pycache__" / f"prepare.{sys.implementation.cache_tag}.pyc"),
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    set_knob(task, "STEPS", "10")
    out = ar(task, "experiment", "-m", "worse, with a planted cache", "--json", check=False)
    record = json.loads(out.stdout)
    assert record["status"] == "discard" and record["metric"] > 0.04


@needs_bwrap
def test_an_escaped_process_dies_with_the_proposal_and_cannot_swap_the_harness(task: Path) -> None:
    row = run_agent(task, "escape")
    time.sleep(8)  # longer than the escapee would have lived
    assert not (task.parent / "escaped").exists()
    assert row["metric"] > 0.04
    assert_sealed(task, row)


@needs_bwrap
def test_the_agent_writes_nowhere_but_its_copy(task: Path) -> None:
    import site

    import autoresearch

    row = run_agent(task, "write-outside")
    log = (task / ".autoresearch" / "runs" / str(row["seq"]) / "agent.log").read_text()
    # HOME and /tmp are the agent's private ones (a seeded copy, an empty tmpfs): its writes land
    # there and never in the user's; everything else is read-only.
    for target in (task / "pwned.txt", task / "prepare.py", "zz_pwned.pth", "autoresearch/pwned.py"):
        assert "refused: " in log and f"WROTE {target}" not in log and not any(
            line.startswith("WROTE") and str(target) in line for line in log.splitlines()), log
    assert not (Path.home() / "pwned.txt").exists() and not Path("/tmp/pwned-by-agent.txt").exists()
    assert not (task / "pwned.txt").exists()
    assert not (Path(site.getsitepackages()[0]) / "zz_pwned.pth").exists()
    assert not (Path(autoresearch.__file__).parent / "pwned.py").exists()
    assert row["details"]["files"] == ["train.py"]  # only the editable file came back
    assert_sealed(task, row)


@pytest.mark.slow
@needs_bwrap
def test_hidden_data_and_state_are_invisible_to_the_agent(tmp_path: Path) -> None:
    cache = Path(os.environ["AUTORESEARCH_CACHE"]) / "evaldata"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "val.txt").write_text("the answers\n")
    root = make_task(tmp_path, harness_owned=True,
                     config_edits={"[agent]": '[sandbox]\neval_data = ["$AUTORESEARCH_CACHE/evaldata"]\n\n[agent]'})
    (tmp_path / "agent.py").write_text(AGENT)
    row = run_agent(root, "read-hidden")
    log = (root / ".autoresearch" / "runs" / str(row["seq"]) / "agent.log").read_text()
    assert "READ" not in log and log.count("refused:") == 2, log
    assert "stolen" not in git(root, "show", f"{row['commit_sha']}:train.py")


@needs_bwrap
def test_a_secret_reaches_no_run_and_no_file(task: Path) -> None:
    secret = "sk-test-0123456789abcdefSECRET"
    row = run_agent(task, "leak-secret", env={"OPENAI_API_KEY": secret})
    assert row["status"] == "crash"
    run_log = Path(row["log_path"]).read_text()
    assert "run sees: None" in run_log  # the allowlist kept it out of the run
    agent_log = (task / ".autoresearch" / "runs" / str(row["seq"]) / "agent.log").read_text()
    assert "[redacted:OPENAI_API_KEY]" in agent_log  # the agent had it (it talks to its model); the log does not
    ar(task, "report", env={"OPENAI_API_KEY": secret})
    for path in [*task.joinpath(".autoresearch").rglob("*"), task / "results.tsv", task / "report.html"]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_a_printed_metric_is_not_the_metric(task: Path) -> None:
    """The example's metric comes from its read-only evaluate phase: printing a better number
    from train.py changes nothing, and is flagged as a claim mismatch."""
    train = task / "train.py"
    train.write_text(train.read_text().replace('    print(f"val_loss: {val_loss(weights):.6f}")',
                                               '    print("val_loss: 0.000001")'))
    out = ar(task, "experiment", "-m", "print a better number", "--json", check=False)
    record = json.loads(out.stdout)
    assert record["status"] == "discard" and record["details"]["run_phase_claimed"] == 0.000001
    assert "CLAIM MISMATCH" in ar(task, "status").stdout


def test_every_template_measures_outside_the_editable_code() -> None:
    """Each shipped template owns its number: an evaluate phase, or a harness that runs the
    editable code in a child process whose output it does not parse for metrics."""
    from autoresearch.config.task import load_config
    from autoresearch.scaffold import list_templates

    for t in list_templates():
        config = load_config(t.path)
        if config.task.evaluate:
            continue
        harness = (t.path / config.task.run.split()[-1]).read_text()
        assert "capture_output=True" in harness or "stdout=subprocess.PIPE" in harness or \
            all(f.endswith(".sql") for f in config.task.editable), t.name


@pytest.mark.slow
def test_an_over_budget_run_is_rejected_however_good(tmp_path: Path) -> None:
    root = make_task(tmp_path, harness_owned=True,
                     config_edits={"seconds = 10\ntimeout = 60": "seconds = 1\ntimeout = 30", "grace = 2": "grace = 1"})
    train = root / "train.py"  # burns 3 CPU seconds: over the budget on the template's cpu clock
    train.write_text(train.read_text().replace("STEPS = 200", "STEPS = 2000").replace(
        'if __name__ == "__main__":',
        'if __name__ == "__main__":\n    import time; end = time.process_time() + 3\n'
        '    while time.process_time() < end: pass'))
    out = ar(root, "experiment", "-m", "train longer than the budget", "--json", check=False)
    record = json.loads(out.stdout)
    assert (record["status"], record["reason"]) == ("rejected", "over-budget")
    assert record["details"]["over_budget"]["budget"] == 1.0


def test_a_native_relock_with_a_changed_harness_starts_an_epoch_not_a_keep(task: Path) -> None:
    prepare = task / "prepare.py"
    prepare.write_text(prepare.read_text().replace("return total / len(VAL)", "return total / len(VAL) / 1000"))
    out = ar(task, "lock", check=False)
    assert out.returncode == 1 and "epoch" in out.stderr  # refused without --force
    ar(task, "lock", "--force")
    set_knob(task, "LEARNING_RATE", "0.2")
    out = ar(task, "experiment", "-m", "faked by a relocked harness", "--json", check=False)
    record = json.loads(out.stdout)
    # the old best is never compared across the break, and the candidate is never the new
    # epoch's baseline: the best is re-measured under the new harness first, then the candidate
    rows = sqlite3.connect(task / ".autoresearch" / "journal.db").execute(
        "SELECT seq, status, is_baseline, metric FROM experiments ORDER BY seq").fetchall()
    assert rows[0][:2] == (1, "keep")  # the old epoch's record stays as it was
    assert rows[1][1:3] == ("keep", 1)  # the best, re-measured
    assert not record["is_baseline"] and record["best_before"] == pytest.approx(rows[1][3])
    status = json.loads(ar(task, "status", "--json").stdout)
    assert status["epoch"] == 1


@pytest.mark.slow
@needs_bwrap
def test_killing_run_leaves_no_agent_behind(task: Path) -> None:
    """SIGKILL of `autoresearch run` while its agent works: the agent and what it started die too."""
    import signal
    import subprocess

    from conftest import AUTORESEARCH

    spec = f"command:{sys.executable} {task.parent / 'agent.py'} linger {task}"
    proc = subprocess.Popen([*AUTORESEARCH, "run", "-q", "--agent", spec, "-n", "1"], cwd=task,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = task / ".autoresearch" / "runs" / "2" / "agent.log"
    deadline = time.time() + 60
    while time.time() < deadline and not (log.exists() and "lingering" in log.read_text()):
        time.sleep(0.1)
    assert processes_with("linger-child"), "the agent did not start"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and (processes_with("linger-child") or processes_with(f"agent.py linger {task}")):
        time.sleep(0.2)
    assert not processes_with("linger-child") and not processes_with(f"agent.py linger {task}")
    # and the next command closes the interrupted record
    ar(task, "repair")
    assert last_row(task)["status"] == "crash"
