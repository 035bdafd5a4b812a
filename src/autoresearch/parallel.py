"""N experiments in flight: the loop of `autoresearch run` with `[executor] slots = N` (local
slots or Ray).

Each slot owns a git worktree, `.autoresearch/worktrees/slot-<i>`. A free slot puts the best of
that moment into its worktree and asks the proposer for a change there; the driver guards and
commits the change, and the executor runs it (local: in the worktree, pinned to the slot's
devices; Ray: on a worker, from the commit's tree). One driver thread does all the
bookkeeping (journal, results.tsv, refs, the branch): proposals and runs happen in other threads
and report back through a queue, so the journal has one writer and verdicts are decided one at
a time, in the order the runs finish. Each experiment is a generator that yields what it waits
for (a proposal, a measurement), so its steps read top to bottom like the sequential loop's.

Merge semantics
---------------
A candidate is measured and screened against the parent it was proposed on. When it finishes:

- it crashed, broke a constraint, or is not better than its parent: `crash` / `discard`, exactly
  as in the sequential loop;
- it is better and its parent is still the best: the verdict policy runs to the end (repeats,
  paired confirmation) and a keep moves the branch forward to it;
- it is better but the best has moved meanwhile (another slot kept something): the candidate is
  recorded as `discard` with reason `stale-replayed`, and its diff is replayed on the new best by
  a three-way merge (`git merge-tree`). The combination becomes a new experiment in the same
  slot (`replay #<seq>: <description>`), run and judged against the new best like any other,
  so it is kept only when its own run confirms it. If the diff does not apply the candidate's
  reason is `stale-conflict`; if it adds nothing to the new best, `stale-duplicate`. A replay
  that goes stale in turn is replayed again, at most MAX_REPLAYS times (`stale-superseded`).

So: every keep is a child of the previous keep (the branch only moves forward), nothing kept is
ever dropped (a keep is never replaced, only built upon), and no combination is kept without a
run of its own. Replays get their own seq, so keeps are in seq order, `journal.best` (the last
keep) is always the branch's tip, and each row of results.tsv is one measured commit.

Stop conditions are the sequential loop's: `max_experiments` counts proposals (a replay belongs
to the proposal it replays); when a limit is reached no new proposal starts and the runs in
flight finish; `autoresearch stop` also lets them finish, `stop --now` / Ctrl-C interrupt them.
"""

from __future__ import annotations

import queue
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generator, Union

from . import verdict as V
from .executors import Executor, Job, make_executor
from .experiment import Experimenter, Measurement, MeasureRequest, PhaseCallback, baseline, decide_flow, reconcile
from .guard import check_scope, verify
from .harness import tail_lines
from .journal import Experiment, Journal, append_tsv, render_tsv, write_tsv
from .loop import PROPOSER_REASONS, Loop, LoopResult, _StopWatcher, stop_path
from .proposers.base import Proposal, ProposeContext, Proposer, ProposerError
from .proposers.brief import build_brief
from .session import Session
from .task import LoopSection
from .workspace import Change, Workspace, branch_name, count_lines, experiment_ref

MAX_REPLAYS = 3  # replays of one idea before it gives up on a best that keeps moving
DRAIN_TIMEOUT_S = 30.0  # after Ctrl-C: how long interrupted runs get to report back
POLL_S = 0.2
EXECUTOR_REASONS = {"executor-error", "worker-error", "worker-lost"}  # the machinery failed, not the experiment
WORKTREES = "worktrees"

ProposerSource = Union[Proposer, Callable[[int], Proposer]]


# -- what an experiment waits for -------------------------------------------------------------

@dataclass
class _Propose:
    ctx: ProposeContext


@dataclass
class _Replay:
    """Work for a slot: run this stale candidate's change again on top of ONTO."""

    of: Experiment
    tree: str
    onto: str
    round: int


Flow = Generator[Union[_Propose, MeasureRequest], Any, Union[Experiment, None]]


