"""The cpu budget clock, attacked: a run is charged for the CPU seconds of its whole process
tree, measured by the harness through a cgroup (v2 or v1) or, where neither can be made, by
sampling /proc. Burning CPU in several processes or threads is charged; sleeping is not; a
child that setsids, double-forks and drops its environment marker is still charged and does
not outlive the run. Real processes, real cgroups, real bubblewrap."""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

import pytest

from autoresearch.harness import cpuclock
from autoresearch.harness.process import run_command
from autoresearch.harness.sandbox import SandboxSpec, bwrap_works

PY = sys.executable
# Burns CPU until killed (a busy loop of the shell: one core).
BURN = "while :; do :; done"


def kinds() -> list[str]:
    """The meters this machine can make, each tested on its own."""
    found = [kind for kind in ("v2", "v1") if cpuclock.can_make(kind)]
    return [*found, "proc"]


def _processes_with(token: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture(params=kinds())
def meter_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(cpuclock, "KINDS", (request.param,) if request.param != "proc" else ())
    return str(request.param)


@pytest.fixture(params=["plain", "bwrap"])
def sandbox(request: pytest.FixtureRequest, tmp_path: Path) -> SandboxSpec | None:
    if request.param == "plain":
        return None
    if not bwrap_works():
        pytest.skip("bubblewrap cannot run here")
    return SandboxSpec(writable=[tmp_path / "out"])


def _run(command: str, tmp_path: Path, limit: float, sandbox: SandboxSpec | None = None, timeout: float = 30):
    (tmp_path / "out").mkdir(exist_ok=True)
    return run_command(command, cwd=tmp_path, env=dict(os.environ), timeout=timeout, log_path=tmp_path / "run.log",
                       sandbox=sandbox, clock="cpu", cpu_limit=limit)


@pytest.mark.slow
def test_burning_in_several_processes_is_charged_and_stopped(meter_kind: str, sandbox, tmp_path: Path) -> None:
    """Two busy processes burn 2 CPU seconds a second: the run passes its 1.5 CPU-second limit
    in well under its wall timeout and is stopped there, charged at least the limit."""
    start = time.monotonic()
    result = _run(f"({BURN}) & ({BURN}) & wait", tmp_path, limit=1.5, sandbox=sandbox)
    assert result.over_budget, tmp_path.joinpath("run.log").read_text()
    assert result.cpu_seconds is not None and result.cpu_seconds >= 1.5
    assert time.monotonic() - start < 20
    assert "over its budget of 1.5 CPU seconds" in tmp_path.joinpath("run.log").read_text()


@pytest.mark.slow
def test_burning_in_threads_is_charged(meter_kind: str, tmp_path: Path) -> None:
    """Threads of one process (hashing releases the GIL) are charged like processes."""
    code = ("import hashlib, threading\n"
            "data = b'x' * (1 << 20)\n"
            "def burn():\n"
            "    while True: hashlib.sha256(data).digest()\n"
            "for _ in range(3): threading.Thread(target=burn, daemon=True).start()\n"
            "import time; time.sleep(60)\n")
    (tmp_path / "burn.py").write_text(code)
    result = _run(f"{PY} burn.py", tmp_path, limit=1.5)
    assert result.over_budget and result.cpu_seconds is not None and result.cpu_seconds >= 1.5


def test_sleeping_is_not_charged(meter_kind: str, sandbox, tmp_path: Path) -> None:
    result = _run("sleep 2; echo 'val: 1'", tmp_path, limit=1.0, sandbox=sandbox)
    assert result.ok and not result.over_budget and result.metrics == {"val": 1.0}
    assert result.seconds >= 2.0
    assert result.cpu_seconds is not None and result.cpu_seconds < 0.5


@pytest.mark.slow
def test_an_escaped_child_is_charged_and_does_not_outlive_the_run(meter_kind: str, sandbox, tmp_path: Path) -> None:
    """The child leaves the process group (setsid), double-forks and drops the environment
    (env -i: no AUTORESEARCH_RUN_ID marker to find it by), then burns; the parent only sleeps.
    The escapee's CPU is the run's, and it is gone when the run returns."""
    if meter_kind == "proc":
        pytest.skip("the /proc fallback finds processes by their marker: documented as its limit")
    token = f"escapee-{uuid.uuid4().hex}"
    command = (f"env -i setsid sh -c '( while :; do :; done; : {token} ) &' </dev/null >/dev/null 2>&1; "
               "sleep 20")
    result = _run(command, tmp_path, limit=1.0, sandbox=sandbox)
    left = _processes_with(token)
    for pid in left:
        os.kill(pid, 9)
    assert result.over_budget and result.cpu_seconds is not None and result.cpu_seconds >= 1.0
    assert left == [], f"the escapee outlived its run: {left}"


def test_an_escapee_of_a_run_that_ended_is_killed(tmp_path: Path) -> None:
    """Unsandboxed, marker dropped, parent exits at once: only the cgroup still knows the
    escapee, and the harness kills it through the cgroup."""
    if not any(cpuclock.can_make(kind) for kind in cpuclock.KINDS):
        pytest.skip("no cgroup can be made here")
    token = f"escapee-{uuid.uuid4().hex}"
    command = f"env -i setsid sh -c '( sleep 300; : {token} ) &' </dev/null >/dev/null 2>&1; echo 'val: 1'"
    result = _run(command, tmp_path, limit=5.0)
    left = _processes_with(token)
    for pid in left:
        os.kill(pid, 9)
    assert result.ok and left == []


def test_on_the_wall_clock_an_unsandboxed_escapee_is_found_by_its_cgroup(tmp_path: Path) -> None:
    """Issue 24: no environment marker needed. The run's child clears its environment (env -i),
    leaves the process group (setsid) and double-forks; the wall-clock run then ends at once.
    The run's cgroup still holds the escapee, and the harness kills it there."""
    if not any(cpuclock.can_make(kind) for kind in cpuclock.KINDS):
        pytest.skip("no cgroup can be made here")
    token = f"escapee-{uuid.uuid4().hex}"
    command = f"env -i setsid sh -c '( sleep 300; : {token} ) &' </dev/null >/dev/null 2>&1; echo 'val: 1'"
    result = run_command(command, cwd=tmp_path, env=dict(os.environ), timeout=30, log_path=tmp_path / "r.log")
    left = _processes_with(token)
    for pid in left:
        os.kill(pid, 9)
    assert result.ok and result.cpu_seconds is None
    assert left == [], f"the escapee outlived its run: {left}"


def test_the_run_reads_its_own_cpu_time(meter_kind: str, sandbox, tmp_path: Path) -> None:
    """The environment contract: AUTORESEARCH_BUDGET_CLOCK and AUTORESEARCH_CPU_USAGE (the file
    holding the tree's CPU time) reach the run, sandboxed or not, and agree with the harness."""
    if meter_kind == "proc":
        pytest.skip("no usage file without a cgroup: the run falls back to its own process times")
    code = ("import os, time\n"
            "path = os.environ['AUTORESEARCH_CPU_USAGE']\n"
            "end = time.process_time() + 0.6\n"
            "while time.process_time() < end: pass\n"
            "text = open(path).read()\n"
            "usage = (int(text.split()[1]) / 1e6 if text.startswith('usage_usec') else int(text) / 1e9)\n"
            "print('clock:', os.environ['AUTORESEARCH_BUDGET_CLOCK'])\n"
            "print('seen:', usage)\n")
    (tmp_path / "own.py").write_text(code)
    result = _run(f"{PY} own.py", tmp_path, limit=10.0, sandbox=sandbox)
    assert result.ok, tmp_path.joinpath("run.log").read_text()
    assert result.texts["clock"] == "cpu"
    assert 0.6 <= result.metrics["seen"] <= (result.cpu_seconds or 0) + 0.01


def test_wall_clock_runs_are_unchanged(tmp_path: Path) -> None:
    result = run_command("echo 'val: 2'", cwd=tmp_path, env=dict(os.environ), timeout=30, log_path=tmp_path / "r.log")
    assert result.ok and result.cpu_seconds is None and not result.over_budget


def test_the_fallback_says_what_it_uses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cpuclock, "KINDS", ())
    meter = cpuclock.open_meter("x" * 32)
    try:
        assert meter.kind == "proc"
        assert "no cgroup" in meter.note and "/proc" in meter.note
    finally:
        meter.close()


