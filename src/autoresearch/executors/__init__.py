"""Executors: where the runs of a parallel loop happen.

An executor exposes N slots and runs one measurement at a time per slot. The driver
(`autoresearch.parallel`) owns everything else: proposals, git, the journal, verdicts. It hands
an executor a `Job` (which commit to run, under which seq, label and seed) and gets back an
`experiment.Measurement` through the `done` callback, from whatever thread the executor uses.

- `local` (`executors.local.LocalExecutor`): a thread per run, the harness runs in the slot's git
  worktree, pinned to the slot's devices (`CUDA_VISIBLE_DEVICES`) and, optionally, CPU cores.
- `ray` (`executors.ray.RayExecutor`): a Ray task per run with `num_gpus`/`num_cpus`; the worker
  gets the commit's tree as a tar, runs the same harness and returns the metrics and the logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from ..session import SessionError

if TYPE_CHECKING:
    from ..experiment import Measurement
    from ..session import Session
    from ..task import ExecutorSection

KINDS = ("local", "ray")


@dataclass(frozen=True)
class Job:
    """One measurement of one commit in one slot."""

    seq: int  # the experiment it belongs to (its run folder is .autoresearch/runs/<seq>)
    slot: int
    commit: str
    label: str  # "run", "repeat-1", "confirm-3-best", ...: names the log and the output dir
    seed: int
    workdir: Path  # the slot's worktree; holds `commit` when the executor needs a local tree


OnStart = Callable[[int], None]  # the run's process group id (local runs only)
OnPhase = Callable[[str, dict], None]
Done = Callable[["Measurement"], None]


class Executor(Protocol):
    kind: str
    slots: int
    needs_worktree: bool  # True: the driver checks the job's commit out in job.workdir first

    def open(self, session: "Session") -> None:
        """Get ready to run (connect to a cluster, check the devices)."""

    def submit(self, job: Job, *, on_start: OnStart, on_phase: OnPhase, done: Done) -> None:
        """Start the job and return at once; call `done` exactly once, from any thread."""

    def cancel(self) -> None:
        """Interrupt everything in flight; each job still reports (as interrupted)."""

    def close(self) -> None:
        """Release what open() took."""

    def describe(self) -> str:
        """One line for the user: what runs where."""


class ExecutorError(SessionError):
    """A broken [executor] section or an executor that cannot start (a user-facing message)."""


def make_executor(section: "ExecutorSection", slots: int | None = None) -> Executor:
    """The executor an [executor] section asks for; SLOTS (from --slots) overrides `slots`."""
    n = slots if slots is not None else section.slots
    if n < 1:
        raise ExecutorError(f"[executor] slots: must be at least 1, got {n}")
    if section.kind == "local":
        from .local import LocalExecutor

        return LocalExecutor(n, devices=list(section.devices), cpus=list(section.cpus))
    if section.kind == "ray":
        from .ray import RayExecutor

        return RayExecutor(n, address=section.address, num_cpus=section.num_cpus, num_gpus=section.num_gpus)
    raise ExecutorError(f"[executor] kind: expected one of {', '.join(KINDS)}, got {section.kind!r}")


__all__ = ["Done", "Executor", "ExecutorError", "Job", "KINDS", "OnPhase", "OnStart", "make_executor"]
