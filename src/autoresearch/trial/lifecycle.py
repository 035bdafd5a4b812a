"""ONE experiment lifecycle: begin → commit (every attempt) → guard → runs → settle.

Every way an experiment happens goes through `Trial`: the native `autoresearch experiment`
(the agent edited the task folder), `baseline`, and each proposal of the loop over 1..N slots.
So the write order below exists once.

Write order (why a kill anywhere is safe)
-----------------------------------------
1. `begin`: the `running` record (seq allocated in the same SQLite transaction; a seq is never
   reused, not even after a lost journal: see `Journal.next_seq`).
2. `commit`: the candidate, exactly as proposed, becomes a commit (a child of the best) under
   `refs/autoresearch/<tag>/<seq>` — rejected attempts too — and the record names it. Nothing
   resets any files before this point.
3. Runs, each journaled as it finishes (`record_run`), in fresh exports of the commit.
4. `settle`: ONE journal transaction writes the final status and, for a keep, the best pointer.
   Then the branch moves, results.tsv is brought in line (by content hash), the record is
   stored beside the commit as a git note (so `autoresearch repair` can rebuild a lost
   journal), and old run outputs are pruned.
`branch.repair` rolls forward or back from whatever step a kill left.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from autoresearch import verdict as V
from autoresearch.errors import AutoresearchError, StateError
from autoresearch.git.workspace import branch_name, experiment_ref
from autoresearch.harness.guard import check_scope
from autoresearch.harness.load import load_words, was_busy
from autoresearch.harness.output import tail_lines
from autoresearch.harness.sandbox import resolve_kind
from autoresearch.journal.records import Experiment, NoiseRecord
from autoresearch.journal.results import sync_tsv
from autoresearch.trial.branch import current_epoch, refuse_stale_index, show_best
from autoresearch.trial.duplicate import duplicate_verdict, earlier_measurement
from autoresearch.trial.environment import check as check_environment
from autoresearch.trial.environment import current_id
from autoresearch.trial.folder import head_moved, quarantine_oversized
from autoresearch.trial.measure import journaled_run, measure_commit, run_setup
from autoresearch.trial.notes import flush_notes, write_note
from autoresearch.trial.reference import ReferenceWatch, calm_reference
from autoresearch.trial.scratch import prune_copies
from autoresearch.trial.session import Session
from autoresearch.verdict import DecisionFlow, MeasureRequest, Verdict, decide_flow, spread
from autoresearch.verdict.flow import Measurement, PhaseCallback, quiet

# Fault injection for the write-order tests: `AUTORESEARCH_KILL_AT=<step>` SIGKILLs this
# process right after that named step (see STEPS), as a power cut would.
KILL_AT = os.environ.get("AUTORESEARCH_KILL_AT", "")
STEPS = ("begun", "committed", "measured", "settled", "branch-moved", "tsv-written", "noted", "pruned",
         "folder-reset")


def checkpoint(step: str) -> None:
    if KILL_AT == step:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class ProposalInfo:
    """What the proposer reported, recorded with the experiment."""

    proposer: str = "manual"
    propose_seconds: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None


class Trial:
    """One experiment, from its `running` record to its final record."""

    def __init__(self, session: Session, exp: Experiment, on_phase: PhaseCallback = quiet) -> None:
        self.session = session
        self.exp = exp
        self.on_phase = on_phase
        self.added: list[str] = []  # paths the candidate adds to its parent (set by commit)

    # -- 1. begin ---------------------------------------------------------------------------

    @classmethod
    def begin(cls, session: Session, *, tag: str, parent: str, description: str,
              info: ProposalInfo | None = None, slot: int = 0, details: dict | None = None,
              on_phase: PhaseCallback = quiet) -> "Trial":
        refuse_stale_index(session)
        info = info or ProposalInfo()
        details = dict(details or {})
        # never a silent downgrade: whether this experiment was contained is part of its record
        details["sandbox"] = resolve_kind(session.config.sandbox.kind)[0]
        epoch = current_epoch(session, tag)
        if epoch:
            details["epoch"] = epoch
        env = current_id(session.journal, tag)  # the environment's fingerprint (trial.environment)
        if env:
            details["env"] = env
        best_record = session.journal.best(tag)
        reference = best_record.metric if best_record else None
        if best_record is not None:  # re-measured since (drift, `noise`): the fresher number is the bar
            reference = session.journal.reference(tag, best_record.commit_sha, reference)
        exp = session.journal.begin(
            tag, description, info.proposer, parent, program_hash=session.lock().program_hash, slot=slot,
            best_before=reference, is_baseline=best_record is None,
            propose_seconds=info.propose_seconds, tokens_in=info.tokens_in, tokens_out=info.tokens_out,
            cost_usd=info.cost_usd, details=details)
        checkpoint("begun")
        return cls(session, exp, on_phase)

    def proposed(self, description: str, info: ProposalInfo) -> None:
        """The proposer's answer (before the candidate is committed)."""
        exp = self.exp
        exp.description = " ".join(description.split())[:200] or "(no description)"
        exp.propose_seconds, exp.tokens_in = info.propose_seconds, info.tokens_in
        exp.tokens_out, exp.cost_usd = info.tokens_out, info.cost_usd
        self.session.journal.update(exp)

    # -- 2. commit and guard ----------------------------------------------------------------

    def commit(self, tree: str, violations: list[str] | None = None) -> Verdict | None:
        """Commit TREE as this attempt (always), then guard it. Returns the verdict when the
        attempt ends here (out of scope, no change), None when it is to be measured.
        VIOLATIONS: problems found before the tree was built (a symlink, a huge new file).
        A tree already measured in this epoch ends here too, as a `duplicate` (trial.duplicate)."""
        s, exp = self.session, self.exp
        ws = s.ws
        body = str(exp.details.get("description_full") or "")  # a clipped subject's whole text
        message = (f"{exp.description.strip() or 'experiment'}\n\n{body + chr(10) * 2 if body else ''}"
                   f"autoresearch-seq: {exp.seq}\nautoresearch-tag: {exp.tag}\n")
        commit = ws.commit_tree(tree, exp.parent, message)
        ws.update_ref(experiment_ref(exp.tag, exp.seq), commit)
        exp.commit_sha = commit
        exp.details["tree"] = tree
        changes, exp.lines_delta = ws.changes_and_lines(exp.parent, tree)
        self.added = [c.path for c in changes if c.status == "A"]
        exp.details["files"] = [c.path for c in changes]
        s.journal.update(exp)
        checkpoint("committed")
        found = list(violations or []) + check_scope(changes, s.config, s.lock())
        harness = [v for v in found if v.endswith(": harness file")]
        if harness:  # the guard's first question: did the candidate touch what measures it?
            return Verdict("rejected", "harness-modified",
                           {"problems": [v.replace(": harness file", ": changed") for v in harness],
                            "violations": found})
        if found:
            return Verdict("rejected", "out-of-scope", {"violations": found})
        if not changes and not exp.is_baseline:
            return Verdict("crash", "no-change")
        earlier = None if exp.is_baseline else earlier_measurement(s.journal, exp.tag, tree, exp.seq)
        if earlier is not None:  # measured already in this epoch: its record, no run
            return duplicate_verdict(exp, earlier)
        return None

    # -- 3. runs ----------------------------------------------------------------------------

    def flow(self, is_stale: Callable[[], bool] | None = None) -> DecisionFlow:
        """The decision flow of this experiment, each run journaled as its measurement comes back.
        Whoever drives it only makes the runs: `run_inline` here, one after another; the loop's
        driver on executor slots, between its other events (`yield from`)."""
        noise = self.session.journal.latest_noise(self.exp.tag)
        band = noise.suggested_min_delta if noise else 0.0
        flow = decide_flow(self.session.config, self.exp, band, is_stale=is_stale, on_phase=self.on_phase,
                           reference=self._reference())
        try:
            request = next(flow)
            while True:
                m = yield request
                self.record_run(request, m)
                request = flow.send(m)
        except StopIteration as done:
            return done.value

    def _reference(self) -> "V.Reference | None":
        """For `confirm = "reference"`: the parent's runs since its reference was last measured,
        and the other commits' replicate runs (their within-commit spread sharpens the sd)."""
        exp, journal = self.exp, self.session.journal
        if self.session.config.verdict.confirm != "reference" or exp.is_baseline:
            return None
        runs = journal.reference_runs(exp.tag, exp.parent)
        if not runs:
            return None  # an older journal: the flow falls back to the recorded number
        ss, df = V.spread_parts(journal.replicates(exp.tag, exclude=(exp.parent, exp.commit_sha)))
        return V.Reference(runs, ss, df)

    def record_run(self, request: MeasureRequest, m: Measurement) -> None:
        exp = self.exp
        exp.details.pop("run_pgid", None)
        self.session.journal.add_run(seq=exp.seq, tag=exp.tag, role=request.role, commit_sha=request.commit,
                                     seed=request.seed, status="ok" if m.ok else "crash", reason=m.reason,
                                     metric=m.metric, metrics=m.metrics, seconds=m.seconds,
                                     log_path=str(m.log_path or ""))
        checkpoint("measured")

    def pid_recorder(self) -> Callable[[int], None]:
        """Remember the run's process group, so a restart after a kill can end it."""
        def record(pid: int) -> None:
            self.exp.details["run_pgid"] = pid
            self.session.journal.update(self.exp)
        return record

    def run_inline(self, stop: threading.Event | None = None, slot: int = 0) -> Verdict:
        """Drive the decision flow with runs made here, one after another (native mode)."""
        flow = self.flow()
        try:
            request = next(flow)
            while True:
                request = flow.send(measure_commit(self.session, request.commit, self.exp.seq, request.seed,
                                                   request.label, slot=slot, stop=stop, on_phase=self.on_phase,
                                                   on_start=self.pid_recorder()))
        except StopIteration as done:
            return done.value

    # -- 4. settle --------------------------------------------------------------------------

    def settle(self, verdict: Verdict) -> Experiment:
        """Final status and best in one transaction; then branch, results.tsv, note, pruning."""
        s, exp = self.session, self.exp
        exp.status, exp.reason = verdict.status, verdict.reason or exp.reason
        exp.details.update(verdict.details)
        exp.details.pop("run_pgid", None)
        if exp.status in ("crash", "rejected") and not exp.log_tail and exp.log_path:
            exp.log_tail = tail_lines(Path(exp.log_path))
        exp.finished_at = time.time()
        keep = exp.status == "keep"
        s.journal.settle(exp, exp.commit_sha if keep else None)
        checkpoint("settled")
        if keep:
            s.ws.update_ref(f"refs/heads/{branch_name(exp.tag)}", exp.commit_sha)
        checkpoint("branch-moved")
        config = s.config
        if sync_tsv(s.journal, s.results_path(), exp.tag, config.metric.name, config.resource.scale, exp):
            exp.details["results_tsv_repaired"] = True
            s.journal.update(exp)
        checkpoint("tsv-written")
        write_note(s, exp)
        if s.journal.unnoted():  # others' changed records, or a kill's leftovers
            flush_notes(s)
        checkpoint("noted")
        prune_outputs(s, exp.seq)
        checkpoint("pruned")
        self.on_phase("done", {"seq": exp.seq, "slot": exp.slot, "experiment": exp})
        return exp