@dataclass
class _Slot:
    index: int
    root: Path
    ws: Workspace
    proposer: Proposer
    flow: Flow | None = None
    exp: Experiment | None = None
    token: int = 0  # bumps with each request, so a late answer to an abandoned one is ignored
    replay: _Replay | None = None
    fix: Experiment | None = None
    fixes_left: int = 0
    model_driven: bool = True
    last_seq: int = 0
    on_disk: str = ""  # the commit whose tree the worktree holds (HEAD may differ), "" if unknown
    gitfile: bytes = b""  # the worktree's `.git` (a pointer into the main repository)
    waiting: str = ""  # "propose" or "measure" while the flow waits


class _SerializedProposer:
    """One proposer object shared by every slot: its calls take turns (it may keep state)."""

    def __init__(self, proposer: Proposer, lock: threading.Lock) -> None:
        self.inner = proposer
        self.name = getattr(proposer, "name", "agent")
        self.lock = lock

    def propose(self, ctx: ProposeContext) -> Proposal:
        with self.lock:
            return self.inner.propose(ctx)


# -- the loop ---------------------------------------------------------------------------------

class ParallelLoop:
    """The autonomous loop over N slots. `proposer` is one Proposer (its calls are serialized)
    or a factory `slot -> Proposer` (one each, proposals run concurrently)."""

    def __init__(self, session: Session, proposer: ProposerSource, limits: LoopSection,
                 executor: Executor | None = None, *, on_phase: PhaseCallback | None = None,
                 on_message: Callable[[str], None] | None = None, agent_name: str = "") -> None:
        self.session = session
        self.limits = limits
        self.executor = executor or make_executor(session.config.executor)
        self.on_phase = on_phase or (lambda phase, info: None)
        self.on_message = on_message or (lambda text: None)
        if hasattr(proposer, "propose") and not isinstance(proposer, type):
            shared = _SerializedProposer(proposer, threading.Lock())  # type: ignore[arg-type]
            self._proposer_for: Callable[[int], Proposer] = lambda slot: shared
        else:
            self._proposer_for = proposer  # type: ignore[assignment]
        first = self._proposer_for(0)
        self.agent_name = agent_name or getattr(first, "name", "agent")
        # The sequential loop lends its branch setup, stop conditions and baseline.
        self.base = Loop(session, first, limits, on_phase=self.on_phase, agent_name=self.agent_name,
                         on_message=self.on_message)
        self.stop_event = self.base.stop_event
        self.experimenter: Experimenter = self.base.experimenter
        self._first_proposer = first
        self.events: queue.Queue = queue.Queue()
        self.slots: list[_Slot] = []
        self.result = LoopResult("")
        self.stopping = ""  # why no new proposal starts
        self.hard_stop = False  # user stop, interrupt or failing proposer: no replays either
        self.failures = 0
        self.executor_failures = 0
        self._cancelled = False
        # Owned by the driver once the slots run (only it moves the best), so cached here:
        # every git call saved is ~10 ms of each experiment's overhead.
        self.tag = ""
        self.best = ""
        self.best_tree = ""
        self.lock: Any = None

    # -- public -------------------------------------------------------------------------------

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
            with _StopWatcher(stop_path(s), self.stop_event) as watcher:
                reconcile(s)
                self.base.ensure_branch()
                self.executor.open(s)  # first: a cluster that cannot be reached fails before any run
                try:
                    self.base.started = time.time()
                    if s.journal.best(s.tag) is None:
                        self.on_message("no baseline on this branch yet: running it first")
                        exp = baseline(self.experimenter)
                        self.result.experiments.append(exp)
                        if exp.status != "keep":
                            self.result.stopped_because = f"the baseline failed ({exp.status}: {exp.reason}); " \
                                                          f"see {exp.log_path}"
                            return self.result
                    self.tag = s.tag
                    self.best = s.best_commit(self.tag)
                    self.best_tree = s.ws.tree_of(self.best)
                    self.lock = s.lock()
                    self._open_slots()
                    self.on_message(f"running on {self.executor.describe()}")
                    try:
                        self._drive(watcher)
                    except KeyboardInterrupt:
                        self._interrupt("interrupted")
                        self._drain()
                finally:
                    self.executor.close()
                    self._close_slots()
            if self.stopping in ("interrupted", "stopped during an experiment"):
                reconcile(s, include_own=True)  # an interrupt between two steps leaves no `running` row
            self.result.stopped_because = self.stopping or "stopped"
            return self.result
        except KeyboardInterrupt:
            self.result.stopped_because = "interrupted"
            reconcile(s, include_own=True)
            return self.result
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
            s.release()

    # -- slots --------------------------------------------------------------------------------

    def _worktree_dir(self) -> Path:
        return self.session.state_dir / WORKTREES

    def _open_slots(self) -> None:
        s = self.session
        best = self.best
        base = self._worktree_dir()
        for i in range(self.executor.slots):
            path = base / f"slot-{i}"
            ws = s.ws.add_worktree(path, best)
            proposer = self._first_proposer if i == 0 else self._proposer_for(i)
            self.slots.append(_Slot(index=i, root=ws.root, ws=ws, proposer=proposer, on_disk=best,
                                    gitfile=(ws.root / ".git").read_bytes()))
        # Worktrees of an earlier run with more slots: gone.
        for stale in sorted(base.glob("slot-*")):
            if stale.resolve() not in {slot.root for slot in self.slots}:
                s.ws.remove_worktree(stale)
                shutil.rmtree(stale, ignore_errors=True)

    def _close_slots(self) -> None:
        for slot in self.slots:
            self.session.ws.remove_worktree(slot.root)
            shutil.rmtree(slot.root, ignore_errors=True)

    def _repair_gitfile(self, slot: _Slot) -> None:
        """The agent can write in its worktree, `.git` included: put the pointer back, so the
        driver's git commands always reach the task's repository."""
        gitfile = slot.root / ".git"
        try:
            intact = gitfile.is_file() and not gitfile.is_symlink() and gitfile.read_bytes() == slot.gitfile
        except OSError:
            intact = False
        if not intact:
            if gitfile.is_dir() and not gitfile.is_symlink():
                shutil.rmtree(gitfile)
            else:
                gitfile.unlink(missing_ok=True)
            gitfile.write_bytes(slot.gitfile)

    def _reset_worktree(self, slot: _Slot, commit: str) -> None:
        """The slot's worktree at COMMIT, detached; files nobody committed go to the quarantine
        of the experiment that left them (nothing anyone made is deleted)."""
        self._repair_gitfile(slot)
        slot.ws.git("checkout", "-q", "-f", "--detach", commit)  # -f: local changes and index too
        slot.on_disk = commit
        owner = slot.exp.seq if slot.exp is not None else slot.last_seq
        quarantine = self.session.run_dir(owner) / "quarantine" / f"slot-{slot.index}"
        moved = []
        for path in slot.ws.untracked():
            dest = quarantine / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(slot.root / path), str(dest))
            moved.append(path)
        for path in moved:
            parent = (slot.root / path).parent
            while parent != slot.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent

    # -- the driver ---------------------------------------------------------------------------

    def _drive(self, watcher: _StopWatcher) -> None:
        while True:
            if self.stop_event.is_set():
                self._interrupt("stopped during an experiment")
            if watcher.requested and not self.stopping:
                self._stop("stop requested", hard=True)
            if not self.stopping:
                reason = self.base.stop_reason(watcher)
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
            self.on_message(f"stopping: {reason}; waiting for the experiments in flight")
        self.hard_stop = self.hard_stop or hard

    def _interrupt(self, reason: str) -> None:
        self.stop_event.set()
        self._stop(reason, hard=True)
        if not self._cancelled:
            self._cancelled = True
            self.executor.cancel()
        # A proposal has no run to collect: end the agent (it runs in the slot's worktree) now.
        for slot in self.slots:
            if slot.flow is not None and slot.waiting == "propose":
                stop_processes_in(slot.root)
                self._abandon(slot)

    def _abandon(self, slot: _Slot) -> None:
        """Give up on the slot's experiment: recorded as interrupted, answers to it ignored."""
        exp = slot.exp
        if slot.flow is not None:
            slot.flow.close()
        slot.flow, slot.exp, slot.waiting = None, None, ""
        slot.token += 1
        if exp is not None and exp.status == "running":
            if exp.description == "(proposing)":
                exp.description = "(interrupted while proposing)"
            self._finish_failure(exp, "crash", "interrupted")
            self.result.experiments.append(exp)

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
            self.base.count += 1
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
            if slot.exp is not None:
                slot.exp.details["run_pgid"] = payload
                self.session.journal.update(slot.exp)
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
            exp = slot.exp
            slot.flow = None
            if exp is not None and exp.status == "running":
                self._finish_failure(exp, "crash", "internal-error")
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
        if self.executor.needs_worktree and slot.on_disk != request.commit:
            self._reset_worktree(slot, request.commit)
        job = Job(seq=slot.exp.seq, slot=slot.index, commit=request.commit, label=request.label,
                  seed=request.seed, workdir=slot.root)
        put = self.events.put
        i = slot.index
        try:
            self.executor.submit(job, on_start=lambda pid: put((i, token, "pid", pid)),
                                 on_phase=lambda phase, info: put((i, token, "phase", (phase, info))),
                                 done=lambda m: put((i, token, "measured", m)))
        except Exception as exc:  # noqa: BLE001 - that experiment's crash, not the loop's end
            log = self.session.run_dir(job.seq) / f"{job.label}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(f"autoresearch: the {self.executor.kind} executor could not start the run: {exc}\n")
            put((i, token, "measured", Measurement(False, "executor-error", log_path=log)))

    def _ended(self, slot: _Slot, exp: Experiment | None) -> None:
        slot.flow = None
        slot.exp = None
        slot.waiting = ""
        slot.token += 1
        if exp is None:
            return
        slot.last_seq = exp.seq
        self.result.experiments.append(exp)
        if exp.reason == "interrupted":
            self._interrupt("stopped during an experiment")
            return
        if exp.status == "crash" and exp.reason in PROPOSER_REASONS:
            self.failures += 1
            message = exp.details.get("message", "")
            if exp.reason == "not-installed":
                self._stop(f"the agent is not installed: {message}", hard=True)
            elif self.failures >= self.session.config.agent.max_failures:
                self._stop(f"the proposer failed {self.failures} times in a row (last: {exp.reason}: "
                           f"{message[:300]}); see {exp.log_path}", hard=True)
        else:
            self.failures = 0
        if exp.status == "crash" and exp.reason in EXECUTOR_REASONS:
            self.executor_failures += 1
            if self.executor_failures >= self.session.config.agent.max_failures:
                self._stop(f"the {self.executor.kind} executor failed {self.executor_failures} times in a row "
                           f"(last: {exp.reason}); see {exp.log_path}", hard=True)
        elif exp.status != "crash" or exp.reason not in PROPOSER_REASONS:
            self.executor_failures = 0
        # Crash repair, per slot: a model-driven proposer gets a few tries at its own crash.
        if exp.status == "crash" and exp.reason not in PROPOSER_REASONS | EXECUTOR_REASONS and slot.model_driven \
                and "replay_of" not in exp.details:
            fixing = "fix_of" in exp.details
            if not fixing:
                slot.fixes_left = self.session.config.agent.fix_attempts
            if slot.fixes_left > 0:
                slot.fixes_left -= 1
                slot.fix = exp

    # -- one experiment, as a generator ---------------------------------------------------------

    def _proposal_flow(self, slot: _Slot, fix: Experiment | None) -> Flow:
        s, config = self.session, self.session.config
        best = self.best
        self._reset_worktree(slot, best)
        if fix is not None:
            tree = s.ws.tree_of(fix.commit_sha) if fix.parent == best else self._replay_tree(fix.commit_sha, best)
            if tree is None:
                fix = None  # the crashed change does not apply to today's best: a fresh proposal
            else:
                slot.ws.git("read-tree", "-u", "--reset", tree)  # the crashed code, for the agent to repair
                slot.on_disk = ""
        exp = self._begin(slot, "(proposing)", self.agent_name, {})
        ctx = self._context(slot, exp, best, fix)
        self.on_phase("proposing", {"seq": exp.seq, "slot": slot.index, "agent": self.agent_name,
                                    "fix": fix.seq if fix else None})
        began = time.time()
        try:
            proposal: Proposal = yield _Propose(ctx)
        except ProposerError as err:
            exp.propose_seconds = time.time() - began
            exp.description = f"({self.agent_name} failed: {err.reason})"
            exp.log_path = str(ctx.log_path)
            slot.model_driven = True
            return self._finish_failure(exp, "crash", err.reason, {"message": str(err)[:2000]})
        exp.propose_seconds = time.time() - began
        exp.tokens_in, exp.tokens_out, exp.cost_usd = proposal.tokens_in, proposal.tokens_out, proposal.cost_usd
        exp.description = " ".join(proposal.description.split())[:200] or "(no description)"
        slot.model_driven = proposal.model_driven
        if fix is not None:
            exp.details["fix_of"] = fix.seq
        s.journal.update(exp)
        self.on_phase("guarding", {"seq": exp.seq, "slot": slot.index})
        self._repair_gitfile(slot)
        problems = verify(self.lock, slot.root)
        if problems:
            return self._finish_failure(exp, "rejected", "harness-modified", {"problems": problems})
        tree = slot.ws.snapshot(best)
        changes = slot.ws.changes(self.best_tree, tree)
        violations = check_scope(changes, config, self.lock)
        if violations:
            return self._finish_failure(exp, "rejected", "out-of-scope", {"violations": violations})
        if not changes:
            return self._finish_failure(exp, "crash", "no-change")
        self._commit(exp, tree, changes)
        slot.on_disk = exp.commit_sha  # the snapshot is the tree on disk
        return (yield from self._measure_flow(slot, exp))

    def _replay_flow(self, slot: _Slot, work: _Replay) -> Flow:
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
        exp = self._begin(slot, f"replay #{original.seq}: {idea}"[:200], original.proposer,
                          {"replay_of": original.seq, "replay_origin": origin, "replay_round": work.round,
                           "replayed_commit": original.commit_sha, "idea": idea})
        original.details["replayed_as"] = exp.seq
        s.journal.update(original)
        changes = s.ws.changes(self.best_tree, tree)
        violations = check_scope(changes, s.config, self.lock)
        if violations:  # cannot happen for a change that passed the guard; checked all the same
            return self._finish_failure(exp, "rejected", "out-of-scope", {"violations": violations})
        self.on_phase("replaying", {"seq": exp.seq, "slot": slot.index, "of": original.seq})
        self._commit(exp, tree, changes)
        return (yield from self._measure_flow(slot, exp))

    def _measure_flow(self, slot: _Slot, exp: Experiment) -> Flow:
        """The shared decision flow (experiment.decide_flow), its runs done by the executor."""
        def on_phase(phase: str, info: dict) -> None:
            self.on_phase(phase, {**info, "slot": slot.index})

        flow = decide_flow(self.session.config, self.session.journal, exp,
                           is_stale=lambda: self.best != exp.parent, on_phase=on_phase)
        try:
            request = next(flow)
            while True:
                m: Measurement = yield request
                self._record_run(exp, request.role, request.commit, request.seed, m)
                request = flow.send(m)
        except StopIteration as done:
            decision: V.Verdict = done.value
        if decision.status == "stale":
            return self._stale(slot, exp)
        return self._settle(exp, decision)

    # -- merge semantics ----------------------------------------------------------------------

    def _stale(self, slot: _Slot, exp: Experiment) -> Experiment:
        """A better candidate whose parent is no longer the best: discard it, replay its diff."""
        best = self.best
        exp.details["stale"] = {"parent": exp.parent, "best": best}
        round_ = int(exp.details.get("replay_round", 0)) + 1
        if self.hard_stop:
            return self._settle(exp, V.Verdict("discard", "stale-stopped"))
        if round_ > MAX_REPLAYS:
            return self._settle(exp, V.Verdict("discard", "stale-superseded"))
        tree = self._replay_tree(exp.commit_sha, best)
        if tree is None:
            return self._settle(exp, V.Verdict("discard", "stale-conflict"))
        if tree == self.best_tree:
            return self._settle(exp, V.Verdict("discard", "stale-duplicate"))
        slot.replay = _Replay(of=exp, tree=tree, onto=best, round=round_)
        return self._settle(exp, V.Verdict("discard", "stale-replayed"))

    def _replay_tree(self, commit: str, onto: str) -> str | None:
        return replay_tree(self.session.ws, commit, onto)

    # -- bookkeeping (driver thread only) -------------------------------------------------------

    def _begin(self, slot: _Slot, description: str, proposer: str, details: dict) -> Experiment:
        """The `running` record of a new experiment on the current best, in this slot."""
        s = self.session
        repaired = self._repair_tsv()
        best_record = s.journal.best(self.tag)
        exp = s.journal.begin(self.tag, description, proposer, self.best, program_hash=self.lock.program_hash,
                              slot=slot.index, best_before=best_record.metric if best_record else None,
                              details={"executor": self.executor.kind, **details})
        if repaired:
            exp.details["results_tsv_repaired"] = True
            s.journal.update(exp)
        slot.exp = exp
        return exp

    def _repair_tsv(self) -> bool:
        """results.tsv is a view of the journal: if anyone edited it, rewrite it from the journal.
        Rows arrive in the order experiments finish, so the order is not compared."""
        s, config = self.session, self.session.config
        path = s.results_path()
        rows = [e for e in s.journal.experiments(self.tag) if e.status != "running"]
        expected = render_tsv(rows, config.metric.name, config.resource.scale).splitlines()
        actual = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []
        if actual[:1] == expected[:1] and sorted(actual[1:]) == sorted(expected[1:]):
            return False
        write_tsv(path, rows, config.metric.name, config.resource.scale)
        return True

    def _context(self, slot: _Slot, exp: Experiment, best: str, fix: Experiment | None) -> ProposeContext:
        s, config = self.session, self.session.config
        run_dir = s.run_dir(exp.seq)
        run_dir.mkdir(parents=True, exist_ok=True)
        history = [e for e in s.journal.experiments(self.tag, limit=config.agent.history + 1) if e.seq != exp.seq]
        program_path = s.root / config.task.program
        program = program_path.read_text(errors="replace") if program_path.exists() else ""
        brief = build_brief(config, program, best=s.journal.best(self.tag), best_commit=best,
                            history=history, files=config.editable_files(slot.root),
                            limits=self.base.limits_left(), fix=fix)
        brief += self._in_flight_note(slot)
        brief_path = run_dir / "brief.md"
        brief_path.write_text(brief)
        return ProposeContext(config=config, workspace=slot.ws, brief=brief, brief_path=brief_path,
                              log_path=run_dir / "agent.log", seq=exp.seq, best_commit=best,
                              best_metric=exp.best_before, history=history, fix=fix, timeout=config.agent.timeout)

    def _in_flight_note(self, slot: _Slot) -> str:
        others = [o.exp for o in self.slots if o is not slot and o.exp is not None
                  and o.exp.description not in ("", "(proposing)")]
        if not others:
            return ""
        lines = ["", "## Running in parallel right now (do not repeat these ideas)"]
        lines += [f"- seq {e.seq}: {' '.join(e.description.split())[:100]}" for e in others]
        return "\n".join(lines) + "\n"

    def _commit(self, exp: Experiment, tree: str, changes: list[Change]) -> None:
        s = self.session
        paths = [c.path for c in changes]
        exp.details["files"] = paths
        exp.lines_delta = sum(count_lines(s.ws.show_file(tree, p)) - count_lines(s.ws.show_file(exp.parent, p))
                              for p in paths)
        message = f"{exp.description.strip() or 'experiment'}\n\nautoresearch-seq: {exp.seq}\n" \
                  f"autoresearch-tag: {exp.tag}\n"
        commit = s.ws.commit_tree(tree, exp.parent, message)
        s.ws.update_ref(experiment_ref(exp.tag, exp.seq), commit)
        exp.commit_sha = commit
        s.journal.update(exp)

    def _record_run(self, exp: Experiment, role: str, commit: str, seed: int, m: Measurement) -> None:
        self.session.journal.add_run(seq=exp.seq, tag=exp.tag, role=role, commit_sha=commit, seed=seed,
                                     status="ok" if m.ok else "crash", reason=m.reason, metric=m.metric,
                                     metrics=m.metrics, seconds=m.seconds, log_path=str(m.log_path or ""))

    def _settle(self, exp: Experiment, decision: V.Verdict) -> Experiment:
        s = self.session
        exp.status, exp.reason = decision.status, decision.reason or exp.reason
        exp.details.update(decision.details)
        if exp.status == "keep":
            if self.best != exp.parent:  # pragma: no cover - _measure_flow replays these instead
                raise RuntimeError(f"seq {exp.seq}: a keep must be a child of the best {self.best[:7]}")
            s.set_best(exp.tag, exp.commit_sha)
            self.best, self.best_tree = exp.commit_sha, s.ws.tree_of(exp.commit_sha)
            # The branch moves forward and the task folder shows the new best.
            s.ws.restore(branch_name(exp.tag), exp.commit_sha, s.state.preexisting, s.run_dir(exp.seq) / "quarantine")
        elif exp.status == "crash" and not exp.log_tail and exp.log_path:
            exp.log_tail = tail_lines(Path(exp.log_path))
        return self._finish(exp)

    def _finish_failure(self, exp: Experiment, status: str, reason: str, details: dict | None = None) -> Experiment:
        exp.status, exp.reason = status, reason
        exp.details.update(details or {})
        return self._finish(exp)

    def _finish(self, exp: Experiment) -> Experiment:
        s, config = self.session, self.session.config
        exp.details.pop("run_pgid", None)
        exp.finished_at = time.time()
        s.journal.update(exp)
        append_tsv(s.results_path(), config.metric.name, exp, config.resource.scale)
        self.on_phase("done", {"seq": exp.seq, "slot": exp.slot, "experiment": exp})
        return exp


