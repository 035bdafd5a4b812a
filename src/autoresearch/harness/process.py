"""Run one command under a budget: its own process group, a hard timeout, a capped log file,
metric parsing. The only module that starts user processes.

Every process a run starts carries ``AUTORESEARCH_RUN_ID`` in its environment; after the run,
any process still holding that marker (one that escaped the process group with setsid, say)
is found through /proc and killed, so nothing a run starts outlives it.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from autoresearch.harness.sandbox import SandboxSpec, wrap_command
from autoresearch.redact import redact_file, session_secrets

METRIC_LINE = re.compile(rb"^([A-Za-z_][\w.\-]*):[ \t]*(\S+)[ \t]*\r?$")
_CHILD_PID = re.compile(r'"child-pid"\s*:\s*(\d+)')  # compiled on import: a served copy starts with it
REJECT_KEY = "reject"
TERM_GRACE_S = 3.0
POLL_S = 0.05  # how often a run's timeout and the stop request are checked
NAMESPACE_END_S = 5.0  # the longest wait for a sandboxed run's PID namespace to empty
TAIL_LINES = 50


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

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.interrupted

    def failure_reason(self) -> str:
        if self.interrupted:
            return "interrupted"
        if self.timed_out:
            return "timeout"
        if self.exit_code != 0:
            return f"exit-{self.exit_code}"
        return ""


class _CappedLog:
    """A log file that keeps its tail once it grows past max_bytes.

    A write that fails (a full disk) must not stop the run: the reader thread that calls
    `write` is what drains the run's pipe, so an exception there would leave the run blocked
    on a full pipe until the hard timeout. Instead the log gives its space back (it keeps only
    a short tail and a line that says why), takes no more output, and `problem` says what
    happened; the output is still read and parsed."""

    SHORT_TAIL = 16 * 1024  # what is kept of a log that could not be written

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max(4096, max_bytes)
        self.fh = open(path, "ab")
        self.size = self.fh.tell()
        self.cut = 0
        self.problem = ""

    def write(self, data: bytes) -> None:
        if self.problem:
            return
        try:
            self.fh.write(data)
            self.size += len(data)
            if self.size > self.max_bytes:
                self._keep_tail()
        except OSError as exc:
            self._give_up(exc)

    def _keep_tail(self) -> None:
        self.fh.flush()
        keep = self.max_bytes // 2
        with open(self.path, "rb") as fh:
            fh.seek(-keep, os.SEEK_END)
            tail = fh.read()
        self.cut += self.size - keep
        marker = f"[autoresearch: {self.cut} earlier bytes of this log were cut]\n".encode()
        self.fh.close()
        with open(self.path, "wb") as fh:
            fh.write(marker + tail)
        self.fh = open(self.path, "ab")
        self.size = len(marker) + len(tail)

    def _give_up(self, exc: OSError) -> None:
        self.problem = f"the log could not be written ({exc}); later output was not kept"
        try:
            self.fh.close()  # may fail again flushing what it holds: that part is lost anyway
        except OSError:
            pass
        try:
            with open(self.path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - self.SHORT_TAIL))
                tail = fh.read()
            with open(self.path, "wb") as fh:  # truncating first gives the space back
                fh.write(b"[autoresearch: earlier output was cut to free space]\n" + tail
                         + f"\n[autoresearch: {self.problem}]\n".encode())
        except OSError:
            pass

    def close(self) -> None:
        if self.problem:
            return
        try:
            self.fh.flush()
            self.fh.close()
        except OSError as exc:
            self._give_up(exc)


MAX_NAMES = 1000  # distinct metric names kept from one run: output size never grows memory


class MetricParser:
    """`name: value` lines, fed one at a time; the last value of a name wins, non-numeric
    values go to texts. Memory is bounded by MAX_NAMES, whatever the run prints: past it, the
    name printed longest ago is forgotten, so the final lines (the metric) always count. A line is read
    after its last carriage return (progress bars redraw a line) and without leading blanks."""

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.texts: dict[str, str] = {}

    def feed(self, raw: bytes) -> None:
        if len(raw) > 4096 or b":" not in raw:
            return
        line = raw.rstrip(b"\r\n").rsplit(b"\r", 1)[-1].strip()
        match = METRIC_LINE.match(line)
        if not match:
            return
        name = match.group(1).decode()
        value = match.group(2).decode("utf-8", "replace")
        self.metrics.pop(name, None)  # re-inserted at the end: the names printed last are kept
        self.texts.pop(name, None)
        try:
            self.metrics[name] = float(value)
        except ValueError:
            self.texts[name] = value
        if len(self.metrics) + len(self.texts) > MAX_NAMES:  # forget the name printed longest ago
            oldest = self.metrics if self.metrics else self.texts
            oldest.pop(next(iter(oldest)))


def parse_metrics(lines: list[bytes]) -> tuple[dict[str, float], dict[str, str]]:
    """The same over a list of lines."""
    parser = MetricParser()
    for raw in lines:
        parser.feed(raw)
    return parser.metrics, parser.texts


def tail_lines(path: Path | None, n: int = TAIL_LINES, max_bytes: int = 64 * 1024) -> str:
    """The last N lines of a log, decoded leniently (output need not be UTF-8)."""
    if path is None or not path.exists():
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - max_bytes))
        data = fh.read()
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-n:])


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
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


def base_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a run: ours, `python` resolving to this interpreter, plus EXTRA."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("AUTORESEARCH_CACHE", str(Path.home() / ".cache" / "autoresearch"))
    env.update(extra)
    return env


# What a run may inherit from our environment, by name (task_env). Everything else (API keys,
# tokens, cloud credentials, SSH agents, the user's PYTHONPATH) stays out unless the task lists
# it in `[task] env`.
PASSED_NAMES = frozenset({
    "LANG", "LANGUAGE", "TZ", "TERM",
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
    "GPU_DEVICE_ORDINAL", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "TORCH_NUM_THREADS", "LD_LIBRARY_PATH",
    "CUDA_HOME", "CUDA_PATH", "ROCM_PATH", "HIP_PATH",
})
PASSED_PREFIXES = ("LC_", "AUTORESEARCH_")


def task_env(extra: dict[str, str], allow: list[str], *, home: Path, pycache_prefix: Path | None,
             environ: dict[str, str] | None = None) -> dict[str, str]:
    """The minimal environment of a run: PATH (this interpreter's bin first), HOME pointed at
    the caller's private folder, locale and time zone, the device and thread-count variables,
    `AUTORESEARCH_*`, the names in ALLOW (`[task] env`), then EXTRA.

    Bytecode: Python never writes caches (PYTHONDONTWRITEBYTECODE), so a run cannot leave one
    for a later run. With PYCACHE_PREFIX set, it also reads none from next to the sources: a
    cache planted in an ignored `__pycache__/` of the task folder is never loaded. The price is
    that nothing is cached, libraries included (measured on 2 cores: `import torch` 6.5 s ->
    15 s, `import numpy` 0.5 s -> 1.7 s), so a run from a clean export (no `__pycache__` in
    it, read-only to the run) may pass None and keep the libraries' own caches, which the
    sandbox makes read-only to the agent and the runs. The user site is off (PYTHONNOUSERSITE)."""
    source = os.environ if environ is None else environ
    allowed = set(allow)
    env = {name: value for name, value in source.items()
           if name in PASSED_NAMES or name.startswith(PASSED_PREFIXES) or name in allowed}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + source.get("PATH", os.defpath)
    env["HOME"] = str(home)
    env.setdefault("LANG", "C.UTF-8")
    # Templates keep data under $AUTORESEARCH_CACHE: the real user's cache, not the private HOME's.
    env.setdefault("AUTORESEARCH_CACHE", str(Path(source.get("HOME") or Path.home()) / ".cache" / "autoresearch"))
    env.update({"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "PYTHONNOUSERSITE": "1"})
    if pycache_prefix is not None:
        env["PYTHONPYCACHEPREFIX"] = str(pycache_prefix)
    env.update(extra)
    return env


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
) -> RunResult:
    """Run COMMAND through the shell in its own process group; never raises for its failures.

    Output (stdout and stderr together) goes to LOG_PATH only. At TIMEOUT, or when STOP is
    set, the whole group gets SIGTERM, then SIGKILL after a short grace; afterwards anything
    still carrying the run's marker is killed too.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    run_id = os.urandom(16).hex()  # not uuid: it imports platform, ~3 ms of every command
    env = {**env, "AUTORESEARCH_RUN_ID": run_id}
    status_r = status_w = -1
    if sandbox:
        status_r, status_w = os.pipe()
        argv = wrap_command(command, cwd=cwd, spec=sandbox, status_fd=status_w)
    else:
        argv = ["/bin/sh", "-c", command]
    log = _CappedLog(log_path, log_max_bytes)
    log.write(f"$ {command}\n".encode())
    parser = MetricParser()
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                pass_fds=(status_w,) if sandbox else ())
    except OSError as exc:
        log.write(f"autoresearch: could not start the command: {exc}\n".encode())
        log.close()
        if status_r >= 0:
            os.close(status_r)
        return RunResult(exit_code=127, seconds=0.0, log_path=log_path)
    finally:
        if status_w >= 0:
            os.close(status_w)
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
    timed_out = interrupted = False
    exited = _ExitWait(proc)
    try:
        while True:
            if exited(POLL_S):
                break
            if time.monotonic() - start > timeout:
                timed_out = True
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
            _kill_group(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + TERM_GRACE_S
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        _kill_group(proc.pid, signal.SIGKILL)  # leftovers in the group, even after a clean exit
        if sandbox is not None:
            # Every process the run started lives in the sandbox's PID namespace, which the
            # kernel empties when its init dies; bwrap exits before that has finished, so wait
            # for the init: when it is gone, so is everything the run left. The /proc scan
            # (10-30 ms on a busy machine) is then needed only after a kill.
            _await_namespace_end(status_r)
        if sandbox is None or not ended_itself:
            sweep_marked(run_id)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            pass
        reader.join(timeout=5)
    seconds = time.monotonic() - start
    if timed_out:
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
                     timed_out=timed_out, interrupted=interrupted, log_path=log_path, log_problem=log.problem)


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

    def signal_all(sig: int) -> None:
        for pgid in groups:
            try:
                os.killpg(pgid, sig)
            except OSError:
                pass

    signal_all(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    signal_all(signal.SIGKILL)
    return len(groups)
