"""Nothing is lost when the disk fills: a real task on a small disk, filled at named points.

Each case copies a real task (made by the real CLI, with a baseline) onto a size-limited tmpfs
that exists only inside one bubblewrap invocation, fills it at one point, and runs the real
CLI: the experiment that meets the full disk, then (space freed) `repair`, `status` and another
experiment. The scenario is one shell script inside that bwrap; it writes each command's exit
code and output, and copies of the task folder, to a folder outside the tmpfs, where these
tests read them with real git and SQLite:

- before the experiment starts (the disk is already full);
- during the run: its output floods the log past the space left;
- after the run: the run's own output file takes the last byte, so the journal write fails;
- in the loop: the agent fills the disk from its scratch copy while it proposes.

Invariants: a one-line error that says the disk is full, names the folder and the way out, no
traceback; the journal passes `PRAGMA integrity_check` and `git fsck` is clean at once; the
edit is on disk or in a ref; after the next command no record is `running` and results.tsv is
the journal's rendering; the next experiment works.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git, make_task

from autoresearch.journal.results import render_tsv
from autoresearch.journal.store import Journal

DISK_BYTES = 4 * 1024 * 1024
EDIT = "LEARNING_RATE = 0.2"

SCRIPT_HEAD = r"""
set -u
task="$DISK/task"
# run NAME CMD...: exit code, stdout and stderr of CMD go to $OBS/NAME.{rc,out,err}
run() { local name=$1; shift; "$@" >"$OBS/$name.out" 2>"$OBS/$name.err"; echo $? >"$OBS/$name.rc"; }
# snap NAME: a copy of the task folder as it is now, outside the small disk
snap() { cp -a "$task" "$OBS/$1"; }
# fill KIB: a ballast file takes every byte of the disk but KIB KiB
fill() {
  dd if=/dev/zero of="$DISK/ballast" bs=64k 2>/dev/null
  if [ "$1" -gt 0 ]; then truncate -s "-$1K" "$DISK/ballast"; fi
}
ar() { "$PY" -m autoresearch "$@"; }
cp -a "$SRC" "$task"
cd "$task"
sed -i 's/^LEARNING_RATE = .*/LEARNING_RATE = 0.2/' train.py
"""

# After the failing experiment: free the space, then the next commands must find a sound task.
SCRIPT_TAIL = r"""
snap failed
rm -f "$DISK/ballast"
rm -rf .autoresearch/runs/*/out/big.bin
if [ -n "${FREE_SLOTS:-}" ]; then rm -rf .autoresearch/slots; fi
run repair ar repair
run status ar status
# the newest record, as `show` tells it once the disk has room again
last=$("$PY" -c "import sqlite3; print(sqlite3.connect('.autoresearch/journal.db').execute('SELECT max(seq) FROM experiments').fetchone()[0])")
run show ar show "$last" --no-diff
# the runs that filled the disk would fill it again: start the next edit from the best (theirs is in
# their experiment ref); a failure before any commit leaves its edit on disk, to be tried now
if [ -n "${FROM_BEST:-}" ]; then git checkout -q autoresearch/t -- train.py; fi
sed -i 's/^STEPS = .*/STEPS = 250/' train.py
run next ar experiment -m "after the disk was freed"
run status2 ar status
snap final
"""


def _bwrap_tmpfs_works(where: Path) -> bool:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False
    where.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run([bwrap, "--dev-bind", "/", "/", "--size", "1048576", "--tmpfs", str(where), "true"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def source_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One task with its baseline, copied onto each case's small disk."""
    base = tmp_path_factory.mktemp("full-disk")
    if not _bwrap_tmpfs_works(base / "probe"):
        pytest.skip("bubblewrap cannot mount a size-limited tmpfs here")
    return make_task(base, config_edits={"timeout = 60": "timeout = 60\nlog_max_bytes = 4194304"})