def test_available_cpus_follows_the_affinity_mask() -> None:
    cores = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(cores)})
        assert cpuclock.available_cpus() == 1
    finally:
        os.sched_setaffinity(0, cores)
    assert 1 <= cpuclock.available_cpus() <= len(cores)


@pytest.mark.slow
def test_a_sandboxed_run_cannot_move_itself_out_of_its_cgroup(meter_kind: str, tmp_path: Path) -> None:
    """The run writes its pid into every cgroup.procs it can find (the hierarchy's root, its
    parent's), then burns: cgroupfs is read-only in the sandbox, so it stays charged. (Unsandboxed,
    a run as root could move itself: the docs say so.)"""
    if meter_kind == "proc":
        pytest.skip("no cgroup to leave")
    if not bwrap_works():
        pytest.skip("bubblewrap cannot run here")
    command = ("for f in /sys/fs/cgroup/cgroup.procs /sys/fs/cgroup/*/cgroup.procs /sys/fs/cgroup/*/*/cgroup.procs; do "
               "echo $$ > $f 2>/dev/null; done; " + BURN)
    result = _run(command, tmp_path, limit=1.0, sandbox=SandboxSpec(writable=[tmp_path / "out"]))
    assert result.over_budget and result.cpu_seconds is not None and result.cpu_seconds >= 1.0


def test_a_group_left_by_a_killed_harness_is_removed_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """A harness killed mid-run (or a daemon run thread ended with its process) leaves an empty
    group; the next run removes empty ones older than STALE_S, and never one with processes."""
    kind = next((k for k in cpuclock.KINDS if cpuclock.can_make(k)), None)
    if kind is None:
        pytest.skip("no cgroup can be made here")
    monkeypatch.setattr(cpuclock, "KINDS", (kind,))
    left = cpuclock.open_meter("left-" + os.urandom(8).hex())
    assert isinstance(left, cpuclock.CgroupMeter) and left.path.is_dir()
    monkeypatch.setattr(cpuclock, "STALE_S", -1.0)
    meter = cpuclock.open_meter("next-" + os.urandom(8).hex())
    try:
        assert not left.path.exists()
    finally:
        meter.close()
        left.close()
