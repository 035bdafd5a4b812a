"""The autonomous loop: propose, guarded experiment, verdict, repeat, until a stop condition.

Stop conditions: `max_experiments`, `hours`, `target`, `plateau` (experiments without a keep),
`autoresearch stop` (a stop file: after the current experiment, or at once with --now),
Ctrl-C or SIGTERM (the current experiment is recorded as interrupted and the tree reset), or
a proposer that keeps failing. With none set it runs until stopped, as in the original.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .experiment import Experimenter, PhaseCallback, ProposalInfo, baseline, reconcile, start
from .journal import Experiment
from .proposers.base import ProposeContext, Proposer, ProposerError
from .proposers.brief import Limits, build_brief
from .session import Session, default_tag
from .task import LoopSection
from .workspace import branch_name

STOP_FILE = "stop"
PROPOSER_REASONS = {"agent-error", "agent-timeout", "bad-edit", "no-change", "not-installed"}


@dataclass
class LoopResult:
    stopped_because: str
    experiments: list[Experiment] = field(default_factory=list)

    @property
    def keeps(self) -> int:
        return sum(1 for e in self.experiments if e.status == "keep" and not e.is_baseline)


def stop_path(session: Session) -> Path:
    return session.state_dir / STOP_FILE


def request_stop(session: Session, now: bool) -> None:
    """What `autoresearch stop` does: leave a note the running loop polls."""
    stop_path(session).write_text("now" if now else "after-current")


class _StopWatcher:
    """Polls the stop file; `stop --now` sets the event that interrupts the current run."""

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

    def __enter__(self) -> "_StopWatcher":
        self.path.unlink(missing_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=2)
        self.path.unlink(missing_ok=True)


class Loop:
    def __init__(self, session: Session, proposer: Proposer, limits: LoopSection, *,
                 on_phase: PhaseCallback | None = None, agent_name: str = "",
                 on_message: Callable[[str], None] | None = None) -> None:
        self.session = session
        self.proposer = proposer
        self.limits = limits
        self.agent_name = agent_name or getattr(proposer, "name", "agent")
        self.stop_event = threading.Event()
        self.on_phase = on_phase or (lambda phase, info: None)
        self.on_message = on_message or (lambda text: None)
        self.experimenter = Experimenter(session, on_phase=self.on_phase, stop=self.stop_event)
        self.started = 0.0
        self.count = 0

    # -- setup ------------------------------------------------------------------------------

    def ensure_branch(self) -> str:
        s = self.session
        if s.tag and s.ws.branch_exists(s.branch) and (s.ws.current_branch() or "") == s.branch:
            return s.tag
        if s.tag and s.ws.branch_exists(s.branch):
            s.ws.switch(s.branch)
            return s.tag
        tag = default_tag()
        suffix = 1
        while s.ws.branch_exists(branch_name(tag)):
            suffix += 1
            tag = f"{default_tag()}-{suffix}"
        start(s, tag)
        self.on_message(f"started branch {branch_name(tag)}")
        return tag

    # -- stop conditions --------------------------------------------------------------------

    def _best(self) -> Experiment | None:
        s = self.session
        return s.journal.best(s.tag)

    def stop_reason(self, watcher: _StopWatcher) -> str:
        s, lim = self.session, self.limits
        if watcher.requested:
            return "stop requested"
        if lim.max_experiments and self.count >= lim.max_experiments:
            return f"{lim.max_experiments} experiments done"
        if lim.hours and time.time() - self.started >= lim.hours * 3600:
            return f"{lim.hours:g} hours passed"
        best = self._best()
        if lim.target is not None and best is not None and best.metric is not None:
            reached = best.metric >= lim.target if s.config.maximize else best.metric <= lim.target
            if reached:
                return f"target {lim.target:g} reached ({best.metric:.6f})"
        if lim.plateau and s.journal.since_last_keep(s.tag) >= lim.plateau:
            return f"{lim.plateau} experiments without a keep"
        return ""

    def limits_left(self) -> Limits:
        lim, s = self.limits, self.session
        return Limits(
            experiments_left=(lim.max_experiments - self.count) if lim.max_experiments else None,
            hours_left=(lim.hours - (time.time() - self.started) / 3600) if lim.hours else None,
            target=lim.target,
            plateau_left=(lim.plateau - s.journal.since_last_keep(s.tag)) if lim.plateau else None,
        )

    # -- one proposal -----------------------------------------------------------------------

    def propose_and_run(self, fix: Experiment | None) -> tuple[Experiment, bool]:
        """One experiment. Returns it and whether the proposer is model-driven."""
        s = self.session
        tag = s.tag
        best_commit = s.best_commit(tag)
        s.ws.restore(branch_name(tag), best_commit, s.state.preexisting, s.state_dir / "quarantine" / "pre-propose")
        if fix is not None and fix.commit_sha:
            s.ws.git("read-tree", "-u", "--reset", fix.commit_sha)  # the crashed code, for the agent to repair
        info = ProposalInfo(proposer=self.agent_name)
        exp = self.experimenter.begin("(proposing)", info)
        run_dir = s.run_dir(exp.seq)
        run_dir.mkdir(parents=True, exist_ok=True)
        history = s.journal.experiments(tag, limit=s.config.agent.history + 1)
        history = [e for e in history if e.seq != exp.seq]
        program_path = s.root / s.config.task.program
        brief = build_brief(s.config, program_path.read_text(errors="replace") if program_path.exists() else "",
                            best=self._best(), best_commit=best_commit, history=history,
                            files=s.config.editable_files(), limits=self.limits_left(), fix=fix)
        brief_path = run_dir / "brief.md"
        brief_path.write_text(brief)
        ctx = ProposeContext(config=s.config, workspace=s.ws, brief=brief, brief_path=brief_path,
                             log_path=run_dir / "agent.log", seq=exp.seq, best_commit=best_commit,
                             best_metric=exp.best_before, history=history, fix=fix, timeout=s.config.agent.timeout)
        self.on_phase("proposing", {"seq": exp.seq, "agent": self.agent_name, "fix": fix.seq if fix else None})
        began = time.time()
        try:
            proposal = self.proposer.propose(ctx)
        except ProposerError as err:
            exp.propose_seconds = time.time() - began
            exp.tokens_in = getattr(err, "tokens_in", None)  # a failed proposal still cost tokens
            exp.tokens_out = getattr(err, "tokens_out", None)
            exp.cost_usd = getattr(err, "cost_usd", None)
            exp.description = f"({self.agent_name} failed: {err.reason})"
            exp.log_path = str(ctx.log_path)
            return self.experimenter.record_failure(exp, "crash", err.reason, {"message": str(err)[:2000]}), True
        except KeyboardInterrupt:
            exp.description = "(interrupted while proposing)"
            self.experimenter.record_failure(exp, "crash", "interrupted")
            raise
        exp.propose_seconds = time.time() - began
        exp.tokens_in, exp.tokens_out, exp.cost_usd = proposal.tokens_in, proposal.tokens_out, proposal.cost_usd
        description = " ".join(proposal.description.split())[:200] or "(no description)"
        exp.description = description
        if fix is not None:
            exp.details["fix_of"] = fix.seq
        s.journal.update(exp)
        return self.experimenter.run(description, exp=exp), proposal.model_driven

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> LoopResult:
        s = self.session
        s.acquire("run")
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_term)
        result = LoopResult("")
        try:
            with _StopWatcher(stop_path(s), self.stop_event) as watcher:
                reconcile(s)
                self.ensure_branch()
                self.started = time.time()
                if s.journal.best(s.tag) is None:
                    self.on_message("no baseline on this branch yet: running it first")
                    exp = baseline(self.experimenter)
                    result.experiments.append(exp)
                    if exp.status != "keep":
                        result.stopped_because = (f"the baseline failed ({exp.status}: {exp.reason}); "
                                                  f"see {exp.log_path}")
                        return result
                failures = 0
                fix: Experiment | None = None
                fixes_left = 0
                while True:
                    reason = self.stop_reason(watcher)
                    if reason:
                        result.stopped_because = reason
                        return result
                    exp, model_driven = self.propose_and_run(fix)
                    self.count += 1
                    result.experiments.append(exp)
                    if exp.reason == "interrupted" or (self.stop_event.is_set() and exp.status == "crash"):
                        result.stopped_because = "stopped during an experiment"
                        return result
                    if exp.status == "crash" and exp.reason in PROPOSER_REASONS:
                        failures += 1
                        if exp.reason == "not-installed":
                            result.stopped_because = f"the agent is not installed: {exp.details.get('message', '')}"
                            return result
                        if failures >= s.config.agent.max_failures:
                            result.stopped_because = (f"the proposer failed {failures} times in a row (last: "
                                                      f"{exp.reason}: {exp.details.get('message', '')[:300]}); "
                                                      f"see {exp.log_path}")
                            return result
                    else:
                        failures = 0
                    # Crash repair: a model-driven proposer gets a few tries at fixing its own crash.
                    if exp.status == "crash" and exp.reason not in PROPOSER_REASONS and model_driven:
                        if fix is None:
                            fixes_left = s.config.agent.fix_attempts
                        if fixes_left > 0:
                            fixes_left -= 1
                            fix = exp
                            continue
                    fix = None
        except KeyboardInterrupt:
            result.stopped_because = "interrupted"
            reconcile(s, include_own=True)  # an interrupt between two steps leaves no `running` row
            return result
        finally:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, previous)
            s.release()

