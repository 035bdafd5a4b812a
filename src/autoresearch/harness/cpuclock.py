"""The cpu budget clock: the CPU seconds of a run's whole process tree, measured by the harness.

Each run on `[budget] clock = "cpu"` gets a cgroup of its own, which its first process joins
before it execs anything (so every fork, setsid or double fork inherits it, sandboxed or not):

- cgroup v2: `cpu.stat`'s `usage_usec`, where a v2 hierarchy is mounted and writable
  (counted in every v2 group, with or without the cpu controller); `cgroup.kill` ends it;
- cgroup v1: the `cpuacct` controller's `cpuacct.usage` (nanoseconds); its processes are
  killed one by one until none is left.

Where neither can be made (no permission, no cgroupfs), the clock falls back to sampling
/proc twice a second: the user and system time of every process carrying the run's marker,
with the time of the children each has reaped. That misses what a process that dropped the
marker (a new environment) burns, and up to half a second at the end; `open_meter` says so.

A cgroup's count is the kernel's: steal time, a neighbour's load and time spent sleeping are
not in it. Cache and memory-bandwidth contention are: a neighbour can still slow a run's
every CPU second.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

# The cgroup kinds tried, in order (tests narrow it to exercise each one).
KINDS: tuple[str, ...] = ("v2", "v1")
GROUP_DIR = "autoresearch-runs"  # the folder under the harness's own cgroup that holds the runs'
STALE_S = 600.0  # an empty run group older than this (a harness killed mid-run) is removed
SAMPLE_S = 0.5  # how often the /proc fallback samples
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# Joins the cgroup whose `cgroup.procs` is $1, then becomes the command: nothing runs outside it.
JOIN = 'echo $$ > "$1" || { echo "autoresearch: could not join the run\'s cgroup $1" >&2; exit 126; }; shift; exec "$@"'


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, filesystem type, super options) of each cgroup filesystem."""
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) > 4 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            found.append((fields[4].replace("\\040", " "), tail[0], tail[2]))
    return found


def _own_path(kind: str) -> str:
    """This process's cgroup path in the v2 hierarchy or the v1 cpuacct one ('/' when unknown)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return "/"
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if (kind == "v2" and controllers == "") or (kind == "v1" and "cpuacct" in controllers.split(",")):
            return path or "/"
    return "/"


def _hierarchy(kind: str) -> Path | None:
    for point, fstype, options in _mounts():
        if kind == "v2" and fstype == "cgroup2":
            return Path(point)
        if kind == "v1" and fstype == "cgroup" and "cpuacct" in options.split(","):
            return Path(point)
    return None


def _parents(kind: str) -> list[Path]:
    """Where run groups may go: under our own cgroup first, then at the hierarchy's root."""
    root = _hierarchy(kind)
    if root is None:
        return []
    own = root / _own_path(kind).lstrip("/")
    return [p / GROUP_DIR for p in dict.fromkeys([own, root])]


class CpuMeter:
    """One run's CPU clock. `join_argv` wraps the run's argv so that it starts inside the
    group; `seconds` is the tree's CPU time so far; `kill` ends every process in the group;
    `close` removes the group. `usage_file` is what the run may read itself ('' without one)."""

    kind = "proc"

    def __init__(self, run_id: str, note: str = "") -> None:
        self.run_id = run_id
        self.note = note
        self.usage_file = ""
        self._seen = 0.0
        self._sampled_at = 0.0

    def join_argv(self, argv: list[str]) -> list[str]:
        return argv

    def seconds(self, fresh: bool = False) -> float:
        """The /proc fallback: sampled at most every SAMPLE_S unless FRESH."""
        now = time.monotonic()
        if fresh or now - self._sampled_at >= SAMPLE_S:
            self._sampled_at = now
            self._seen = max(self._seen, _marked_cpu(self.run_id))
        return self._seen

    def kill(self) -> None:
        """Nothing to do: the harness's process-group kill and marker sweep cover the fallback."""

    def close(self) -> None:
        """Nothing was made."""