def run_parallel(session: Session, proposer: ProposerSource, limits: LoopSection, executor: Executor | None = None,
                 on_phase: PhaseCallback | None = None, on_message: Callable[[str], None] | None = None,
                 agent_name: str = "") -> LoopResult:
    """The loop over N slots. PROPOSER: a factory `slot -> Proposer` (concurrent proposals) or
    one Proposer (its calls take turns). EXECUTOR: default from the task's [executor] section."""
    return ParallelLoop(session, proposer, limits, executor, on_phase=on_phase, on_message=on_message,
                        agent_name=agent_name).run()


def stop_processes_in(folder: Path, grace: float = 3.0) -> int:
    """End the process groups of processes whose working directory lies in FOLDER (an agent
    still working in a slot's worktree after an interrupt): SIGTERM, then SIGKILL after GRACE
    unless they are gone. Linux only; never this process's own group. Returns how many groups."""
    import os

    proc = Path("/proc")
    if not proc.is_dir():
        return 0
    folder = folder.resolve()
    own = os.getpgrp()
    groups: set[int] = set()
    pids: set[int] = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            pgid = os.getpgid(int(entry.name))
        except OSError:
            continue
        if (cwd == folder or folder in cwd.parents) and pgid != own:
            groups.add(pgid)
            pids.add(int(entry.name))

    def running(pid: int) -> bool:  # a zombie is dead, it only waits for its parent
        try:
            return (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (OSError, IndexError):
            return False

    def signal_all(sig: int) -> None:
        for pgid in groups:
            try:
                os.killpg(pgid, sig)
            except OSError:
                pass

    signal_all(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    signal_all(signal.SIGKILL)
    return len(groups)


# -- replaying a change on a new best ----------------------------------------------------------

def replay_tree(ws: Workspace, commit: str, onto: str) -> str | None:
    """The tree of ONTO plus the change COMMIT made to its parent, or None when it conflicts.

    A three-way merge with the merge base as ancestor (git merge-tree, git >= 2.38); older gits
    apply the diff as a patch instead. Changes on the same or adjacent lines conflict, as in git.
    """
    out = ws.git("merge-tree", "--write-tree", "--no-messages", onto, commit, check=False).split()
    if len(out) == 1 and len(out[0]) >= 40:
        return out[0]
    if out:  # a tree with conflict markers, then the conflicted paths
        return None
    return replay_tree_by_patch(ws, commit, onto)


def replay_tree_by_patch(ws: Workspace, commit: str, onto: str) -> str | None:
    """The same as replay_tree through `git diff | git apply --cached --3way` in a scratch
    index (gits too old for --3way with --cached apply the plain patch, which is stricter)."""
    import os
    import tempfile

    from .workspace import GitError

    patch = ws.git("diff", "--binary", "--full-index", f"{commit}~1", commit)
    if not patch.strip():
        return ws.tree_of(onto)
    fd, index = tempfile.mkstemp(prefix="autoresearch-replay-index-")
    os.close(fd)
    env = {"GIT_INDEX_FILE": index}
    try:
        for mode in (["--3way"], []):
            os.unlink(index)
            ws.git("read-tree", onto, env=env)
            try:
                ws.git("apply", "--cached", *mode, "--whitespace=nowarn", env=env, input=patch)
            except GitError:
                continue
            return ws.git("write-tree", env=env).strip()
        return None
    finally:
        if os.path.exists(index):
            os.unlink(index)


# -- throughput -------------------------------------------------------------------------------

def throughput(journal: Journal, tag: str) -> dict[str, Any]:
    """Experiments per hour, in total and per slot, over the time experiments were in flight.

    Counts every finished experiment of the tag except the baseline; the clock is the union of
    the experiments' [started_at, finished_at] intervals, so pauses between runs of the loop do
    not count. `concurrency` is the mean number of experiments in flight over that time.
    """
    exps = [e for e in journal.experiments(tag)
            if e.status != "running" and not e.is_baseline and e.finished_at and e.finished_at >= e.started_at]
    if not exps:
        return {"experiments": 0, "slots": 0, "active_hours": 0.0, "per_hour": 0.0, "per_slot_per_hour": 0.0,
                "concurrency": 0.0, "by_slot": {}}
    intervals = sorted((e.started_at, float(e.finished_at)) for e in exps)  # type: ignore[arg-type]
    active = 0.0
    start, end = intervals[0]
    for lo, hi in intervals[1:]:
        if lo > end:
            active += end - start
            start, end = lo, hi
        else:
            end = max(end, hi)
    active += end - start
    busy = sum(hi - lo for lo, hi in intervals)
    hours = active / 3600.0
    by_slot: dict[int, dict[str, float]] = {}
    for e in exps:
        entry = by_slot.setdefault(e.slot, {"experiments": 0, "per_hour": 0.0, "busy_hours": 0.0})
        entry["experiments"] += 1
        entry["busy_hours"] += (float(e.finished_at) - e.started_at) / 3600.0  # type: ignore[arg-type]
    for entry in by_slot.values():
        entry["per_hour"] = entry["experiments"] / hours if hours > 0 else 0.0
    per_hour = len(exps) / hours if hours > 0 else 0.0
    return {"experiments": len(exps), "slots": len(by_slot), "active_hours": hours, "per_hour": per_hour,
            "per_slot_per_hour": per_hour / len(by_slot), "concurrency": busy / active if active > 0 else 0.0,
            "by_slot": dict(sorted(by_slot.items()))}


__all__ = ["MAX_REPLAYS", "ParallelLoop", "replay_tree", "run_parallel", "throughput"]
