"""How busy the machine was while a run ran: what the rest of the machine did with the CPUs.

Two readings of /proc/stat (the whole machine's CPU time: busy, idle, stolen by the hypervisor)
and of the run's own CPU time (this process's reaped children's rusage, or for a sandboxed run
its process tree sampled from /proc: TreeWatch), one before and one after the run, give: the run's own CPU seconds, the CPU seconds everything else used meanwhile (in
busy CPUs on average), and the share stolen. A run is *under load* when the machine was
saturated and something else held at least half a CPU of it, or when the hypervisor stole a
tenth of the time: then the run got less CPU than it would have had alone, and its number says
more about the neighbours than about the commit.

What it cannot see: contention for caches and memory bandwidth, a GPU shared with another job,
and in a loop with several slots, another slot's run that ends meanwhile may be counted as this
run's own (this process reaps it): there the load is underestimated, never overestimated. The readings are Linux's; elsewhere there are none
and nothing is called busy.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass
from typing import Any

BUSY_CPUS = 0.5  # the rest of the machine held at least this many CPUs on average ...
SATURATED = 0.9  # ... while the machine as a whole was at least this busy
STOLEN = 0.1  # or the hypervisor took at least this share of the machine's time


@dataclass(frozen=True)
class CpuSample:
    """One reading: the machine's busy, stolen and total CPU seconds, this process's children's."""

    busy: float
    steal: float
    total: float
    children: float
    at: float


def _tick() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100.0


def sample_cpu(stat: str | None = None) -> CpuSample | None:
    """A reading now; None where /proc/stat cannot be read (not Linux). STAT: another file in
    its format, else $AUTORESEARCH_PROC_STAT (tests script a machine's load there), else /proc/stat."""
    stat = stat or os.environ.get("AUTORESEARCH_PROC_STAT") or "/proc/stat"
    try:
        with open(stat, encoding="ascii") as fh:
            first = fh.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu" or len(first) < 5:
        return None
    # user nice system idle iowait irq softirq steal (guest time is inside user already)
    fields = [float(v) for v in first[1:9]] + [0.0] * (8 - len(first[1:9]))
    tick = _tick()
    total = sum(fields) / tick
    idle = (fields[3] + fields[4]) / tick
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuSample(busy=total - idle, steal=fields[7] / tick, total=total,
                     children=usage.ru_utime + usage.ru_stime, at=time.monotonic())


def tree_cpu(root: int, proc: str = "/proc") -> float:
    """CPU seconds of process ROOT and its living descendants, each with the children it reaped
    (utime + stime + cutime + cstime: a living child is in nobody's cutime yet, so nothing counts
    twice). 0 when ROOT is gone."""
    kids: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    try:
        entries = [e.name for e in os.scandir(proc) if e.name.isdigit()]
    except OSError:
        return 0.0
    for name in entries:
        try:
            with open(f"{proc}/{name}/stat", encoding="ascii", errors="replace") as fh:
                text = fh.read()
            rest = text[text.rindex(")") + 2:].split()
            pid, ppid = int(name), int(rest[1])
            ticks[pid] = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(pid)
    total, todo, seen = 0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += ticks.get(pid, 0)
        todo.extend(kids.get(pid, []))
    return total / _tick()


class TreeWatch:
    """The CPU time of a run's process trees, sampled every INTERVAL seconds while it runs.

    Why: a sandboxed run's CPU time never reaches this process's rusage (bubblewrap's PID
    namespace init is not reaped by us), so it is read from /proc while the run lives. The last
    sample of each tree stands for it: at most INTERVAL seconds of its CPU time go unseen."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.roots: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def follow(self, root: int) -> None:
        """Sample ROOT's tree from now on (each phase of a run starts one)."""
        self.roots.setdefault(root, 0.0)
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="autoresearch-load", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            for root in list(self.roots):
                self.roots[root] = max(self.roots[root], tree_cpu(root))

    def stop(self) -> float:
        """Stop sampling; the CPU seconds seen, over every tree followed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return sum(self.roots.values())


@dataclass(frozen=True)
class Load:
    """The machine during one run (see the module docstring)."""

    wall: float  # seconds between the readings
    cpus: float  # the machine's CPUs, as /proc/stat counted their time
    run_cpu: float  # CPU seconds of the run's processes (and whatever else this process reaped)
    others: float  # CPUs the rest of the machine kept busy, on average
    machine: float  # the machine's busy share, 0..1
    steal: float  # the share of the machine's time stolen by the hypervisor, 0..1

    @property
    def busy(self) -> bool:
        return (self.others >= BUSY_CPUS and self.machine >= SATURATED) or self.steal >= STOLEN

    def to_json(self) -> dict[str, Any]:
        return {"busy": self.busy, "others_cpus": round(self.others, 3), "cpus": round(self.cpus, 2),
                "machine": round(self.machine, 3), "steal": round(self.steal, 3), "run_cpu_s": round(self.run_cpu, 3),
                "wall_s": round(self.wall, 3)}


def load_between(before: CpuSample | None, after: CpuSample | None, run_cpu: float = 0.0) -> Load | None:
    """The load between two readings; None without both, or when too little time passed to tell.
    RUN_CPU: the run's CPU seconds as seen otherwise (TreeWatch); the larger of it and the
    reaped children's rusage is the run's."""
    if before is None or after is None:
        return None
    wall = after.at - before.at
    total = after.total - before.total
    if wall <= 0.05 or total <= 0:
        return None
    cpus = max(1.0, total / wall)
    run_cpu = max(0.0, after.children - before.children, run_cpu)
    busy = max(0.0, after.busy - before.busy)
    others = max(0.0, busy - run_cpu) / wall
    return Load(wall=wall, cpus=cpus, run_cpu=run_cpu, others=others, machine=min(1.0, busy / total),
                steal=max(0.0, after.steal - before.steal) / total)


def was_busy(flags: dict[str, Any]) -> bool:
    """Whether a measurement's flags (Measurement.flags) say its run was under load."""
    load = flags.get("load") if isinstance(flags, dict) else None
    return bool(isinstance(load, dict) and load.get("busy"))


def load_words(flags: dict[str, Any]) -> str:
    """The load in a measurement's flags, in words ("" without one)."""
    load = flags.get("load") if isinstance(flags, dict) else None
    if not isinstance(load, dict):
        return ""
    return (f"the rest of the machine kept {load.get('others_cpus', 0):.1f} of {load.get('cpus', 0):.0f} CPUs busy, "
            f"the machine {load.get('machine', 0):.0%} busy, {load.get('steal', 0):.0%} stolen")


__all__ = ["BUSY_CPUS", "TreeWatch", "load_words", "tree_cpu", "SATURATED", "STOLEN", "CpuSample", "Load", "load_between", "sample_cpu", "was_busy"]
