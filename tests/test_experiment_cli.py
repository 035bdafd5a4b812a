"""The guarded experiment, end to end through the real CLI on the `example` template."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import AUTORESEARCH, ar, git, make_task, set_knob


def journal_rows(root: Path) -> list[dict]:
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    db.row_factory = sqlite3.Row
    return [dict(r) for r in db.execute("SELECT * FROM experiments ORDER BY seq")]


def experiment(root: Path, message: str, *extra: str) -> subprocess.CompletedProcess:
    return ar(root, "experiment", "-m", message, *extra, check=False)


@pytest.mark.slow
def test_baseline_keep_discard_and_results_tsv(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    set_knob(root, "LEARNING_RATE", "0.2")
    keep = experiment(root, "lr 0.2")
    assert keep.returncode == 0, keep.stderr
    first, second = keep.stdout.strip().splitlines()
    assert first.startswith("keep: val_loss ") and "vs best" in first
    assert second.startswith("log: ") and second.endswith("run.log")
    best_tip = git(root, "rev-parse", "HEAD").strip()

    set_knob(root, "LEARNING_RATE", "0.001")
    out = experiment(root, "lr 0.001", "--json")
    assert out.returncode == 0
    record = json.loads(out.stdout)
    assert record["status"] == "discard" and record["delta"] > 0
    assert git(root, "rev-parse", "HEAD").strip() == best_tip  # reset to best
    assert "LEARNING_RATE = 0.2" in (root / "train.py").read_text()
    # every experiment commit stays reachable, kept or not
    refs = git(root, "for-each-ref", "--format=%(refname)", "refs/autoresearch/t/")
    assert refs.split() == ["refs/autoresearch/t/1", "refs/autoresearch/t/2", "refs/autoresearch/t/3"]

    frame = pd.read_csv(root / "results.tsv", sep="\t")
    assert list(frame.columns) == ["commit", "val_loss", "memory_gb", "status", "description"]
    assert list(frame["status"]) == ["keep", "keep", "discard"]
    assert all(len(c) == 7 for c in frame["commit"])
    lines = (root / "results.tsv").read_text().splitlines()
    assert lines[1].split("\t")[1].count(".") == 1 and len(lines[1].split("\t")[1].split(".")[1]) == 6
    regenerated = ar(root, "results", "--tsv").stdout
    assert regenerated == (root / "results.tsv").read_text()
    status = json.loads(ar(root, "status", "--json").stdout)
    assert status["counts"]["keep"] == 2 and status["lock"] == "ok"
    assert status["best"]["description"] == "lr 0.2"


@pytest.mark.parametrize("body, reason", [
    ("raise RuntimeError('boom')", "exit-1"),
    ("import sys; sys.exit(7)", "exit-7"),
    ("print('no metric here'); raise SystemExit(0)", "missing-metric"),
    ("print('val_loss: nan'); raise SystemExit(0)", "non-finite-metric"),
])
def test_crashes_are_recorded_and_reverted(tmp_path: Path, body: str, reason: str) -> None:
    root = make_task(tmp_path)
    train = root / "train.py"
    original = train.read_text()
    train.write_text(original.replace('if __name__ == "__main__":', f'if __name__ == "__main__":\n    {body}\n'))
    out = experiment(root, "broken")
    assert out.returncode == 3, out.stdout + out.stderr
    assert out.stdout.startswith(f"crash: {reason}")
    assert train.read_text() == original
    row = journal_rows(root)[-1]
    assert row["status"] == "crash" and row["reason"] == reason
    if reason == "exit-1":
        assert "RuntimeError: boom" in row["log_tail"]
    tsv = (root / "results.tsv").read_text().splitlines()[-1].split("\t")
    assert tsv[1:4] == ["0.000000", "0.0", "crash"]


HANG = '''
import os, subprocess, sys, time
out = os.environ["AUTORESEARCH_OUT"]
child = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
path = sys.argv[1]
while True:
    with open(path, "w") as fh:
        fh.write(str(time.time()))
    time.sleep(0.05)
"""
subprocess.Popen([sys.executable, "-c", child, os.path.join(out, "heartbeat")])
signal_free = subprocess.Popen([sys.executable, "-c", "import os, time; os.setsid(); " + child.replace("signal.signal(signal.SIGTERM, signal.SIG_IGN)", "") , os.path.join(out, "escapee")])
time.sleep(600)
'''


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", ["none", "auto"])
def test_timeout_kills_the_whole_group(tmp_path: Path, sandbox: str) -> None:
    root = make_task(tmp_path, config_edits={
        "seconds = 10\ntimeout = 60": f"seconds = 1\ntimeout = 2\n\n[sandbox]\nkind = \"{sandbox}\""})
    train = root / "train.py"
    train.write_text(train.read_text().replace('if __name__ == "__main__":', f'if __name__ == "__main__":\n    exec({HANG!r})\n'))
    began = time.time()
    out = experiment(root, "hang")
    assert out.returncode == 3 and out.stdout.startswith("crash: timeout"), out.stdout + out.stderr
    assert time.time() - began < 30
    run_dir = root / ".autoresearch" / "runs" / "2" / "out"
    for name in ("heartbeat", "escapee"):
        beat = run_dir / name
        assert beat.exists(), name
        before = beat.read_text()
        time.sleep(0.4)
        assert beat.read_text() == before, f"{name} still alive after the experiment"


def test_rejected_harness_edit_is_restored(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    prepare = root / "prepare.py"
    original = prepare.read_text()
    prepare.write_text(original + "\nVAL = VAL[:3]  # easier\n")
    set_knob(root, "LEARNING_RATE", "0.2")
    out = experiment(root, "cheat")
    assert out.returncode == 4 and out.stdout.startswith("rejected: harness-modified")
    assert prepare.read_text() == original
    row = journal_rows(root)[-1]
    assert row["status"] == "rejected" and "prepare.py: changed" in row["details_json"]
    assert (root / "results.tsv").read_text().splitlines()[-1].split("\t")[3] == "rejected"


def test_a_new_file_over_the_cap_never_enters_git(tmp_path: Path) -> None:
    """The size check lists untracked files with git only when some file in the folder is over
    the cap at all (a cheap walk says so): an untracked big file is still found and moved aside,
    and an ignored big one is left where it is."""
    root = make_task(tmp_path, config_edits={"timeout = 60": "timeout = 60\nmax_new_file_bytes = 4096"})
    set_knob(root, "LEARNING_RATE", "0.2")
    (root / "__pycache__").mkdir(exist_ok=True)
    (root / "__pycache__" / "big.pyc").write_bytes(b"i" * 10_000)  # ignored: not git's business
    (root / "big.bin").write_bytes(b"b" * 10_000)
    out = experiment(root, "with a big new file")
    assert out.returncode == 4 and "out-of-scope" in out.stdout, out.stdout + out.stderr
    assert not (root / "big.bin").exists()
    moved = root / ".autoresearch" / "quarantine" / "oversized" / "big.bin"
    assert moved.read_bytes() == b"b" * 10_000  # moved aside, whole
    assert (root / "__pycache__" / "big.pyc").exists()
    commit = journal_rows(root)[-1]["commit_sha"]
    assert "big.bin" not in git(root, "ls-tree", "-r", "--name-only", commit)
    assert "big.bin: new file over the size cap" in journal_rows(root)[-1]["details_json"]


def test_unignoring_the_state_folder_keeps_it_out_of_git(tmp_path: Path) -> None:
    """The attack: the agent drops `.autoresearch/` from .gitignore. The folder (the journal,
    its write-ahead log, run outputs) was then committed into git as part of the candidate. Now
    it never is: the edit is rejected like any out-of-scope change and .gitignore put back."""
    root = make_task(tmp_path)
    before = len(journal_rows(root))
    gitignore = root / ".gitignore"
    original = gitignore.read_text()
    gitignore.write_text("".join(line + "\n" for line in original.splitlines() if line != ".autoresearch/"))
    set_knob(root, "LEARNING_RATE", "0.2")
    out = experiment(root, "unignore the journal")
    assert out.returncode == 4 and "out-of-scope" in out.stdout, out.stdout + out.stderr
    row = journal_rows(root)[-1]
    assert len(journal_rows(root)) == before + 1 and json.loads(row["details_json"])["files"] == [".gitignore", "train.py"]
    assert not [p for p in git(root, "ls-tree", "-r", "--name-only", row["commit_sha"]).splitlines()
                if p.startswith(".autoresearch")]
    assert gitignore.read_text() == original and not list((root / ".autoresearch").rglob("quarantine/*"))


@pytest.mark.slow
def test_rejected_out_of_scope_files(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    (root / "helper.py").write_text("X = 1\n")
    set_knob(root, "LEARNING_RATE", "0.2")
    out = experiment(root, "new file")
    assert out.returncode == 4 and "out-of-scope" in out.stdout
    assert not (root / "helper.py").exists()
    quarantined = list((root / ".autoresearch" / "runs").rglob("quarantine/helper.py"))
    assert quarantined and quarantined[0].read_text() == "X = 1\n"  # moved aside, never deleted
    assert "LEARNING_RATE = 0.05" in (root / "train.py").read_text()
    # .gitignore is outside the editable surface too
    (root / ".gitignore").write_text("train.py\n")
    out = experiment(root, "ignore the editable file")
    assert out.returncode == 4 and "out-of-scope" in out.stdout
    assert ".autoresearch/" in (root / ".gitignore").read_text()


def test_editable_file_replaced_by_symlink_is_rejected(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    train = root / "train.py"
    (tmp_path / "elsewhere.py").write_text(train.read_text())
    train.unlink()
    train.symlink_to(tmp_path / "elsewhere.py")
    out = experiment(root, "symlink")
    assert out.returncode == 4 and "out-of-scope" in out.stdout
    assert train.is_file() and not train.is_symlink()


@pytest.mark.slow
def test_agent_commit_and_branch_switch_are_handled(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    best = git(root, "rev-parse", "HEAD").strip()
    set_knob(root, "LEARNING_RATE", "0.2")
    git(root, "commit", "-qam", "agent's own commit")
    out = experiment(root, "lr 0.2 committed by the agent", "--json")
    record = json.loads(out.stdout)
    assert record["status"] == "keep"
    assert record["details"]["head_moved"]["head"] != best
    assert git(root, "rev-parse", "HEAD^").strip() == best  # the experiment's parent is best, not the agent's commit
    assert git(root, "rev-parse", "--abbrev-ref", "HEAD").strip() == "autoresearch/t"
    # the agent switches to another branch and edits there: detected, and the run branch is restored
    git(root, "checkout", "-q", "-b", "elsewhere")
    set_knob(root, "STEPS", "300")
    out = experiment(root, "on another branch", "--json")
    record = json.loads(out.stdout)
    assert record["details"]["head_moved"]["branch"] == "elsewhere"
    assert git(root, "rev-parse", "--abbrev-ref", "HEAD").strip() == "autoresearch/t"


@pytest.mark.slow
def test_sigkill_mid_run_then_recovery(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    train = root / "train.py"
    original = train.read_text()
    train.write_text(original.replace('if __name__ == "__main__":', 'if __name__ == "__main__":\n'
                     '    import os, time\n    open(os.path.join(os.environ["AUTORESEARCH_OUT"], "started"), "w").close()\n'
                     '    time.sleep(120)\n'))
    proc = subprocess.Popen([*AUTORESEARCH, "experiment", "-m", "slow"], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    marker = root / ".autoresearch" / "runs" / "2" / "out" / "started"
    deadline = time.time() + 30
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists()
    assert journal_rows(root)[-1]["status"] == "running"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # a second experiment at the same time would be refused; after the kill the lock is free
    out = ar(root, "status", "--json")
    assert json.loads(out.stdout)["last"]["status"] == "running"
    set_knob_text = train.read_text()
    assert "time.sleep(120)" in set_knob_text  # the tree is still as the killed run left it
    train.write_text(original)
    set_knob(root, "LEARNING_RATE", "0.2")
    out = experiment(root, "after the kill")
    assert out.returncode == 0, out.stdout + out.stderr
    rows = journal_rows(root)
    assert [r["status"] for r in rows] == ["keep", "crash", "keep"]
    assert rows[1]["reason"] == "interrupted"
    tsv = (root / "results.tsv").read_text().splitlines()
    assert len(tsv) == 4 and tsv[2].split("\t")[3] == "crash"  # header + 3 rows, none duplicated
    # the orphaned run (sleep 120) was killed by the recovery
    pgid = json.loads(rows[1]["details_json"]).get("run_pgid")
    assert pgid
    deadline = time.time() + 10  # killed; give init a moment to reap it
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


@pytest.mark.slow
def test_two_experiments_at_once_are_refused(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    train = root / "train.py"
    train.write_text(train.read_text().replace('if __name__ == "__main__":', 'if __name__ == "__main__":\n'
                     '    import os, time\n    open(os.path.join(os.environ["AUTORESEARCH_OUT"], "started"), "w").close()\n'
                     '    time.sleep(3)\n'))
    first = subprocess.Popen([*AUTORESEARCH, "experiment", "-m", "first"], cwd=root, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    marker = root / ".autoresearch" / "runs" / "2" / "out" / "started"
    deadline = time.time() + 30
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.05)
    second = experiment(root, "second")
    assert second.returncode == 1 and "busy" in second.stderr
    first.wait(timeout=60)
    assert [r["description"] for r in journal_rows(root)] == ["baseline", "first"]


def test_dirty_tree_at_start_is_refused(tmp_path: Path) -> None:
    root = make_task(tmp_path, start=False)
    set_knob(root, "LEARNING_RATE", "0.3")
    out = ar(root, "start", "--tag", "x", check=False)
    assert out.returncode == 1 and "uncommitted changes in train.py" in out.stderr
    assert "LEARNING_RATE = 0.3" in (root / "train.py").read_text()  # nothing lost
    assert "autoresearch/x" not in git(root, "branch")


@pytest.mark.slow
def test_non_utf8_output_and_log_cap(tmp_path: Path) -> None:
    root = make_task(tmp_path, config_edits={"timeout = 60": "timeout = 60\nlog_max_bytes = 8192"})
    train = root / "train.py"
    train.write_text(train.read_text().replace('if __name__ == "__main__":', 'if __name__ == "__main__":\n'
                     '    import sys\n    sys.stdout.buffer.write(b"\\xff\\xfe garbage \\xc3\\x28\\n" * 2000)\n'
                     '    sys.stdout.flush()\n'))
    out = experiment(root, "noisy output")
    assert out.returncode == 0, out.stdout + out.stderr
    log = Path(out.stdout.splitlines()[1].removeprefix("log: "))
    assert log.stat().st_size <= 8192 + 200
    assert b"val_loss:" in log.read_bytes()


@pytest.mark.slow
def test_program_md_relock_is_recorded(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    (root / "program.md").write_text((root / "program.md").read_text() + "\nTry momentum.\n")
    set_knob(root, "LEARNING_RATE", "0.2")
    out = experiment(root, "before relock")
    assert out.returncode == 4 and "harness-modified" in out.stdout  # an unlocked edit counts as tampering
    (root / "program.md").write_text((root / "program.md").read_text() + "\nTry momentum.\n")
    ar(root, "lock")
    assert "Try momentum." in git(root, "show", "HEAD:program.md")  # committed so agents see it
    set_knob(root, "LEARNING_RATE", "0.2")
    out = experiment(root, "after relock")
    assert out.returncode == 0, out.stdout + out.stderr
    hashes = [r["program_hash"] for r in journal_rows(root)]
    assert hashes[0] == hashes[1] != hashes[2]
    prepare = root / "prepare.py"
    prepare.write_text(prepare.read_text() + "\n# new harness\n")
    refused = ar(root, "lock", check=False)
    assert refused.returncode == 1 and "start a new tag" in refused.stderr


def test_first_experiment_on_a_branch_is_the_baseline(tmp_path: Path) -> None:
    root = make_task(tmp_path, baseline=False)
    out = experiment(root, "first", "--json")
    record = json.loads(out.stdout)
    assert record["status"] == "keep" and record["reason"] == "baseline" and record["is_baseline"]


def test_no_change_by_a_person_is_a_message_not_a_row(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    before = journal_rows(root)
    out = experiment(root, "nothing")
    assert out.returncode == 1 and "nothing changed since the best" in out.stderr
    assert journal_rows(root) == before  # no row for a person who forgot to save


def test_native_program_md_tells_the_loop(tmp_path: Path) -> None:
    root = make_task(tmp_path, start=False)
    text = (root / "program.md").read_text()
    assert "autoresearch experiment -m" in text and "tee" in text and "Never stop" in text
    gitignore = (root / ".gitignore").read_text()
    assert ".autoresearch/" in gitignore and "results.tsv" in gitignore


@pytest.mark.slow
def test_json_outputs_parse(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    rows = json.loads(ar(root, "results", "--json").stdout)
    assert rows[0]["status"] == "keep" and rows[0]["is_baseline"]
    assert sys.executable  # the CLI ran under this interpreter


# -- the native fast path: `experiment -m` without click ------------------------------------------

LOADED = ("import atexit, sys\n"
          "atexit.register(lambda: sys.stderr.write('loaded:' + ''.join(' ' + m for m in ('click', 'rich') "
          "if m in sys.modules) + '\\n'))\n"
          "sys.argv = ['autoresearch'] + sys.argv[1:]\n"
          "from autoresearch.cli import main\n"
          "main()\n")


def _cli_loading(root: Path, *args: str) -> tuple[subprocess.CompletedProcess, str]:
    proc = subprocess.run([sys.executable, "-c", LOADED, *args], cwd=root, capture_output=True, text=True, timeout=120)
    loaded = [line for line in proc.stderr.splitlines() if line.startswith("loaded:")]
    return proc, loaded[-1] if loaded else ""


@pytest.mark.slow
def test_commits_carry_the_users_identity_else_a_neutral_one(tmp_path: Path) -> None:
    """git is not asked for the identity up front (a process per experiment): a commit is tried
    with user.useConfigOnly and retried with autoresearch's own identity only where none is set."""
    root = make_task(tmp_path)
    home = tmp_path / "empty-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_", "EMAIL"))}
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "GIT_CONFIG_NOSYSTEM": "1"})

    def run(message: str) -> str:
        proc = subprocess.run([*AUTORESEARCH, "experiment", "-m", message], cwd=root, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        seq = proc.stdout.split("| seq ")[1].split()[0]
        return subprocess.run(["git", "log", "-1", "--format=%an <%ae>", f"refs/autoresearch/t/{seq}"], cwd=root,
                              env=env, capture_output=True, text=True, check=True).stdout.strip()

    set_knob(root, "LEARNING_RATE", "0.2")
    assert run("no identity anywhere") == "autoresearch <autoresearch@localhost>"
    subprocess.run(["git", "config", "user.name", "Ada"], cwd=root, check=True)
    subprocess.run(["git", "config", "user.email", "ada@example.org"], cwd=root, check=True)
    set_knob(root, "LEARNING_RATE", "0.3")
    assert run("the user's identity") == "Ada <ada@example.org>"


@pytest.mark.slow
def test_a_diverged_run_is_a_crash_not_a_claim_mismatch(tmp_path: Path) -> None:
    """With the evaluate phase owning the metric, a run that diverges says nan and the evaluation
    says nan too: that is one failure (crash: non-finite-metric), not a run claiming a number
    the evaluation did not confirm (nan != nan made it one, and `status` warned of cheating)."""
    root = make_task(tmp_path, harness_owned=True)
    for name, value in (("DEGREE", "8"), ("LEARNING_RATE", "0.213"), ("STEPS", "1322")):
        set_knob(root, name, value)
    out = experiment(root, "diverges")
    assert out.returncode == 3 and out.stdout.startswith("crash: non-finite-metric"), out.stdout + out.stderr
    assert "run_phase_claimed" not in json.loads(journal_rows(root)[-1]["details_json"])
    assert "CLAIM MISMATCH" not in ar(root, "status").stdout