def scenario(tmp_path: Path, source: Path, body: str) -> Path:
    """Run SCRIPT_HEAD + BODY + SCRIPT_TAIL on a DISK_BYTES tmpfs; returns the observations folder."""
    disk, obs = tmp_path / "small", tmp_path / "obs"
    disk.mkdir()
    obs.mkdir()
    script = tmp_path / "scenario.sh"
    script.write_text(SCRIPT_HEAD + body + SCRIPT_TAIL)
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PY": sys.executable, "DISK": str(disk),
           "OBS": str(obs), "SRC": str(source), "HOME": str(tmp_path),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    env.update({name: os.environ[name] for name in ("PYTHONPATH", "AUTORESEARCH_CACHE", "LANG") if name in os.environ})
    proc = subprocess.run(["bwrap", "--dev-bind", "/", "/", "--size", str(DISK_BYTES), "--tmpfs", str(disk),
                           "bash", str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return obs


def step(obs: Path, name: str) -> tuple[int, str, str]:
    return (int((obs / f"{name}.rc").read_text()), (obs / f"{name}.out").read_text(),
            (obs / f"{name}.err").read_text())


def integrity(root: Path) -> str:
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def statuses(root: Path) -> list[tuple[int, str, str]]:
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    try:
        return [tuple(r) for r in db.execute("SELECT seq, status, reason FROM experiments ORDER BY seq")]
    finally:
        db.close()


def details(root: Path, seq: int) -> dict:
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    try:
        return dict(json.loads(db.execute("SELECT details_json FROM experiments WHERE seq = ?", (seq,)).fetchone()[0]))
    finally:
        db.close()


def fsck_clean(root: Path) -> None:
    proc = subprocess.run(["git", "fsck", "--no-dangling"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0 and "error" not in proc.stderr and "missing" not in proc.stdout, \
        proc.stdout + proc.stderr


def edit_kept(root: Path) -> bool:
    if EDIT in (root / "train.py").read_text():
        return True
    refs = git(root, "for-each-ref", "--format=%(refname)", "refs/autoresearch/").split()
    return any(EDIT in git(root, "show", f"{ref}:train.py") for ref in refs)


def assert_disk_full_message(code: int, err: str) -> None:
    assert code == 1, err
    assert "Traceback" not in err and "Exception in thread" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert "the disk holding" in err and "is full" in err and "free some space" in err, err
    assert "/task" in err, "the message names the folder whose disk is full: " + err
    assert "journal cannot be read" not in err, "a full disk is not a broken journal: " + err


def assert_lost_to_the_disk(obs: Path, seq: int) -> None:
    """The experiment the full disk interrupted says so, in its record and in `show`, although
    its command could write neither the journal nor git when it died (its last words)."""
    assert details(obs / "final", seq).get("cause") == "disk-full", details(obs / "final", seq)
    code, out, err = step(obs, "show")
    assert code == 0, err
    assert f"seq {seq}  crash (interrupted: lost to the full disk)" in out, out
    assert "cause" in out and "is full" in out, out
    assert "refused" not in out, out


def sound_at_failure(obs: Path) -> Path:
    """The task as the failed command left it (journal intact, repository clean); its folder."""
    failed = obs / "failed"
    assert integrity(failed) == "ok"
    fsck_clean(failed)
    return failed


def assert_sound_after(obs: Path) -> None:
    """What the commands after the freed disk must find and leave."""
    for name in ("repair", "status", "next", "status2"):
        code, out, err = step(obs, name)
        assert "Traceback" not in err, (name, err)
        assert code == 0, (name, out, err)
    final = obs / "final"
    assert integrity(final) == "ok"
    fsck_clean(final)
    records = statuses(final)
    assert all(status != "running" for _, status, _ in records), records
    assert records[-1][1] in ("keep", "discard"), records
    with Journal(final / ".autoresearch") as journal:
        expected = render_tsv(journal.experiments("t"), "val_loss", 1 / 1024)
    assert (final / "results.tsv").read_text() == expected
    assert edit_kept(final)


@pytest.mark.slow
def test_disk_full_before_the_experiment(source_task: Path, tmp_path: Path) -> None:
    obs = scenario(tmp_path, source_task, 'fill 0\nrun exp ar experiment -m "lr 0.2"\n')
    code, _, err = step(obs, "exp")
    assert_disk_full_message(code, err)
    failed = sound_at_failure(obs)
    assert EDIT in (failed / "train.py").read_text(), "the edit is still on disk"
    assert_sound_after(obs)


FLOOD = r"""
FROM_BEST=1
cat >> train.py <<'PY'
    import sys
    for _ in range(30000):  # 3 MB of output; the disk has 512 KiB left
        sys.stdout.write("x" * 99 + "\n")
    print(f"val_loss: {val_loss(weights):.6f}")
PY
fill 512
run exp ar experiment -m "a run that floods its log"
"""


@pytest.mark.slow
def test_disk_full_while_the_run_floods_its_log(source_task: Path, tmp_path: Path) -> None:
    """The log gives its space back when the disk fills: the run is not stalled on a pipe
    nobody reads, and the experiment is recorded as usual with a note in its record."""
    obs = scenario(tmp_path, source_task, FLOOD)
    code, out, err = step(obs, "exp")
    assert "Traceback" not in err and "Exception in thread" not in err, err
    assert code == 0 and out.startswith("keep:"), (out, err)
    failed = sound_at_failure(obs)
    assert statuses(failed)[-1][1] == "keep"
    assert "log_problem" in details(failed, 2), "the record says its log is incomplete"
    log = (failed / ".autoresearch" / "runs" / "2" / "run.log").read_text()
    assert "No space left on device" in log and "later output was not kept" in log
    assert_sound_after(obs)


OUT_FILL = r"""
FROM_BEST=1
cat >> train.py <<'PY'
    try:  # the run's own output takes every byte left; the run itself carries on
        with open(os.path.join(os.environ["AUTORESEARCH_OUT"], "big.bin"), "wb") as fh:
            while True:
                fh.write(b"\0" * 65536)
    except OSError:
        pass
PY
run exp ar experiment -m "a run that fills the disk"
"""


@pytest.mark.slow
def test_disk_full_when_the_run_is_recorded(source_task: Path, tmp_path: Path) -> None:
    obs = scenario(tmp_path, source_task, OUT_FILL)
    code, _, err = step(obs, "exp")
    assert_disk_full_message(code, err)
    assert ".autoresearch/runs" in err, "the message points at what the runs left: " + err
    failed = sound_at_failure(obs)
    assert edit_kept(failed)
    assert_sound_after(obs)
    assert (2, "crash", "interrupted") in statuses(obs / "final")
    assert_lost_to_the_disk(obs, 2)


AGENT = r"""from pathlib import Path
train = Path("train.py")
train.write_text(train.read_text().replace("LEARNING_RATE = 0.05", "LEARNING_RATE = 0.2"))
try:  # the agent's scratch copy is on the task's disk: it takes every byte left
    with open("junk.bin", "wb") as fh:
        while True:
            fh.write(b"\0" * 65536)
except OSError:
    pass
print("summary: lr 0.2")
"""


@pytest.mark.slow
def test_disk_full_when_the_agent_fills_it_in_the_loop(source_task: Path, tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text(AGENT)
    body = 'FREE_SLOTS=1\nrun exp ar run -q --agent "command:$PY $OBS/../agent.py" -n 1\n'
    obs = scenario(tmp_path, source_task, body)
    code, _, err = step(obs, "exp")
    assert_disk_full_message(code, err)
    assert ".autoresearch/slots" in err, "the message points at what agents left: " + err
    failed = sound_at_failure(obs)
    assert edit_kept(failed)
    assert_sound_after(obs)
    assert_lost_to_the_disk(obs, 2)
