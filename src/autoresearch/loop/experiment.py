"""One experiment of a slot, as a generator: a proposal (or the replay of a stale winner), the
guard, the decision flow's runs, the settle; and the brief its proposer is given.

The generator yields what it waits for, `Propose` (a proposal from the slot's proposer) or a
`MeasureRequest` (a run on the executor), and the driver (`driver.Loop`) sends the answer back
when it arrives, so the steps of one experiment read top to bottom while N of them interleave.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generator, Union

from autoresearch.config.task import CONFIG_NAME
from autoresearch.executors import Executor
from autoresearch.git.replay import replay_tree
from autoresearch.git.workspace import Workspace
from autoresearch.harness.sandbox import agent_home
from autoresearch.journal.records import Experiment
from autoresearch.loop.parallel import Replay, in_flight_note, replay_outcome
from autoresearch.loop.policy import Policy
from autoresearch.proposers import Proposal, ProposeContext, Proposer, ProposerError
from autoresearch.proposers.brief import build_brief
from autoresearch.proposers.research_log import research_log
from autoresearch.redact import scrub
from autoresearch.trial import agent_notes
from autoresearch.trial import scratch as scratch_mod
from autoresearch.trial.branch import show_best
from autoresearch.trial.lifecycle import ProposalInfo, Trial
from autoresearch.trial.session import Session
from autoresearch.verdict import MeasureRequest, Verdict
from autoresearch.verdict.flow import PhaseCallback

PREVIOUS_LOG_CHARS = 3_000  # the previous run's research log in the brief, at most


@dataclass
class Propose:
    """What a slot's experiment waits for first: a proposal made in CTX."""

    ctx: ProposeContext


Flow = Generator[Union[Propose, MeasureRequest], Any, Union[Experiment, None]]


@dataclass
class Slot:
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


