"""Executors: where the runs of a parallel loop happen.

An executor exposes N slots and runs one measurement at a time per slot. The driver
(`autoresearch.loop`) owns everything else: proposals, git, the journal, verdicts. It hands
an executor a `Job` (which commit to run, under which seq, label and seed) and gets back an
`measure.Measurement` through the `done` callback, from whatever thread the executor uses.

- `local` (`executors.local.LocalExecutor`): a thread per run, the harness runs in a fresh export of
  the commit, pinned to the slot's devices (`CUDA_VISIBLE_DEVICES`) and, optionally, CPU cores.
- `ray` (`executors.ray.RayExecutor`): a Ray task per run with `num_gpus`/`num_cpus`; the worker
  gets the commit's tree as a tar, runs the same harness and returns the metrics and the logs.

May import: trial, verdict, harness, journal, config, git and the bottom modules; never the
loop, proposers, report or cli.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from autoresearch import registry
from autoresearch.config.task import ExecutorSection
from autoresearch.errors import ConfigError
from autoresearch.trial.session import Session
from autoresearch.verdict.flow import Measurement, PhaseCallback


@dataclass(frozen=True)
class Job:
    """One measurement of one commit in one slot."""

    seq: int  # the experiment it belongs to (its run folder is .autoresearch/runs/<seq>)
    slot: int
    commit: str
    label: str  # "run", "repeat-1", "confirm-3-best", ...: names the log and the output dir
    seed: int


OnStart = Callable[[int], None]  # the run's process group id (local runs only)
Done = Callable[["Measurement"], None]


class Executor(Protocol):
    kind: str
    slots: int

    def open(self, session: Session) -> None:
        """Get ready to run (connect to a cluster, check the devices)."""

    def submit(self, job: Job, *, on_start: OnStart, on_phase: PhaseCallback, done: Done) -> None:
        """Start the job and return at once; call `done` exactly once, from any thread."""

    def cancel(self) -> None:
        """Interrupt everything in flight; each job still reports (as interrupted)."""

    def close(self) -> None:
        """Release what open() took."""

    def describe(self) -> str:
        """One line for the user: what runs where."""


class ExecutorError(ConfigError):
    """A broken [executor] section or an executor that cannot start (a user-facing message)."""


def make_executor(section: ExecutorSection, slots: int | None = None) -> Executor:
    """The executor an [executor] section asks for (by its registered kind); SLOTS (from
    --slots) overrides `slots`. Factories take `(section, slots)`."""
    n = slots if slots is not None else section.slots
    if n < 1:
        raise ExecutorError(f"[executor] slots: must be at least 1, got {n}")
    factory = registry.load(registry.EXECUTORS, section.kind, "[executor] kind")
    return factory(section, n)


__all__ = ["Done", "Executor", "ExecutorError", "Job", "OnStart", "make_executor"]
