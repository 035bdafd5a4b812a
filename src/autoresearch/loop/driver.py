"""The autonomous loop over 1..N slots: propose, experiment, keep or reset, repeat.

One driver serves every case; the sequential loop is the one-slot case. Each slot gets a
scratch copy of the best (`scratch.py`) where its proposer works; the driver turns what comes
back into a `Trial` (commit, guard, runs, settle: `trial.lifecycle`), and the executor makes the runs
(local: a thread per slot, each run in a fresh export of the commit; Ray: on a worker, from the
commit's tree). One driver thread does all the bookkeeping (journal, results.tsv, refs, the
branch): proposals and runs happen in other threads and report back through a queue, so the
journal has one writer and verdicts are decided one at a time, in the order runs finish. Each
experiment is a generator that yields what it waits for (a proposal, a measurement), so its
steps read top to bottom: `experiment.py`.

With several slots a better candidate may find the best moved meanwhile: `parallel.py` holds
those replay rules. Stop conditions and failure counting: `policy.py`.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from autoresearch.config.task import LoopSection
from autoresearch.executors import Executor, Job, make_executor
from autoresearch.git.workspace import branch_name
from autoresearch.harness.process import stop_processes_in
from autoresearch.journal.records import Experiment
from autoresearch.loop.experiment import Propose, Slot, SlotExperiments
from autoresearch.loop.parallel import MAX_REPLAYS
from autoresearch.loop.policy import Outcome, Policy, StopWatcher, stop_path
from autoresearch.proposers import Proposal, ProposeContext, Proposer, ProposerError
from autoresearch.trial.branch import free_tag, repair, show_best, start
from autoresearch.trial.environment import check as check_environment
from autoresearch.trial.lifecycle import baseline
from autoresearch.trial.measure import executor_failure
from autoresearch.trial.notes import flush_notes
from autoresearch.trial.reference import ReferenceWatch
from autoresearch.trial.session import Session
from autoresearch.verdict import MeasureRequest, Verdict
from autoresearch.verdict.flow import Measurement, PhaseCallback, quiet

DRAIN_TIMEOUT_S = 30.0  # after Ctrl-C: how long interrupted runs get to report back
POLL_S = 0.2

ProposerSource = Union[Proposer, Callable[[int], Proposer]]


@dataclass
class LoopResult:
    stopped_because: str
    experiments: list[Experiment] = field(default_factory=list)

    @property
    def keeps(self) -> int:
        return sum(1 for e in self.experiments if e.status == "keep" and not e.is_baseline)


class _SerializedProposer:
    """One proposer object shared by every slot: its calls take turns (it may keep state)."""

    def __init__(self, proposer: Proposer, lock: threading.Lock) -> None:
        self.inner = proposer
        self.name = getattr(proposer, "name", "agent")
        self.needs_git = getattr(proposer, "needs_git", True)
        self.lock = lock

    def propose(self, ctx: ProposeContext) -> Proposal:
        with self.lock:
            return self.inner.propose(ctx)


class Loop(SlotExperiments):
    """The autonomous loop. PROPOSER is one Proposer (its calls take turns across slots) or a
    factory `slot -> Proposer` (one each, proposals run concurrently)."""

    def __init__(self, session: Session, proposer: ProposerSource, limits: LoopSection,
                 executor: Executor | None = None, *, on_phase: PhaseCallback | None = None,
                 on_message: Callable[[str], None] | None = None, agent_name: str = "") -> None:
        self.session = session
        self.executor = executor or make_executor(session.config.executor)
        self.on_phase = on_phase or quiet
        self.on_message = on_message or (lambda text: None)
        if hasattr(proposer, "propose") and not isinstance(proposer, type):
            shared = _SerializedProposer(proposer, threading.Lock())  # type: ignore[arg-type]
            self._proposer_for: Callable[[int], Proposer] = lambda slot: shared
        else:
            self._proposer_for = proposer  # type: ignore[assignment]
        self._first = self._proposer_for(0)
        self.agent_name = agent_name or getattr(self._first, "name", "agent")
        self.policy = Policy(session, limits, self.executor.kind)
        self.stop_event = threading.Event()
        self.events: queue.Queue = queue.Queue()
        self.slots: list[Slot] = []
        self.result = LoopResult("")
        self.stopping = ""  # why no new proposal starts
        self.hard_stop = False  # user stop, interrupt or failing proposer: no replays either
        self._cancelled = False
        self.reference = ReferenceWatch(session, self.stop_event, self.on_phase, self.on_message)
        self.env_changes: list[str] = []  # the environment changed: the best is re-measured once the slots are idle
        # Owned by the driver once the slots run (only it moves the best): cached, since every
        # git call saved is ~5 ms of each experiment's overhead.
        self.tag = ""
        self.best = ""
        self.best_tree = ""

    # -- public -----------------------------------------------------------------------------

    def run(self) -> LoopResult:
        s = self.session
        s.acquire("run")
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        main = threading.current_thread() is threading.main_thread()
        if main:
            signal.signal(signal.SIGTERM, on_term)
        try:
            with StopWatcher(stop_path(s), self.stop_event) as watcher:
                repair(s)
                self._ensure_branch()
                self.executor.open(s)  # first: a cluster that cannot be reached fails before any run
                try:
                    self.policy.started = time.time()
                    changes = check_environment(s, s.tag, self.stop_event)
                    if changes:
                        self.on_message(f"the environment changed since the last experiment ({'; '.join(changes)}): "
                                        "a new epoch")
                    if s.journal.best(s.tag) is None:
                        self.on_message("no baseline on this branch (or epoch) yet: running it first")
                        exp = baseline(s, stop=self.stop_event, on_phase=self.on_phase)
                        self.result.experiments.append(exp)
                        if exp.status != "keep":
                            self.result.stopped_because = (f"the baseline failed ({exp.status}: {exp.reason}); "
                                                           f"see {exp.log_path}")
                            return self.result
                    self.tag = self.policy.tag = s.tag
                    self.best = s.best_commit(self.tag)
                    self.best_tree = s.ws.tree_of(self.best)
                    self.slots = [Slot(i, self._first if i == 0 else self._proposer_for(i))
                                  for i in range(self.executor.slots)]
                    self.on_message(f"running on {self.executor.describe()}")
                    try:
                        self._drive(watcher)
                    except KeyboardInterrupt:
                        self._interrupt("interrupted")
                        self._drain()
                finally:
                    self.executor.close()
            if self.stopping in ("interrupted", "stopped during an experiment"):
                repair(s, include_own=True)  # an interrupt between two steps leaves no `running` row
            self.result.stopped_because = self.stopping or "stopped"
            flush_notes(s)  # records changed after their settle (a rescue, a replay's outcome) into git
            return self.result
        except KeyboardInterrupt:
            self.result.stopped_because = "interrupted"
            repair(s, include_own=True)
            return self.result
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
            s.release()

    def _ensure_branch(self) -> None:
        """Continue the checked-out run branch, or start a new one; the task folder shows best
        (anything uncommitted found there is rescued first, never discarded)."""
        s = self.session
        if not s.tag or not s.ws.branch_exists(s.branch):
            tag = start(s, free_tag(s))
            self.on_message(f"started branch {branch_name(tag)}")
            return
        rescued = show_best(s, s.tag, set(), s.state_dir / "quarantine" / f"run-start-{int(time.time())}")
        if rescued:
            self.on_message(f"uncommitted changes in the task folder were saved as {rescued} "
                            "(`autoresearch rescue` shows them) before the run")

    # -- the driver -------------------------------------------------------------------------

    def _drive(self, watcher: StopWatcher) -> None:
        while True:
            if self.stop_event.is_set():
                self._interrupt("stopped during an experiment")
            if watcher.requested and not self.stopping:
                self._stop("stop requested", hard=True)
            if not self.stopping:
                reason = self.policy.stop_reason()
                if reason:
                    self._stop(reason, hard=False)
            for slot in self.slots:
                if slot.flow is None:
                    self._start_work(slot)
            if all(slot.flow is None for slot in self.slots):
                return
            self._handle_events()

    def _stop(self, reason: str, hard: bool) -> None:
        if not self.stopping:
            self.stopping = reason
            if len(self.slots) > 1:
                self.on_message(f"stopping: {reason}; waiting for the experiments in flight")
        self.hard_stop = self.hard_stop or hard

    def _interrupt(self, reason: str) -> None:
        self.stop_event.set()
        self._stop(reason, hard=True)
        if not self._cancelled:
            self._cancelled = True
            self.executor.cancel()
        for slot in self.slots:  # a proposal has no run to collect: its agent ends with the sandbox
            if slot.flow is not None and slot.waiting == "propose":
                stop_processes_in(self._scratch_dir(slot))
                self._abandon(slot)

    def _abandon(self, slot: Slot) -> None:
        """Give up on the slot's experiment: recorded as interrupted, answers to it ignored."""
        trial = slot.trial
        if slot.flow is not None:
            slot.flow.close()
        slot.flow, slot.trial, slot.waiting = None, None, ""
        slot.token += 1
        if trial is not None and trial.exp.status == "running":
            if trial.exp.description == "(proposing)":
                trial.exp.description = "(interrupted while proposing)"
            self.result.experiments.append(trial.settle(Verdict("crash", "interrupted")))

    def _drain(self) -> None:
        """After an interrupt: collect what the interrupted runs report, then give up on the rest."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        try:
            while any(slot.flow is not None for slot in self.slots) and time.monotonic() < deadline:
                self._handle_events()
        except KeyboardInterrupt:
            pass
        for slot in self.slots:
            if slot.flow is not None:
                self._abandon(slot)

    def _start_work(self, slot: Slot) -> None:
        if slot.replay is not None:
            work, slot.replay = slot.replay, None
            if self.hard_stop:
                work.of.reason = "stale-stopped"
                self.session.journal.update(work.of)
                return
            slot.flow = self._replay_flow(slot, work)
        elif not self.stopping:
            reason = self.policy.stop_reason()  # asked again: several slots may start in one pass
            if reason:
                self._stop(reason, hard=False)
                return
            if not self._environment_ready():
                return
            self.policy.count += 1
            fix, slot.fix = slot.fix, None
            slot.flow = self._proposal_flow(slot, fix)
        else:
            return
        self._advance(slot, None)

    def _environment_ready(self) -> bool:
        """Whether a new experiment may start. Before each one the run's environment is
        fingerprinted (trial.environment); after a change (a new epoch) no slot starts until all
        are idle, and then the best is re-measured under the new environment as the epoch's
        baseline, before any candidate is compared with it."""
        s = self.session
        if not self.env_changes:
            self.env_changes = check_environment(s, self.tag, self.stop_event)
            if not self.env_changes:
                return True
            self.on_message(f"the environment changed ({'; '.join(self.env_changes)}): a new epoch; the best is "
                            "re-measured under it first")
        if any(slot.flow is not None for slot in self.slots):
            return False  # the experiments in flight finish first (in the old epoch)
        if s.journal.best(self.tag) is None:
            exp = baseline(s, tag=self.tag, stop=self.stop_event, on_phase=self.on_phase,
                           description="baseline: the environment changed (" + "; ".join(self.env_changes) + ")")
            self.result.experiments.append(exp)
            if exp.status != "keep":
                self._stop(f"the best's re-measurement under the changed environment failed ({exp.status}: "
                           f"{exp.reason}); see {exp.log_path}", hard=True)
                return False
        self.env_changes = []
        self.best = s.best_commit(self.tag)
        self.best_tree = s.ws.tree_of(self.best)
        return True

    def _handle_events(self) -> None:
        """Wait for the next event, then handle every event already queued, so runs that finish
        together are decided together before any slot starts new work."""
        try:
            event = self.events.get(timeout=POLL_S)
        except queue.Empty:
            return
        while True:
            self._handle(*event)
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return

    def _handle(self, index: int, token: int, kind: str, payload: Any) -> None:
        slot = self.slots[index]
        if kind == "phase":
            phase, info = payload
            self.on_phase(phase, {**info, "slot": index})
            return
        if token != slot.token or slot.flow is None:
            return  # an answer to a request that was abandoned
        if kind == "pid":
            if slot.trial is not None:
                slot.trial.pid_recorder()(payload)
        elif kind == "error":
            self._advance(slot, None, payload)
        else:
            self._advance(slot, payload)

    def _advance(self, slot: Slot, value: Any, error: BaseException | None = None) -> None:
        """Step the slot's experiment until it waits for something again, or ends."""
        assert slot.flow is not None
        try:
            request = slot.flow.throw(error) if error is not None else slot.flow.send(value)
        except StopIteration as end:
            self._ended(slot, end.value)
            return
        except Exception:
            trial, slot.flow = slot.trial, None
            if trial is not None and trial.exp.status == "running":
                trial.settle(Verdict("crash", "internal-error"))
            raise
        slot.token += 1
        token = slot.token
        if isinstance(request, Propose):
            slot.waiting = "propose"
            self._start_proposal(slot, token, request.ctx)
        else:
            slot.waiting = "measure"
            self._start_measure(slot, token, request)

    def _start_proposal(self, slot: Slot, token: int, ctx: ProposeContext) -> None:
        def work() -> None:
            try:
                proposal = slot.proposer.propose(ctx)
            except ProposerError as err:
                self.events.put((slot.index, token, "error", err))
            except KeyboardInterrupt:
                self.events.put((slot.index, token, "error", ProposerError("agent-error", "interrupted")))
            except Exception as exc:  # noqa: BLE001 - a proposer bug is that experiment's crash
                self.events.put((slot.index, token, "error",
                                 ProposerError("agent-error", f"the proposer raised {type(exc).__name__}: {exc}")))
            else:
                self.events.put((slot.index, token, "proposed", proposal))

        threading.Thread(target=work, name=f"autoresearch-propose-{slot.index}", daemon=True).start()

    def _start_measure(self, slot: Slot, token: int, request: MeasureRequest) -> None:
        assert slot.exp is not None
        if self.stop_event.is_set():
            self._advance(slot, Measurement(False, "interrupted", interrupted=True))
            return
        job = Job(seq=slot.exp.seq, slot=slot.index, commit=request.commit, label=request.label, seed=request.seed)
        put, i = self.events.put, slot.index
        try:
            self.executor.submit(job, on_start=lambda pid: put((i, token, "pid", pid)),
                                 on_phase=lambda phase, info: put((i, token, "phase", (phase, info))),
                                 done=lambda m: put((i, token, "measured", m)))
        except Exception as exc:  # noqa: BLE001 - that experiment's crash, not the loop's end

            put((i, token, "measured", executor_failure(self.session, job.seq, job.label, "executor-error",
                                                        f"the {self.executor.kind} executor could not start "
                                                        f"the run: {exc}")))

    def _ended(self, slot: Slot, exp: Experiment | None) -> None:
        slot.flow, slot.trial, slot.waiting = None, None, ""
        slot.token += 1
        if exp is None:
            return
        self.result.experiments.append(exp)
        if exp.reason == "interrupted":
            self._interrupt("stopped during an experiment")
            return
        self.reference.after(exp, self.tag, len(self.slots))
        outcome: Outcome
        outcome, slot.fixes_left = self.policy.after(exp, slot.model_driven, slot.fixes_left)
        if outcome.stop:
            self._stop(outcome.stop, outcome.hard)
        slot.fix = outcome.fix


def run_loop(session: Session, proposer: ProposerSource, limits: LoopSection | None = None,
             executor: Executor | None = None, on_phase: PhaseCallback | None = None,
             on_message: Callable[[str], None] | None = None, agent_name: str = "") -> LoopResult:
    """The loop over the task's [executor] slots (1: sequential). PROPOSER: a factory
    `slot -> Proposer` (concurrent proposals) or one Proposer (its calls take turns)."""
    return Loop(session, proposer, limits or session.config.loop, executor, on_phase=on_phase,
                on_message=on_message, agent_name=agent_name).run()


__all__ = ["Loop", "LoopResult", "MAX_REPLAYS", "run_loop"]
