"""`autoresearch serve`: a warm server must change nothing but speed.

Each test attacks one promise of serve.py's docstring: the served experiment is the command
itself (output, exit code, record, working folder), Ctrl-C and SIGTERM and a dead caller end
the experiment as they end the command, a stopping or killed or stale server never loses a
request (the caller runs it itself), and nobody else can use the socket.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import AUTORESEARCH, ar, git, make_task, processes_with

SLOW_RUN = ('if __name__ == "__main__":', 'if __name__ == "__main__":\n    import time\n    print("started", flush=True)\n'
            '    time.sleep(60)\n')


def slow_task(tmp_path: Path) -> tuple[Path, str]:
    """A task whose next run sleeps; its run command carries a token to find its processes by."""
    token = f"serve-test-{tmp_path.name}"
    root = make_task(tmp_path, config_edits={'run = "python train.py"': f'run = "python train.py {token}"'})
    train = root / "train.py"
    train.write_text(train.read_text().replace(*SLOW_RUN))
    return root, token


def serve(root: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """Start `autoresearch serve` in ROOT; return once its socket is up."""
    proc = subprocess.Popen([*AUTORESEARCH, "serve", *args], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    log = root / ".autoresearch" / "serve.log"
    deadline = time.time() + 60
    while not (log.exists() and f"start\tpid {proc.pid}" in log.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the server did not start"
        time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def start_slow(root: Path, token: str, message: str) -> subprocess.Popen:
    """`experiment -m MESSAGE` in the background; returns once its run (found by TOKEN) is going."""
    caller = subprocess.Popen([*AUTORESEARCH, "experiment", "-m", message], cwd=root, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    wait_for(lambda: bool(processes_with(token)), what="the run to start")
    return caller


def served_lines(root: Path) -> list[list[str]]:
    """serve.log's request lines (caller pid, exit code, ...)."""
    path = root / ".autoresearch" / "serve.log"
    return [line.split("\t")[1:] for line in path.read_text().splitlines() if line.count("\t") >= 5]


def rows(root: Path) -> list[dict]:
    with sqlite3.connect(root / ".autoresearch" / "journal.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM experiments ORDER BY seq")]


def improve(root: Path, factor: str = "0.5") -> None:
    train = root / "train.py"
    train.write_text(train.read_text() + f"\n# edit {factor}\n")


def wait_for(predicate, seconds: float = 60, what: str = "") -> None:  # noqa: ANN001
    deadline = time.time() + seconds
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_served_experiment_is_the_command_itself(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    (root / "sub").mkdir()
    server = serve(root, "--idle", "0")
    try:
        improve(root)
        # -X importtime: the caller's imports go to its stderr; a served caller loads no journal,
        # no git layer, no verdict: proof that the server, not this process, ran the experiment
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "autoresearch", "experiment", "-m", "served",
                               "--json"], cwd=root / "sub", capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
        assert "autoresearch.cli._warm_client" in imported
        assert not imported & {"sqlite3", "autoresearch.trial", "autoresearch.journal", "autoresearch.workspace"}
        record = json.loads(proc.stdout)
        assert record["description"] == "served" and record["status"] in ("keep", "discard")
        assert [r["description"] for r in rows(root)][-1] == "served"
        assert served_lines(root)[-1][1] == "0"  # the server's record of it: exit code 0
        assert git(root, "status", "--porcelain", "--untracked-files=no") == ""
        # exit codes pass through: nothing changed is a message and exit 1, no row
        before = len(rows(root))
        again = ar(root, "experiment", "-m", "nothing", check=False)
        assert again.returncode == 1 and "nothing changed" in again.stderr
        assert len(rows(root)) == before and served_lines(root)[-1][1] == "1"
    finally:
        stop(server)
    assert not (root / ".autoresearch" / "serve.sock").exists()


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "caller-killed"])
def test_ending_the_caller_ends_its_experiment(tmp_path: Path, how: str) -> None:
    root, token = slow_task(tmp_path)
    server = serve(root, "--idle", "0")
    try:
        caller = start_slow(root, token, "slow")
        time.sleep(0.5)
        caller.send_signal({"ctrl-c": signal.SIGINT, "sigterm": signal.SIGTERM, "caller-killed": signal.SIGKILL}[how])
        out, err = caller.communicate(timeout=60)
        if how != "caller-killed":
            assert caller.returncode == 130, out + err
            assert "interrupted" in err
        # the experiment ends as the command's would: recorded, run gone, folder at best
        wait_for(lambda: rows(root)[-1]["status"] != "running", what="the record to settle")
        last = rows(root)[-1]
        assert last["status"] == "crash" and last["reason"] == "interrupted", last
        wait_for(lambda: not processes_with(token), seconds=20, what="the run to end")
        wait_for(lambda: served_lines(root) and served_lines(root)[-1][1] == "130", seconds=20,
                 what="the server to reap the copy")
        assert git(root, "status", "--porcelain", "--untracked-files=no") == ""
        assert server.poll() is None  # the server outlives its callers
    finally:
        stop(server)