class CgroupMeter(CpuMeter):
    def __init__(self, run_id: str, kind: str, path: Path) -> None:
        super().__init__(run_id)
        self.kind = kind
        self.path = path
        self.usage_file = str(path / ("cpu.stat" if kind == "v2" else "cpuacct.usage"))

    def join_argv(self, argv: list[str]) -> list[str]:
        return ["/bin/sh", "-c", JOIN, "sh", str(self.path / "cgroup.procs"), *argv]

    def seconds(self, fresh: bool = False) -> float:
        try:
            return read_usage(Path(self.usage_file).read_text())
        except (OSError, ValueError):
            return self._seen

    def _procs(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def kill(self) -> None:
        """Every process in the group, however it left its process group or environment."""
        if self.kind == "v2" and (self.path / "cgroup.kill").exists():
            try:
                (self.path / "cgroup.kill").write_text("1")
            except OSError:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pids = self._procs()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.02)

    def close(self) -> None:
        self._seen = self.seconds()
        for _ in range(50):  # killed processes leave the group a moment after their signal
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)


def read_usage(text: str) -> float:
    """CPU seconds from a cgroup v2 `cpu.stat` (usage_usec) or a v1 `cpuacct.usage` (ns)."""
    text = text.strip()
    if text.startswith("usage_usec"):
        return int(text.split()[1]) / 1e6
    return int(text.split()[0]) / 1e9


def _make(kind: str, run_id: str) -> CgroupMeter | None:
    for parent in _parents(kind):
        try:
            parent.mkdir(exist_ok=True)
            _remove_stale(parent)
            path = parent / run_id
            path.mkdir()
        except OSError:
            continue
        if os.access(path / "cgroup.procs", os.W_OK):
            return CgroupMeter(run_id, kind, path)
        try:
            path.rmdir()
        except OSError:
            pass
    return None


def _remove_stale(parent: Path) -> None:
    """Run groups a killed harness left behind (empty ones only: rmdir refuses the others)."""
    now = time.time()
    try:
        for child in parent.iterdir():
            if child.is_dir() and now - child.stat().st_mtime > STALE_S:
                try:
                    child.rmdir()
                except OSError:
                    pass
    except OSError:
        pass


def can_make(kind: str) -> bool:
    """Whether a run cgroup of KIND ("v2" or "v1") can be made here."""
    meter = _make(kind, "probe-" + os.urandom(8).hex())
    if meter is None:
        return False
    meter.close()
    return True


FALLBACK_NOTE = ("no cgroup could be made for the run (neither a writable cgroup v2 hierarchy nor v1 cpuacct), "
                 "so its CPU time is sampled from /proc every 0.5 s: the processes carrying the run's marker and "
                 "the children they reaped; a process that drops its environment is not charged")


def open_group(run_id: str) -> CgroupMeter | None:
    """A cgroup for the run (the first of KINDS that can be made), or None. On the wall clock it
    charges nothing; it is how the harness finds, at the run's end, every process the run left,
    whatever process group or environment it moved to."""
    for kind in KINDS:
        meter = _make(kind, run_id)
        if meter is not None:
            return meter
    return None


def open_meter(run_id: str) -> CpuMeter:
    """The cpu clock's meter: a cgroup for the run, or the /proc fallback."""
    return open_group(run_id) or CpuMeter(run_id, FALLBACK_NOTE)


def _marked_cpu(run_id: str) -> float:
    """CPU seconds of the live processes carrying the run's marker, with their reaped children's."""
    marker = f"AUTORESEARCH_RUN_ID={run_id}".encode()
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / _TICK


def available_cpus() -> int:
    """The cores a run started from this thread may use: its affinity mask, capped by a CPU
    quota on our cgroup (v2 `cpu.max`, v1 `cpu.cfs_quota_us`), at least one."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _quota()
    if quota is not None:
        count = min(count, max(1, int(quota + 0.5)))
    return max(1, count)


def _quota() -> float | None:
    v2 = _hierarchy("v2")
    if v2 is not None:
        try:
            limit, period = (v2 / _own_path("v2").lstrip("/") / "cpu.max").read_text().split()
            if limit != "max":
                return int(limit) / int(period)
        except (OSError, ValueError):
            pass
    for point, fstype, options in _mounts():
        if fstype == "cgroup" and "cpu" in options.split(","):
            own = "/"
            try:
                for line in Path("/proc/self/cgroup").read_text().splitlines():
                    _, controllers, path = line.split(":", 2)
                    if "cpu" in controllers.split(","):
                        own = path
            except OSError:
                pass
            try:
                folder = Path(point) / own.lstrip("/")
                quota = int((folder / "cpu.cfs_quota_us").read_text())
                if quota > 0:
                    return quota / int((folder / "cpu.cfs_period_us").read_text())
            except (OSError, ValueError):
                pass
    return None