def prune_outputs(session: Session, seq: int) -> None:
    """Run output folders, and the copies of agent files in the quarantine, are kept for the
    best and the last `[budget] keep_outputs` experiments; older ones go (logs, records, the
    quarantine's listing and commits stay)."""
    keep = session.config.budget.keep_outputs
    old = seq - keep - 1
    if old < 1:
        return
    record = session.journal.get(seq)
    best = session.journal.best(record.tag) if record is not None else None
    if best is not None and best.seq == old:
        return
    run_dir = session.run_dir(old)
    if run_dir.is_dir():
        with os.scandir(run_dir) as entries:  # not Path.glob: it compiles a pattern per call
            outs = [e.path for e in entries if e.name.startswith("out")]
        for out in outs:
            shutil.rmtree(out, ignore_errors=True)
        pruned = session.journal.get(old)
        copies = (pruned.details.get("quarantine") or {}).get("kept") if pruned is not None else None
        if copies:
            prune_copies(run_dir / "quarantine", list(copies))


# -- the ways an experiment starts ----------------------------------------------------------------

def experiment(session: Session, description: str, *, info: ProposalInfo | None = None,
               stop: threading.Event | None = None, on_phase: PhaseCallback = quiet,
               refuse_no_change: bool = False) -> Experiment:
    """The native experiment: whatever the task folder now holds is the candidate.

    The folder is read through a temporary index (the agent may have committed, reset or
    switched branches: the candidate is simply "the tree on disk versus best"). New files over
    `[budget] max_new_file_bytes` are quarantined, never committed. After the verdict the folder
    shows the best again; anything on disk that is neither the candidate nor the best (an edit
    made while the run ran) is rescued first."""
    s = session
    tag = s.require_tag(native=True)
    changes = check_environment(s, tag, stop)  # first: a changed environment starts an epoch
    best = s.best_commit(tag)
    oversized = quarantine_oversized(s)
    tree = s.ws.snapshot(best, exclude=s.state.preexisting)
    best_tree = s.ws.tree_of(best)
    has_best = s.journal.best(tag) is not None
    extra: dict = {}
    if refuse_no_change and tree == best_tree and has_best:
        raise AutoresearchError("nothing changed since the best: edit the editable files, then run "
                                "`autoresearch experiment` again (no experiment was recorded)")
    if not has_best and tree != best_tree:
        # no best measured in this epoch (a new branch, a relock, a changed environment): the
        # candidate is never the baseline. The best is measured first, as `run` does, then the
        # candidate against it.
        what = (f"baseline: the environment changed ({'; '.join(changes)})" if changes
                else "baseline (measured before the candidate)")  # the loop's driver words it the same
        first = baseline(s, stop=stop, on_phase=on_phase, description=what)
        if first.status != "keep":
            raise StateError(f"the best did not measure ({first.status}: {first.reason}; seq {first.seq}, see "
                             f"{first.log_path or 'its record'}): fix the harness or the environment, then run "
                             "the experiment again; your edit is still in the folder")
        best = s.best_commit(tag)
        best_tree = s.ws.tree_of(best)
        extra = {"after_baseline": first.seq}
    trial = Trial.begin(s, tag=tag, parent=best, description=description, info=info, on_phase=on_phase,
                        details=extra)
    trial.on_phase("guarding", {"seq": trial.exp.seq, "description": description})
    moved = head_moved(s, best, tag)
    if moved:
        trial.exp.details["head_moved"] = moved
    verdict = trial.commit(tree, [f"{p}: new file over the size cap (quarantined)" for p in oversized])
    if verdict is None:
        verdict = trial.run_inline(stop)
    exp = trial.settle(verdict)
    kept = exp.status == "keep"
    rescued = show_best(s, tag, {tree, best_tree}, s.run_dir(exp.seq) / "quarantine",
                        best_tree=tree if kept else best_tree, adds={tree: trial.added})
    checkpoint("folder-reset")
    if exp.details.get("reference_moved") is not None:
        # the guard run beat the best's reference by far: re-measure it now (the loop's
        # ReferenceWatch does the same), so the next candidate meets a current reference
        ReferenceWatch(s, stop or threading.Event(), on_phase, lambda message: None).remeasure(
            tag, best, exp.best_before, 0)
    if rescued:
        exp.details["rescued"] = rescued
        s.journal.update(exp)
        flush_notes(s)
    if verdict.details.get("interrupted"):
        raise KeyboardInterrupt
    return exp


