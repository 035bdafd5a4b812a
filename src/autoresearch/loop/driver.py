"""The autonomous loop over 1..N slots: propose, experiment, keep or reset, repeat.

One driver serves every case; the sequential loop is the one-slot case. Each slot gets a
scratch copy of the best (`scratch.py`) where its proposer works; the driver turns what comes
back into a `Trial` (commit, guard, runs, settle: `trial.py`), and the executor makes the runs
(local: a thread per slot, each run in a fresh export of the commit; Ray: on a worker, from the
commit's tree). One driver thread does all the bookkeeping (journal, results.tsv, refs, the
branch): proposals and runs happen in other threads and report back through a queue, so the
journal has one writer and verdicts are decided one at a time, in the order runs finish. Each
experiment is a generator that yields what it waits for (a proposal, a measurement), so its
steps read top to bottom.

With several slots a better candidate may find the best moved meanwhile: `parallel.py` holds
those replay rules. Stop conditions and failure counting: `policy.py`.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator, Union

from autoresearch.config.task import LoopSection
from autoresearch.executors import Executor, Job, make_executor
from autoresearch.git.replay import replay_tree
from autoresearch.git.workspace import Workspace, branch_name
from autoresearch.harness.process import stop_processes_in
from autoresearch.harness.sandbox import agent_home
from autoresearch.journal.store import Experiment
from autoresearch.loop.parallel import MAX_REPLAYS, Replay, in_flight_note, replay_outcome
from autoresearch.loop.policy import Outcome, Policy, StopWatcher, stop_path
from autoresearch.proposers import Proposal, ProposeContext, Proposer, ProposerError
from autoresearch.proposers.brief import build_brief
from autoresearch.redact import scrub
from autoresearch.trial import scratch as scratch_mod
from autoresearch.trial.branch import free_tag, repair, show_best, start
from autoresearch.trial.lifecycle import ProposalInfo, Trial, baseline
from autoresearch.trial.measure import executor_failure
from autoresearch.trial.reference import ReferenceWatch
from autoresearch.trial.session import Session
from autoresearch.verdict import MeasureRequest, Verdict
from autoresearch.verdict.flow import Measurement

DRAIN_TIMEOUT_S = 30.0  # after Ctrl-C: how long interrupted runs get to report back
POLL_S = 0.2

ProposerSource = Union[Proposer, Callable[[int], Proposer]]
PhaseCallback = Callable[[str, dict], None]


@dataclass
class LoopResult:
    stopped_because: str
    experiments: list[Experiment] = field(default_factory=list)

    @property
    def keeps(self) -> int:
        return sum(1 for e in self.experiments if e.status == "keep" and not e.is_baseline)


@dataclass
class _Propose:
    ctx: ProposeContext


Flow = Generator[Union[_Propose, MeasureRequest], Any, Union[Experiment, None]]


@dataclass
class _Slot:
    index: int
    proposer: Proposer
    flow: Flow | None = None
    trial: Trial | None = None
    token: int = 0  # bumps with each request, so a late answer to an abandoned one is ignored
    replay: Replay | None = None
    fix: Experiment | None = None
    fixes_left: int = 0
    model_driven: bool = True
    waiting: str = ""  # "propose" or "measure" while the flow waits

    @property
    def exp(self) -> Experiment | None:
        return self.trial.exp if self.trial is not None else None


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


class Loop:
    """The autonomous loop. PROPOSER is one Proposer (its calls take turns across slots) or a
    factory `slot -> Proposer` (one each, proposals run concurrently)."""

    def __init__(self, session: Session, proposer: ProposerSource, limits: LoopSection,
                 executor: Executor | None = None, *, on_phase: PhaseCallback | None = None,
                 on_message: Callable[[str], None] | None = None, agent_name: str = "") -> None:
        self.session = session
        self.executor = executor or make_executor(session.config.executor)
        self.on_phase = on_phase or (lambda phase, info: None)
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
        self.slots: list[_Slot] = []
        self.result = LoopResult("")
        self.stopping = ""  # why no new proposal starts
        self.hard_stop = False  # user stop, interrupt or failing proposer: no replays either
        self._cancelled = False
        self.reference = ReferenceWatch(session, self.stop_event, self.on_phase, self.on_message)
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
                    self.slots = [_Slot(i, self._first if i == 0 else self._proposer_for(i))
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

    def _abandon(self, slot: _Slot) -> None:
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

    def _start_work(self, slot: _Slot) -> None:
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
            self.policy.count += 1
            fix, slot.fix = slot.fix, None
            slot.flow = self._proposal_flow(slot, fix)
        else:
            return
        self._advance(slot, None)

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

    def _advance(self, slot: _Slot, value: Any, error: BaseException | None = None) -> None:
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
        if isinstance(request, _Propose):
            slot.waiting = "propose"
            self._start_proposal(slot, token, request.ctx)
        else:
            slot.waiting = "measure"
            self._start_measure(slot, token, request)

    def _start_proposal(self, slot: _Slot, token: int, ctx: ProposeContext) -> None:
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

    def _start_measure(self, slot: _Slot, token: int, request: MeasureRequest) -> None:
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

    def _ended(self, slot: _Slot, exp: Experiment | None) -> None:
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

    # -- one experiment, as a generator -------------------------------------------------------

    def _scratch_dir(self, slot: _Slot) -> Path:
        return self.session.state_dir / "slots" / str(slot.index) / "scratch"

    def _proposal_flow(self, slot: _Slot, fix: Experiment | None) -> Flow:
        s, config = self.session, self.session.config
        s.ws.forget()  # a night-long process: refs are read afresh for each experiment
        best = self.best
        base = best
        if fix is not None:
            tree = s.ws.tree_of(fix.commit_sha) if fix.parent == best else self._replay_tree(fix.commit_sha, best)
            if tree is None:
                fix = None  # the crashed change does not apply to today's best: a fresh proposal
            else:
                base = fix.commit_sha if fix.parent == best else s.ws.commit_tree(tree, best, "fix base\n")
        trial = Trial.begin(s, tag=self.tag, parent=best, description="(proposing)",
                            info=ProposalInfo(proposer=self.agent_name), slot=slot.index,
                            details={"executor": self.executor.kind}, on_phase=self._slot_phase(slot))
        slot.trial = trial
        exp = trial.exp
        scratch = scratch_mod.make(s.ws, base, self._scratch_dir(slot),
                                   with_git=getattr(slot.proposer, "needs_git", True))
        ctx = self._context(slot, exp, best, fix, scratch.root)
        self.on_phase("proposing", {"seq": exp.seq, "slot": slot.index, "agent": self.agent_name,
                                    "fix": fix.seq if fix else None})
        began = time.time()
        try:
            proposal: Proposal = yield _Propose(ctx)
        except ProposerError as err:
            exp.propose_seconds = time.time() - began
            exp.tokens_in = getattr(err, "tokens_in", None)  # a failed proposal still cost tokens
            exp.tokens_out = getattr(err, "tokens_out", None)
            exp.cost_usd = getattr(err, "cost_usd", None)
            exp.description = f"({self.agent_name} failed: {err.reason})"
            exp.log_path = str(ctx.log_path) if ctx.log_path.exists() else ""
            slot.model_driven = True
            tree = s.ws.tree_of(best)  # every attempt is a commit: this one changed nothing
            trial.commit(tree)
            return trial.settle(Verdict("crash", err.reason, {"message": str(err)[:2000]}))
        trial.proposed(proposal.description, ProposalInfo(
            proposer=self.agent_name, propose_seconds=time.time() - began, tokens_in=proposal.tokens_in,
            tokens_out=proposal.tokens_out, cost_usd=proposal.cost_usd))
        slot.model_driven = proposal.model_driven
        if fix is not None:
            exp.details["fix_of"] = fix.seq
        self.on_phase("guarding", {"seq": exp.seq, "slot": slot.index})
        got = scratch_mod.collect(s.ws, scratch, best, config.task.editable, s.run_dir(exp.seq) / "quarantine",
                                  config.budget.max_new_file_bytes)
        if got.quarantined:
            exp.details["quarantined"] = got.quarantined
            exp.details["quarantine"] = got.details(config.budget.max_new_file_bytes)
        verdict = trial.commit(got.tree, got.violations)
        if verdict is not None:
            return trial.settle(verdict)
        return (yield from self._measure_flow(slot, trial))

    def _replay_flow(self, slot: _Slot, work: Replay) -> Flow:
        s = self.session
        best = self.best
        tree: str | None = work.tree
        if work.onto != best:  # the best moved again before the replay began
            tree = self._replay_tree(work.of.commit_sha, best)
        original = work.of
        if tree is None or tree == self.best_tree:
            original.reason = "stale-conflict" if tree is None else "stale-duplicate"
            s.journal.update(original)
            return None
        idea = original.details.get("idea", original.description)
        origin = original.details.get("replay_origin", original.seq)
        trial = Trial.begin(s, tag=self.tag, parent=best, description=f"replay #{original.seq}: {idea}"[:200],
                            info=ProposalInfo(proposer=original.proposer), slot=slot.index,
                            details={"executor": self.executor.kind, "replay_of": original.seq,
                                     "replay_origin": origin, "replay_round": work.round,
                                     "replayed_commit": original.commit_sha, "idea": idea},
                            on_phase=self._slot_phase(slot))
        slot.trial = trial
        original.details["replayed_as"] = trial.exp.seq
        s.journal.update(original)
        self.on_phase("replaying", {"seq": trial.exp.seq, "slot": slot.index, "of": original.seq})
        verdict = trial.commit(tree)
        if verdict is not None:  # cannot happen for a change that passed the guard; checked all the same
            return trial.settle(verdict)
        return (yield from self._measure_flow(slot, trial))

    def _measure_flow(self, slot: _Slot, trial: Trial) -> Flow:
        """The shared decision flow, its runs made by the executor."""
        exp = trial.exp
        flow = trial.flow(is_stale=lambda: self.best != exp.parent)
        try:
            request = next(flow)
            while True:
                m: Measurement = yield request
                trial.record_run(request, m)
                request = flow.send(m)
        except StopIteration as done:
            decision: Verdict = done.value
        if decision.status == "stale":
            verdict, slot.replay = replay_outcome(self.session.ws, exp, self.best, self.best_tree, self.hard_stop)
            return trial.settle(verdict)
        return self._settle(trial, decision)

    def _settle(self, trial: Trial, decision: Verdict) -> Experiment:
        exp = trial.exp
        if decision.status == "keep" and self.best != exp.parent:  # pragma: no cover - replayed instead
            raise RuntimeError(f"seq {exp.seq}: a keep must be a child of the best {self.best[:7]}")
        old_tree = self.best_tree
        result = trial.settle(decision)
        if result.status == "keep":
            self.best, self.best_tree = exp.commit_sha, self.session.ws.tree_of(exp.commit_sha)
            # the folder shows the new best
            rescued = show_best(self.session, self.tag, {old_tree}, self.session.run_dir(exp.seq) / "quarantine")
            if rescued:
                exp.details["rescued"] = rescued
                self.session.journal.update(exp)
        return result

    def _replay_tree(self, commit: str, onto: str) -> str | None:
        return replay_tree(self.session.ws, commit, onto)

    # -- context ------------------------------------------------------------------------------

    def _slot_phase(self, slot: _Slot) -> PhaseCallback:
        def on_phase(phase: str, info: dict) -> None:
            self.on_phase(phase, {**info, "slot": slot.index})
        return on_phase

    def _context(self, slot: _Slot, exp: Experiment, best: str, fix: Experiment | None, root: Path) -> ProposeContext:
        s, config = self.session, self.session.config
        run_dir = s.run_dir(exp.seq)
        run_dir.mkdir(parents=True, exist_ok=True)
        history = [e for e in s.journal.experiments(self.tag, limit=config.agent.history + 1) if e.seq != exp.seq]
        program_path = root / config.task.program
        program = program_path.read_text(errors="replace") if program_path.exists() else ""
        brief = build_brief(config, program, best=s.journal.best(self.tag), best_commit=best,
                            history=history, files=config.editable_files(root),
                            limits=self.policy.limits_left(), fix=fix)
        brief += in_flight_note([o.exp for o in self.slots if o is not slot and o.exp is not None])
        brief = scrub(brief)  # it goes to a remote model
        brief_path = run_dir / "brief.md"
        brief_path.write_text(brief)
        return ProposeContext(config=config, workspace=Workspace(root), brief=brief, brief_path=brief_path,
                              log_path=run_dir / "agent.log", seq=exp.seq, best_commit=best,
                              best_metric=exp.best_before, history=history, fix=fix, timeout=config.agent.timeout,
                              task_root=s.root, agent_home=agent_home(s.root))


def run_loop(session: Session, proposer: ProposerSource, limits: LoopSection | None = None,
             executor: Executor | None = None, on_phase: PhaseCallback | None = None,
             on_message: Callable[[str], None] | None = None, agent_name: str = "") -> LoopResult:
    """The loop over the task's [executor] slots (1: sequential). PROPOSER: a factory
    `slot -> Proposer` (concurrent proposals) or one Proposer (its calls take turns)."""
    return Loop(session, proposer, limits or session.config.loop, executor, on_phase=on_phase,
                on_message=on_message, agent_name=agent_name).run()


__all__ = ["Loop", "LoopResult", "MAX_REPLAYS", "run_loop"]