def test_stopping_the_server_mid_experiment_interrupts_it_and_loses_nothing(tmp_path: Path) -> None:
    root, token = slow_task(tmp_path)
    server = serve(root, "--idle", "0")
    caller = start_slow(root, token, "slow")
    time.sleep(0.5)
    stopped = ar(root, "serve", "--stop")
    assert f"pid {server.pid}" in stopped.stdout
    out, err = caller.communicate(timeout=60)
    assert caller.returncode == 130, out + err
    server.communicate(timeout=60)
    assert server.returncode == 0
    assert rows(root)[-1]["status"] == "crash" and rows(root)[-1]["reason"] == "interrupted"
    assert not (root / ".autoresearch" / "serve.sock").exists()
    assert git(root, "status", "--porcelain", "--untracked-files=no") == ""
    assert not processes_with(token)
    assert "no server runs" in ar(root, "serve", "--stop").stdout


def test_a_killed_server_leaves_a_socket_that_callers_step_over(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    server = serve(root, "--idle", "0")
    server.send_signal(signal.SIGKILL)
    server.communicate(timeout=30)
    assert (root / ".autoresearch" / "serve.sock").exists()  # the kill left it
    improve(root)
    out = ar(root, "experiment", "-m", "after the kill")  # runs in this process instead
    assert out.stdout.split(":")[0] in ("keep", "discard")
    assert rows(root)[-1]["description"] == "after the kill"
    again = serve(root, "--idle", "0")  # a new server replaces the dead one's socket
    try:
        second = ar(root, "serve", check=False, timeout=60)
        assert second.returncode == 1 and "already runs" in second.stderr and "serve --stop" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        stop(again)


def test_one_copy_runs_request_after_request_and_carries_nothing_over(tmp_path: Path) -> None:
    """A copy stays for the next request (its pages stay its own: no copy-on-write per request),
    but each request starts as the caller's own process: its environment, folder and streams,
    nothing of the request before. An idle copy that dies is replaced, and one that was
    interrupted is not reused."""
    root = make_task(tmp_path)
    (root / "sub").mkdir()
    train = root / "train.py"
    train.write_text(train.read_text().replace('if __name__ == "__main__":', 'if __name__ == "__main__":\n'
                     '    import os\n    print("leak:", os.environ.get("AUTORESEARCH_LEAK"), os.getcwd().endswith("tree"))\n', 1))
    git(root, "commit", "-qam", "print the environment")  # part of best: every run prints it
    ar(root, "start", "--tag", "u")
    ar(root, "baseline")
    server = serve(root, "--idle", "0")
    try:
        improve(root, "1")
        first = ar(root, "experiment", "-m", "with a variable", env={"AUTORESEARCH_LEAK": "yes"})
        improve(root, "2")
        second = subprocess.run([*AUTORESEARCH, "experiment", "-m", "without", "--json"], cwd=root / "sub",
                                capture_output=True, text=True, timeout=120,
                                env={k: v for k, v in os.environ.items() if k != "AUTORESEARCH_LEAK"})
        assert second.returncode == 0, second.stderr
        logs = [Path(line.split("log: ")[1].strip()) for line in first.stdout.splitlines() if line.startswith("log: ")]
        assert "leak: yes True" in logs[0].read_text()
        assert "leak: None True" in Path(json.loads(second.stdout)["log_path"]).read_text()  # nothing carried over
        workers = [line[-1] for line in served_lines(root)]
        assert workers[-1] == workers[-2]  # the same copy ran both
        os.kill(int(workers[-1]), signal.SIGKILL)  # the waiting copy dies
        improve(root, "3")
        third = ar(root, "experiment", "-m", "after the copy died")
        assert third.stdout.split(":")[0] in ("keep", "discard")
        assert served_lines(root)[-1][-1] != workers[-1]  # a fresh copy
    finally:
        stop(server)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_the_journal_keeper_keeps_the_log_and_leaves_with_the_server(tmp_path: Path) -> None:
    """The keeper holds a connection so a copy's close is never the last one (the write-ahead log
    then stays, instead of being folded, deleted and re-created and synced per experiment). It
    must lose nothing, and must not outlive the server, even one killed outright."""
    root = make_task(tmp_path)
    server = serve(root, "--idle", "0")
    log = (root / ".autoresearch" / "serve.log").read_text()
    keeper = int(log.split("keeper\tpid ")[1].split()[0])
    assert alive(keeper)
    wal = root / ".autoresearch" / "journal.db-wal"
    for i in range(2):
        improve(root, str(i))
        ar(root, "experiment", "-m", f"served {i}")
        assert wal.exists()  # left in place by the copy's close
    server.send_signal(signal.SIGKILL)
    server.communicate(timeout=30)
    wait_for(lambda: not alive(keeper), seconds=30, what="the keeper to leave")
    assert not wal.exists() or wal.stat().st_size == 0  # the keeper closed last: the log is folded in
    with sqlite3.connect(root / ".autoresearch" / "journal.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert [r["description"] for r in rows(root)][-2:] == ["served 0", "served 1"]


def test_the_socket_is_private_and_the_server_leaves_when_idle(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    server = serve(root, "--idle", "1")
    mode = stat.S_IMODE((root / ".autoresearch" / "serve.sock").stat().st_mode)
    assert mode == 0o600, oct(mode)
    server.communicate(timeout=30)  # nobody calls: it leaves by itself
    assert server.returncode == 0
    assert not (root / ".autoresearch" / "serve.sock").exists()
    assert "idle" in (root / ".autoresearch" / "serve.log").read_text()


def test_a_server_whose_code_changed_hands_the_request_back(tmp_path: Path) -> None:
    """An upgrade (or an edit) of the package under a running server: the request runs in the
    caller with the new code, and the stale server leaves."""
    import autoresearch

    copy = tmp_path / "lib"
    shutil.copytree(Path(autoresearch.__file__).parent, copy / "autoresearch",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": str(copy)}
    root = make_task(tmp_path)
    server = serve(root, "--idle", "0", env=env)
    try:
        errors = copy / "autoresearch" / "errors.py"
        errors.write_text(errors.read_text() + "\n# upgraded\n")
        improve(root)
        out = ar(root, "experiment", "-m", "after the upgrade", env=env)
        assert out.stdout.split(":")[0] in ("keep", "discard")
        assert rows(root)[-1]["description"] == "after the upgrade"
        server.communicate(timeout=30)
        assert "stale" in (root / ".autoresearch" / "serve.log").read_text()
        assert not served_lines(root)  # it ran nothing
    finally:
        stop(server)


def test_serve_outside_a_task_is_a_clear_error(tmp_path: Path) -> None:
    out = subprocess.run([*AUTORESEARCH, "serve"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "autoresearch.toml" in out.stderr and "Traceback" not in out.stderr


def test_two_served_experiments_at_once_meet_the_same_lock(tmp_path: Path) -> None:
    """Two callers at once are two copies: the task's lock refuses the second, as it refuses a
    second command."""
    root, token = slow_task(tmp_path)
    server = serve(root, "--idle", "0")
    try:
        first = start_slow(root, token, "first")
        second = ar(root, "experiment", "-m", "second", check=False)
        assert second.returncode == 1 and "busy" in second.stderr, second.stderr
        assert served_lines(root)[-1][1] == "1"  # the server ran it (and its copy met the lock)
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
        assert [r["description"] for r in rows(root)] == ["baseline", "first"]
    finally:
        stop(server)


def test_a_malformed_request_is_dropped_and_the_server_goes_on(tmp_path: Path) -> None:
    """Bytes that are not a request (no header, no descriptors) get the connection closed; the
    server neither crashes nor runs anything, and serves the next caller."""
    import socket as sk

    root = make_task(tmp_path)
    server = serve(root, "--idle", "0")
    try:
        here = os.getcwd()
        os.chdir(root / ".autoresearch")  # the socket's path may be too long to name whole
        try:
            for payload in (b"garbage", b"ARW1" + (10**9).to_bytes(4, "little"), b""):
                with sk.socket(sk.AF_UNIX, sk.SOCK_STREAM) as raw:
                    raw.connect("serve.sock")
                    raw.sendall(payload)
                    raw.shutdown(sk.SHUT_WR)
                    assert raw.recv(16) == b""  # closed without an answer
        finally:
            os.chdir(here)
        assert server.poll() is None and not served_lines(root)
        improve(root)
        assert ar(root, "experiment", "-m", "after the garbage").returncode == 0
        assert served_lines(root)[-1][1] == "0"
    finally:
        stop(server)
