"""When the loop stops, and what it does after a failure: one place for both.

Stop conditions: `max_experiments`, `hours`, `target`, `plateau` (experiments without a keep),
`[agent] max_cost` (the cost the agents reported),
`autoresearch stop` (a stop file: after the experiments in flight, or at once with --now),
Ctrl-C or SIGTERM, or a proposer (or executor) that keeps failing, or one whose provider refused its key (at the
first such failure: retrying cannot fix a key). With none set the loop runs
until stopped, as in the original.

Crash repair: a model-driven proposer gets `[agent] fix_attempts` tries at fixing its own
crash (the crashed code is put in front of it, with the log tail in the brief).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from autoresearch.config.task import LoopSection
from autoresearch.journal.records import Experiment
from autoresearch.proposers.brief import Limits
from autoresearch.trial.scratch import HARNESS_EDIT, OUT_OF_SCOPE_EDIT
from autoresearch.trial.session import Session

STOP_FILE = "stop"
PROPOSER_REASONS = {"agent-error", "agent-timeout", "bad-edit", "no-change", "not-installed", "no-knobs"}
EXECUTOR_REASONS = {"executor-error", "worker-error", "worker-lost"}  # the machinery failed, not the experiment


def stop_path(session: Session) -> Path:
    return session.state_dir / STOP_FILE


def request_stop(session: Session, now: bool) -> bool:
    """What `autoresearch stop` does: leave a note the running loop polls. False (and no note)
    when no loop is running in this task."""
    if not session.is_busy():
        stop_path(session).unlink(missing_ok=True)
        return False
    stop_path(session).write_text("now" if now else "after-current")
    return True


class StopWatcher:
    """Polls the stop file; `stop --now` sets the event that interrupts the runs in flight."""

    def __init__(self, path: Path, event: threading.Event) -> None:
        self.path = path
        self.event = event
        self.requested = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._done.wait(0.25):
            if self.path.exists():
                self.requested = True
                try:
                    if self.path.read_text().strip() == "now":
                        self.event.set()
                except OSError:
                    pass

    def __enter__(self) -> "StopWatcher":
        self.path.unlink(missing_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=2)
        self.path.unlink(missing_ok=True)


@dataclass
class Outcome:
    """What the policy says after an experiment: stop (and how hard), or fix it next."""

    stop: str = ""
    hard: bool = False
    fix: Experiment | None = None


class Policy:
    """The loop's counters and limits. `count` counts proposals (a replay belongs to the one
    it replays), so `max_experiments` means what the user asked for."""

    def __init__(self, session: Session, limits: LoopSection, executor_kind: str = "local") -> None:
        self.session = session
        self.limits = limits
        self.executor_kind = executor_kind
        self.started = time.time()
        self.tag = ""  # the run's tag, set by the loop once its branch is known (no git call per poll)
        self.count = 0
        self.failures = 0
        self.executor_failures = 0
        self.cost = 0.0  # what this run's proposals cost, as their agents reported it

    def stop_reason(self) -> str:
        s, lim = self.session, self.limits
        if lim.max_experiments and self.count >= lim.max_experiments:
            return f"{lim.max_experiments} experiments done"
        if lim.hours and time.time() - self.started >= lim.hours * 3600:
            return f"{lim.hours:g} hours passed"
        best = s.journal.best(self.tag)
        if lim.target is not None and best is not None and best.metric is not None:
            reached = best.metric >= lim.target if s.config.maximize else best.metric <= lim.target
            if reached:
                return f"target {lim.target:g} reached ({best.metric:.6f})"
        if lim.plateau and s.journal.since_last_keep(self.tag) >= lim.plateau:
            return f"{lim.plateau} experiments without a keep"
        max_cost = s.config.agent.max_cost
        if max_cost and self.cost >= max_cost:
            return f"the agents' cost ${self.cost:.4g} reached [agent] max_cost ${max_cost:g}"
        return ""

    def limits_left(self) -> Limits:
        lim, s = self.limits, self.session
        return Limits(
            experiments_left=(lim.max_experiments - self.count) if lim.max_experiments else None,
            hours_left=(lim.hours - (time.time() - self.started) / 3600) if lim.hours else None,
            target=lim.target,
            plateau_left=(lim.plateau - s.journal.since_last_keep(self.tag)) if lim.plateau else None,
        )

    def after(self, exp: Experiment, model_driven: bool, fixes_left: int) -> tuple[Outcome, int]:
        """Count EXP's failure or success; returns the outcome and the slot's fixes left."""
        out = Outcome()
        agent = self.session.config.agent
        self.cost += exp.cost_usd or 0.0
        proposer_failed = (exp.status == "crash" and exp.reason in PROPOSER_REASONS) or (
            exp.status == "rejected" and exp.reason.startswith((HARNESS_EDIT, OUT_OF_SCOPE_EDIT + " ")))  # as failing
        if proposer_failed:
            self.failures += 1
            message = str(exp.details.get("message", ""))
            if exp.details.get("failure") == "auth":  # retrying cannot help: the key is wrong
                out.stop, out.hard = f"the agent cannot authenticate: {message.splitlines()[0] if message else ''}", True
            elif exp.reason == "not-installed":
                out.stop, out.hard = f"the agent is not installed: {message}", True
            elif exp.reason == "no-knobs":
                out.stop, out.hard = f"the agent cannot run: {message}", True
            elif self.failures >= agent.max_failures:
                out.stop, out.hard = (f"the proposer failed {self.failures} times in a row (last: {exp.reason}: "
                                      f"{message[:300]}); see {exp.log_path}"), True
        else:
            self.failures = 0
        if exp.status == "crash" and exp.reason in EXECUTOR_REASONS:
            self.executor_failures += 1
            if self.executor_failures >= agent.max_failures:
                out.stop, out.hard = (f"the {self.executor_kind} executor failed {self.executor_failures} times in a "
                                      f"row (last: {exp.reason}); see {exp.log_path}"), True
        elif not proposer_failed:
            self.executor_failures = 0
        if exp.status == "crash" and not proposer_failed and exp.reason not in EXECUTOR_REASONS \
                and model_driven and "replay_of" not in exp.details:
            if "fix_of" not in exp.details:
                fixes_left = agent.fix_attempts
            if fixes_left > 0:
                fixes_left -= 1
                out.fix = exp
        return out, fixes_left
