"""Run one command under a budget: its own process group, a hard timeout, a capped log file,
metric parsing (`output`), in the environment it is given (`env`). The only module that starts
user processes, and the only one that ends them.

Every process a run starts carries ``AUTORESEARCH_RUN_ID`` in its environment; after the run,
any process still holding that marker (one that escaped the process group with setsid, say)
is found through /proc and killed, so nothing a run starts outlives it. A run that is not
sandboxed, and every run on the cpu budget clock, also has a cgroup of its own (`cpuclock`; on
the cpu clock its CPU time is the budget's): whatever is left in the group at the end is killed,
marker or not.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from autoresearch.harness.cpuclock import CpuMeter, open_group, open_meter
from autoresearch.harness.output import CappedLog, MetricParser
from autoresearch.harness.sandbox import SandboxSpec, wrap_command
from autoresearch.redact import redact_file, session_secrets

_CHILD_PID = re.compile(r'"child-pid"\s*:\s*(\d+)')  # compiled on import: a served copy starts with it
TERM_GRACE_S = 3.0
POLL_S = 0.05  # how often a run's timeout and the stop request are checked
NAMESPACE_END_S = 5.0  # the longest wait for a sandboxed run's PID namespace to empty


@dataclass
class RunResult:
    """What one phase produced. `reason` is empty when it succeeded."""

    exit_code: int | None
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # non-numeric `name: value` lines
    timed_out: bool = False
    interrupted: bool = False
    log_path: Path | None = None
    log_problem: str = ""  # the log could not be written (a full disk): the run's result still counts
    cpu_seconds: float | None = None  # the process tree's CPU time, on clock = "cpu"
    over_budget: bool = False  # stopped by the harness: its CPU time passed the limit
    clock_note: str = ""  # how the CPU time was measured, where that is not a cgroup

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.interrupted and not self.over_budget

    def failure_reason(self) -> str:
        if self.interrupted:
            return "interrupted"
        if self.over_budget:
            return "over-budget"
        if self.timed_out:
            return "timeout"
        if self.exit_code != 0:
            return f"exit-{self.exit_code}"
        return ""



def kill_group(pgid: object, sig: int = signal.SIGKILL) -> None:
    """Send SIG to the process group PGID (a number, or a record's field holding one); nothing
    when the group is gone or not ours, or PGID names no group (missing, garbled, 0 or 1)."""
    try:
        group = int(str(pgid))
        if group > 1:
            os.killpg(group, sig)
    except (ProcessLookupError, PermissionError, ValueError, TypeError):
        pass


class _ExitWait:
    """Waits up to N seconds for a process to exit and says whether it has.

    Popen.wait(timeout) polls with growing sleeps (up to 50 ms), so a 20 ms run was seen to
    cost 50-70 ms of wall time. A pidfd (Linux >= 5.3) becomes readable the moment the process
    exits: the wait ends then, and the timeout and stop checks still come every N seconds."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.fd: int | None = None
        self.poller = select.poll()
        try:
            self.fd = os.pidfd_open(proc.pid)
            self.poller.register(self.fd, select.POLLIN)
        except (AttributeError, OSError):  # not Linux, or an old kernel: Popen's own polling
            self.fd = None

    def __call__(self, seconds: float) -> bool:
        if self.proc.poll() is not None:
            return True
        if self.fd is None:
            try:
                self.proc.wait(timeout=seconds)
                return True
            except subprocess.TimeoutExpired:
                return False
        if self.poller.poll(int(seconds * 1000)):
            self.proc.wait()
            return True
        return False

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _await_namespace_end(status_r: int, limit: float = NAMESPACE_END_S) -> None:
    """Wait until the sandbox's PID-namespace init (bwrap's `child-pid` status line, read from
    STATUS_R, which is closed here) has exited, LIMIT seconds at most."""
    deadline = time.monotonic() + limit
    chunks: list[bytes] = []
    try:  # bwrap has exited, so the pipe is at its end (unless something inside still holds it)
        waiter = select.poll()
        waiter.register(status_r, select.POLLIN)
        while waiter.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            chunk = os.read(status_r, 4096)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:
        return
    finally:
        os.close(status_r)
    text = b"".join(chunks).decode("utf-8", "replace")
    match = _CHILD_PID.search(text)
    if not match:
        return
    try:
        fd = os.pidfd_open(int(match.group(1)))
    except (AttributeError, OSError):  # gone already (ESRCH), or no pidfds here
        return
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll(max(0, int((deadline - time.monotonic()) * 1000)))
    finally:
        os.close(fd)


def sweep_marked(run_id: str) -> int:
    """Kill every process whose environment carries this run's marker. Returns how many."""
    marker = f"AUTORESEARCH_RUN_ID={run_id}".encode()
    killed = 0
    me = os.getpid()
    proc = Path("/proc")
    if not proc.is_dir():
        return 0
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in env.split(b"\0"):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


def run_command(
    command: str,
    *,
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    log_path: Path,
    log_max_bytes: int = 4 * 1024 * 1024,
    sandbox: SandboxSpec | None = None,
    stop: threading.Event | None = None,
    on_start: "Callable[[int], None] | None" = None,
    pass_fds: tuple[int, ...] = (),
    clock: str = "wall",
    cpu_limit: float | None = None,
) -> RunResult:
    """Run COMMAND through the shell in its own process group; never raises for its failures.

    Output (stdout and stderr together) goes to LOG_PATH only. At TIMEOUT (wall seconds), or
    when STOP is set, the whole group gets SIGTERM, then SIGKILL after a short grace; afterwards
    anything still carrying the run's marker is killed too. PASS_FDS are handed over to the
    command (it inherits them; they are closed here once it has started, or failed to).

    CLOCK "cpu": the run gets a cgroup of its own (`cpuclock`), which it joins before it execs,
    its tree's CPU seconds are `cpu_seconds`, and past CPU_LIMIT it is stopped as `over_budget`;
    every process left in the group afterwards is killed. The run is told where to read its own
    CPU time (AUTORESEARCH_CPU_USAGE) and by which clock it is charged (AUTORESEARCH_BUDGET_CLOCK).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    run_id = os.urandom(16).hex()  # not uuid: it imports platform, ~3 ms of every command
    env = {**env, "AUTORESEARCH_RUN_ID": run_id}
    # On the cpu clock the run's cgroup is its meter. On the wall clock an unsandboxed run gets one
    # too, charged nothing: it finds whatever the run left behind (a sandboxed run's PID namespace
    # already does), even a process that left the group and cleared the marker (env -i, setsid).
    meter = open_meter(run_id) if clock == "cpu" else (open_group(run_id) if sandbox is None else None)
    if clock == "cpu" and meter is not None:
        env.update({"AUTORESEARCH_BUDGET_CLOCK": "cpu", "AUTORESEARCH_CPU_USAGE": meter.usage_file})
    status_r = status_w = -1
    if sandbox:
        status_r, status_w = os.pipe()
        argv = wrap_command(command, cwd=cwd, spec=sandbox, status_fd=status_w)
    else:
        argv = ["/bin/sh", "-c", command]
    if meter is not None:
        argv = meter.join_argv(argv)
    log = CappedLog(log_path, log_max_bytes)
    log.write(f"$ {command}\n".encode())
    if meter is not None and meter.note:
        log.write(f"autoresearch: {meter.note}\n".encode())
    parser = MetricParser()
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                pass_fds=((status_w,) if sandbox else ()) + tuple(pass_fds))
    except OSError as exc:
        log.write(f"autoresearch: could not start the command: {exc}\n".encode())
        log.close()
        if status_r >= 0:
            os.close(status_r)
        if meter is not None:
            meter.close()
        return RunResult(exit_code=127, seconds=0.0, log_path=log_path)
    finally:
        for fd in ((status_w,) if status_w >= 0 else ()) + tuple(pass_fds):
            os.close(fd)
    if on_start:
        on_start(proc.pid)

    def pump() -> None:
        assert proc.stdout is not None
        stdout = proc.stdout
        for raw in iter(lambda: stdout.readline(65536), b""):  # a line without end is read in pieces
            log.write(raw)
            parser.feed(raw)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = interrupted = over_budget = False
    exited = _ExitWait(proc)
    try:
        while True:
            if exited(POLL_S):
                break
            if time.monotonic() - start > timeout:
                timed_out = True
                break
            if clock == "cpu" and meter is not None and cpu_limit is not None and meter.seconds() > cpu_limit:
                over_budget = True
                break
            if stop is not None and stop.is_set():
                interrupted = True
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        exited.close()
        ended_itself = proc.poll() is not None
        if not ended_itself:
            kill_group(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + TERM_GRACE_S
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        kill_group(proc.pid)  # leftovers in the group, even after a clean exit
        if sandbox is not None:
            # Every process the run started lives in the sandbox's PID namespace, which the
            # kernel empties when its init dies; bwrap exits before that has finished, so wait
            # for the init: when it is gone, so is everything the run left. The /proc scan
            # (10-30 ms on a busy machine) is then needed only after a kill.
            _await_namespace_end(status_r)
        if meter is not None:
            meter.kill()  # whatever left the group and dropped the marker is still in the cgroup
        if sandbox is None or not ended_itself:
            sweep_marked(run_id)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            pass
        reader.join(timeout=5)
    seconds = time.monotonic() - start
    cpu_seconds = _close_meter(meter)
    if clock != "cpu":
        cpu_seconds = None  # the wall clock's group charges nothing: it only finds what the run left
    if over_budget:
        log.write(f"\nautoresearch: stopped at {cpu_seconds:.1f} CPU seconds, over its budget of "
                  f"{cpu_limit:g} CPU seconds\n".encode())
    elif timed_out:
        log.write(f"\nautoresearch: killed at the hard timeout of {timeout:.0f}s\n".encode())
    elif interrupted:
        log.write(b"\nautoresearch: interrupted\n")
    log.close()
    secrets = session_secrets()
    if secrets:  # a run (or an agent) that prints a key leaves no key in the log
        try:
            redact_file(log_path, secrets)
        except OSError as exc:  # no room for the redacted copy: no log rather than a log with a key
            log_path.unlink(missing_ok=True)
            log.problem = f"the log could not be redacted ({exc}) and was removed"
    metrics, texts = parser.metrics, parser.texts
    return RunResult(exit_code=proc.returncode, seconds=seconds, metrics=metrics, texts=texts,
                     timed_out=timed_out, interrupted=interrupted, log_path=log_path, log_problem=log.problem,
                     cpu_seconds=cpu_seconds, over_budget=over_budget, clock_note=meter.note if meter else "")


def _close_meter(meter: CpuMeter | None) -> float | None:
    """The run's final CPU seconds (every process in it has ended), its cgroup removed."""
    if meter is None:
        return None
    seconds = meter.seconds(fresh=True)
    meter.close()
    return seconds


def stop_processes_in(folder: Path, grace: float = 3.0) -> int:
    """End the process groups of processes whose working directory lies in FOLDER (an agent
    still working in a slot's worktree after an interrupt): SIGTERM, then SIGKILL after GRACE
    unless they are gone. Linux only; never this process's own group. Returns how many groups."""
    proc = Path("/proc")
    if not proc.is_dir():
        return 0
    folder = folder.resolve()
    own = os.getpgrp()
    groups: set[int] = set()
    pids: set[int] = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            pgid = os.getpgid(int(entry.name))
        except OSError:
            continue
        if (cwd == folder or folder in cwd.parents) and pgid != own:
            groups.add(pgid)
            pids.add(int(entry.name))

    def running(pid: int) -> bool:  # a zombie is dead, it only waits for its parent
        try:
            return (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (OSError, IndexError):
            return False

    for pgid in groups:
        kill_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pgid in groups:
        kill_group(pgid)
    return len(groups)