class SlotExperiments:
    """The experiments of the loop's slots, as generators: a part of `driver.Loop`, whose state
    they read (the session, the tag, the best, the slots) and whose best they move on a keep."""

    session: Session
    executor: Executor
    policy: Policy
    slots: list[Slot]
    on_phase: PhaseCallback
    agent_name: str
    hard_stop: bool
    tag: str
    best: str
    best_tree: str

    def _scratch_dir(self, slot: Slot) -> Path:
        return self.session.state_dir / "slots" / str(slot.index) / "scratch"

    def _proposal_flow(self, slot: Slot, fix: Experiment | None) -> Flow:
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
        notes_file = agent_notes.seed(scratch.root, self._notes()) if getattr(slot.proposer, "writes_notes", True) \
            else ""
        ctx = self._context(slot, exp, best, fix, scratch.root, notes_file)
        self.on_phase("proposing", {"seq": exp.seq, "slot": slot.index, "agent": self.agent_name,
                                    "fix": fix.seq if fix else None})
        began = time.time()
        try:
            proposal: Proposal = yield Propose(ctx)
        except ProposerError as err:
            self._take_notes(scratch.root, notes_file)
            exp.propose_seconds = time.time() - began
            exp.tokens_in, exp.tokens_out, exp.cost_usd = err.tokens_in, err.tokens_out, err.cost_usd  # still spent
            kind = f": {err.kind}" if err.kind else ""
            exp.description = f"({self.agent_name} failed: {err.reason}{kind})"
            exp.log_path = str(ctx.log_path) if ctx.log_path.exists() else ""
            slot.model_driven = True
            # every attempt is a commit: this one holds whatever the agent had edited when it failed
            # (it may hold the idea), never measured; its other changes are quarantined as usual
            got = scratch_mod.collect(s.ws, scratch, best, config.task.editable, s.run_dir(exp.seq) / "quarantine",
                                      config.budget.max_new_file_bytes)
            trial.commit(got.tree)
            details = {"message": str(err)[:2000], **({"failure": err.kind} if err.kind else {})}
            if exp.details.get("files"):
                details["unfinished_edit"] = exp.details["files"]
            return trial.settle(Verdict("crash", err.reason, details))
        self._take_notes(scratch.root, notes_file)
        trial.proposed(proposal.description, ProposalInfo(
            proposer=self.agent_name, propose_seconds=time.time() - began, tokens_in=proposal.tokens_in,
            tokens_out=proposal.tokens_out, cost_usd=proposal.cost_usd))
        slot.model_driven = proposal.model_driven
        if proposal.body:  # the commit message's body
            exp.details["description_full"] = proposal.body
        if fix is not None:
            exp.details["fix_of"] = fix.seq
        self.on_phase("guarding", {"seq": exp.seq, "slot": slot.index})
        got = scratch_mod.collect(s.ws, scratch, best, config.task.editable, s.run_dir(exp.seq) / "quarantine",
                                  config.budget.max_new_file_bytes)
        if got.quarantined:
            exp.details["quarantined"] = got.quarantined
            exp.details["quarantine"] = got.details(config.budget.max_new_file_bytes)
        verdict = trial.commit(got.tree, got.violations)
        edits = scratch_mod.harness_edits(got, [*config.task.readonly, CONFIG_NAME, config.task.program])
        if edits and (verdict is None or verdict.reason == "no-change"):  # the attempt, not only the file, fails
            verdict = Verdict("rejected", scratch_mod.harness_edit_reason(edits), {"harness_edit": edits})
        elif verdict is not None and verdict.reason == "no-change" and got.quarantined:  # only the wrong files
            others = scratch_mod.quarantined_paths(got)
            verdict = Verdict("rejected", scratch_mod.harness_edit_reason(others, kind=scratch_mod.OUT_OF_SCOPE_EDIT),
                              {"out_of_scope": others})
        if verdict is not None:
            return trial.settle(verdict)
        return (yield from self._measure_flow(slot, trial))

    def _replay_flow(self, slot: Slot, work: Replay) -> Flow:
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

    def _measure_flow(self, slot: Slot, trial: Trial) -> Flow:
        """The shared decision flow, its runs made by the executor."""
        exp = trial.exp
        decision: Verdict = yield from trial.flow(is_stale=lambda: self.best != exp.parent)
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

    def _slot_phase(self, slot: Slot) -> PhaseCallback:
        def on_phase(phase: str, info: dict) -> None:
            self.on_phase(phase, {**info, "slot": slot.index})
        return on_phase

    def _take_notes(self, root: Path, name: str) -> None:
        """The agent's notes.md back from its folder, before the candidate is collected."""
        if not name:
            return
        notes = agent_notes.take(root, name)
        if notes is not None:
            agent_notes.store(self.session.state_dir, self.tag, notes)

    def _previous_tag(self) -> str | None:
        """The run before this one (a relaunch with an edited program.md starts a new tag)."""
        tags = self.session.journal.tags()
        return tags[tags.index(self.tag) - 1] if self.tag in tags and tags.index(self.tag) > 0 else None

    def _digest(self) -> str:
        """The research log of this run, and a shorter one of the run before it."""
        text = research_log(self.session, self.tag)
        previous = self._previous_tag()
        if previous:
            text += research_log(self.session, previous, f"## Research log of the previous run `{previous}`",
                                 PREVIOUS_LOG_CHARS)
        return text

    def _notes(self) -> str:
        """This run's notes; a new run starts from the previous run's."""
        state = self.session.state_dir
        previous = self._previous_tag()
        return agent_notes.load(state, self.tag) or (agent_notes.load(state, previous) if previous else "")

    def _context(self, slot: Slot, exp: Experiment, best: str, fix: Experiment | None, root: Path,
                 notes_file: str = "") -> ProposeContext:
        s, config = self.session, self.session.config
        run_dir = s.run_dir(exp.seq)
        run_dir.mkdir(parents=True, exist_ok=True)
        history = [e for e in s.journal.experiments(self.tag, limit=config.agent.history + 1) if e.seq != exp.seq]
        program_path = root / config.task.program
        program = program_path.read_text(errors="replace") if program_path.exists() else ""
        brief = build_brief(config, program, best=s.journal.best(self.tag), best_commit=best,
                            history=history, files=config.editable_files(root),
                            limits=self.policy.limits_left(), fix=fix, digest=self._digest(),
                            notes=self._notes(), notes_file=notes_file)
        brief += in_flight_note([o.exp for o in self.slots if o is not slot and o.exp is not None])
        brief = scrub(brief)  # it goes to a remote model
        brief_path = run_dir / "brief.md"
        brief_path.write_text(brief)
        return ProposeContext(config=config, workspace=Workspace(root), brief=brief, brief_path=brief_path,
                              log_path=run_dir / "agent.log", seq=exp.seq, best_commit=best,
                              best_metric=exp.best_before, history=history, fix=fix, timeout=config.agent.timeout,
                              task_root=s.root, agent_home=agent_home(s.root))

