"""Local slots: N runs at once on this machine, each in a fresh export of the commit under test.

Each run is `measure.measure_commit` (the same harness as a native experiment: budget, hard
timeout, sandbox, evaluate phase) in a thread of its own. A slot can be pinned:

- `devices`: one `CUDA_VISIBLE_DEVICES` value per slot (`["0", "1", "2", "3"]`, or
  `["0,1", "2,3"]` for two GPUs per slot); the run sees only its own GPUs.
- `cpus`: one core set per slot (`["0-7", "8-15"]`, `"0,2,4"`). The run thread pins itself
  with sched_setaffinity before it starts the run; on Linux the mask belongs to the thread and
  every process it starts inherits it, so the whole run stays on the slot's cores.
"""

from __future__ import annotations

import os
import threading
import time
import traceback

from autoresearch.config.task import ExecutorSection
from autoresearch.executors import Done, ExecutorError, Job, OnStart
from autoresearch.trial.measure import executor_failure, measure_commit
from autoresearch.trial.session import Session
from autoresearch.verdict.flow import Measurement, PhaseCallback


def parse_cpus(text: str) -> set[int]:
    """A core set: `"3"`, `"0-3"`, `"0,2,4-7"`."""
    cores: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi if sep else lo)
        except ValueError:
            raise ExecutorError(f"[executor] cpus: {text!r} is not a core set like \"0-3\" or \"0,2,4\"") from None
        if first < 0 or last < first:
            raise ExecutorError(f"[executor] cpus: bad range {part!r} in {text!r}")
        cores.update(range(first, last + 1))
    if not cores:
        raise ExecutorError(f"[executor] cpus: {text!r} names no core")
    return cores


class LocalExecutor:
    kind = "local"

    def __init__(self, slots: int, devices: list[str] | None = None, cpus: list[str] | None = None) -> None:
        devices, cpus = list(devices or []), list(cpus or [])
        if devices and len(devices) < slots:
            raise ExecutorError(f"[executor] devices: {len(devices)} values for {slots} slots; give one "
                                "CUDA_VISIBLE_DEVICES value per slot, e.g. devices = [\"0\", \"1\", \"2\", \"3\"]")
        if cpus and len(cpus) < slots:
            raise ExecutorError(f"[executor] cpus: {len(cpus)} core sets for {slots} slots; give one per slot, "
                                "e.g. cpus = [\"0-7\", \"8-15\"]")
        self.slots = slots
        self.devices: list[str | None] = [d.strip() for d in devices[:slots]] if devices else [None] * slots
        self.cores: list[set[int] | None] = [parse_cpus(c) for c in cpus[:slots]] if cpus else [None] * slots
        if any(self.cores) and not hasattr(os, "sched_setaffinity"):
            raise ExecutorError("[executor] cpus: pinning runs to cores needs Linux (sched_setaffinity)")
        self.session: Session | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def open(self, session: Session) -> None:
        self.session = session
        self._stop.clear()
        if any(self.cores):
            available = os.sched_getaffinity(0)
            for i, cores in enumerate(self.cores):
                if cores and not cores & available:
                    raise ExecutorError(f"[executor] cpus: slot {i}'s cores {sorted(cores)} are not available "
                                        f"here (this process may use {sorted(available)})")

    def submit(self, job: Job, *, on_start: OnStart, on_phase: PhaseCallback, done: Done) -> None:
        if self.session is None:
            raise ExecutorError("the local executor was not opened")
        session = self.session
        devices, cores = self.devices[job.slot], self.cores[job.slot]

        def work() -> None:
            try:
                if cores:
                    os.sched_setaffinity(0, cores)  # this thread only; the run inherits it
                result = measure_commit(session, job.commit, job.seq, job.seed, job.label, slot=job.slot,
                                        stop=self._stop, devices=devices, on_phase=on_phase, on_start=on_start)
            except Exception:  # noqa: BLE001 - a bug here must become a crash record, not a hung slot
                result = _executor_error(session, job, traceback.format_exc())
            done(result)

        thread = threading.Thread(target=work, name=f"autoresearch-slot-{job.slot}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def cancel(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []

    def describe(self) -> str:
        parts = [f"{self.slots} local slot{'s' if self.slots != 1 else ''}"]
        if any(d is not None for d in self.devices):
            parts.append("CUDA_VISIBLE_DEVICES " + " | ".join(d or "-" for d in self.devices))
        if any(self.cores):
            parts.append("cores " + " | ".join(_format_cores(c) for c in self.cores))
        return ", ".join(parts)


def _format_cores(cores: set[int] | None) -> str:
    return ",".join(str(c) for c in sorted(cores)) if cores else "-"


def _executor_error(session: Session, job: Job, text: str) -> Measurement:
    return executor_failure(session, job.seq, job.label, "executor-error",
                            f"the executor failed at {time.strftime('%H:%M:%S')}:\n{text}")


def make_local_executor(section: ExecutorSection, slots: int) -> LocalExecutor:
    return LocalExecutor(slots, devices=list(section.devices), cpus=list(section.cpus))