def baseline(session: Session, *, tag: str | None = None, stop: threading.Event | None = None,
             on_phase: PhaseCallback = quiet, description: str = "baseline") -> Experiment:
    """Measure the untouched best as the first keep of the branch (or of a new epoch: a harness
    or an environment change).

    Runs from an export of the best commit: the task folder is not touched."""
    s = session
    tag = tag or s.require_tag()
    check_environment(s, tag, stop)  # the epoch's fingerprint (a change found here starts the epoch)
    existing = s.journal.best(tag)
    if existing is not None:
        raise StateError(f"the branch already has a baseline (seq {existing.seq}); "
                         "`autoresearch noise` re-measures the best")
    run_setup(s, stop)
    best = s.best_commit(tag)
    trial = Trial.begin(s, tag=tag, parent=best, description=description, info=ProposalInfo(proposer="baseline"),
                        on_phase=on_phase)
    verdict = trial.commit(s.ws.tree_of(best))
    if verdict is None:
        verdict = trial.run_inline(stop)
    exp = trial.settle(verdict)
    if verdict.details.get("interrupted"):
        raise KeyboardInterrupt
    return exp


def measure_noise(session: Session, n: int, on_phase: PhaseCallback = quiet,
                  stop: threading.Event | None = None, on_message: Callable[[str], None] = lambda text: None) -> NoiseRecord:
    """Run the current best N times with fresh seeds (from exports: the folder is untouched)
    and store the spread. Their median becomes the best's reference, unless the machine was
    visibly busy during them (reference.calm_reference); ON_MESSAGE is told which."""
    s = session
    tag = s.require_tag()
    best = s.best_commit(tag)
    values: list[float] = []
    calm: list[float] = []
    busy: list[float] = []
    loads: list[str] = []
    first = 0
    base = 10_000_000 + s.journal.count_runs(tag) * 7
    for i in range(n):
        m, run_id = journaled_run(s, tag, best, "noise", base + i, f"noise-{int(time.time())}-{i}", stop=stop,
                                  on_phase=on_phase)
        first = first or run_id
        if not m.ok:
            raise StateError(f"noise run {i + 1} of the best crashed ({m.reason}); see {m.log_path}")
        values.append(m.metric)  # type: ignore[arg-type]
        if was_busy(m.flags):
            busy.append(m.metric)  # type: ignore[arg-type]
            loads.append(load_words(m.flags))
        else:
            calm.append(m.metric)  # type: ignore[arg-type]
    sp = spread(values)
    record = NoiseRecord(tag=tag, commit_sha=best, n=sp.n, mean=sp.mean, median=sp.median, std=sp.noise_sd,
                         mad=sp.mad, min=sp.min, max=sp.max,
                         suggested_min_delta=sp.suggested_min_delta(s.config.verdict.repeats), values=values,
                         created_at=time.time())
    s.journal.add_noise(record)
    value, said = calm_reference(calm, busy, loads)
    if said:
        on_message(said)
    if value is not None:
        s.journal.set_reference(tag, best, value, "noise", from_run=first)  # the best's bar, measured now
        on_message(f"the best's reference is now {value:.6g}: later candidates are compared with it")
    else:
        old = s.journal.reference(tag, best, None)
        on_message("the best's reference stays " + (f"{old:.6g}" if old is not None else "its own measurement"))
    return record
