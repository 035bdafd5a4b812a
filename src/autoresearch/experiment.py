"""One guarded experiment end to end: verify the harness, check the scope of the change,
commit it, run it under the budget, decide, record, then keep or reset.

Used by `autoresearch experiment` (the native loop), `baseline`, and `autoresearch run`.
The `running` record is written before anything runs, so a kill at any moment leaves a
state that `reconcile` repairs on the next start.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generator

from . import verdict as V
from .guard import Lock, check_scope, read_lock, verify, write_lock
from .harness import base_env, run_command, tail_lines
from .journal import Experiment, NoiseRecord, append_tsv, render_tsv, write_tsv
from .sandbox import SandboxSpec, expand_path, resolve_kind
from .session import Session, SessionError, default_tag
from .workspace import branch_name, count_lines, experiment_ref

PhaseCallback = Callable[[str, dict], None]


def _quiet(phase: str, info: dict) -> None:
    pass


@dataclass
class Measurement:
    """One run of a commit: the run phase, then the evaluate phase when the task has one."""

    ok: bool
    reason: str = ""  # crash or reject reason when not ok
    rejected: bool = False
    metric: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    log_path: Path | None = None
    flags: dict = field(default_factory=dict)
    interrupted: bool = False


# -- measuring ----------------------------------------------------------------------------------

def _sandbox_specs(session: Session, out_dir: Path, env: dict[str, str]) -> tuple[SandboxSpec | None, SandboxSpec | None, str]:
    kind, message = resolve_kind(session.config.sandbox.kind)
    if kind == "none":
        return None, None, message
    sb = session.config.sandbox
    eval_data = [expand_path(p, env) for p in sb.eval_data]
    train_data = [expand_path(p, env) for p in sb.train_data]
    state = session.state_dir
    run_spec = SandboxSpec(writable=[out_dir], readonly=train_data, hidden=[state, *eval_data], network=sb.network)
    eval_spec = SandboxSpec(writable=[out_dir.parent / "eval-tmp"], readonly=[out_dir, *eval_data],
                            hidden=[state], network=sb.network)
    return run_spec, eval_spec, message


def measure(session: Session, workdir: Path, seq: int, seed: int, label: str, *,
            stop: threading.Event | None = None, devices: str | None = None,
            on_phase: PhaseCallback = _quiet, on_start: Callable[[int], None] | None = None) -> Measurement:
    """Run the task once in WORKDIR (which must hold the commit under test)."""
    config = session.config
    run_dir = session.run_dir(seq)
    out_dir = run_dir / (f"out-{label}" if label != "run" else "out")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    env_extra = {
        "AUTORESEARCH_BUDGET_S": f"{config.budget.seconds:g}",
        "AUTORESEARCH_SEQ": str(seq),
        "AUTORESEARCH_SEED": str(seed),
        "AUTORESEARCH_OUT": str(out_dir),
        "AUTORESEARCH_PHASE": "run",
    }
    if devices is not None:
        env_extra["CUDA_VISIBLE_DEVICES"] = devices
    env = base_env(env_extra)
    run_spec, eval_spec, _ = _sandbox_specs(session, out_dir, env)
    log_path = run_dir / (f"{label}.log")
    on_phase("running", {"seq": seq, "label": label, "budget": config.budget.seconds, "started": time.time()})
    result = run_command(config.task.run, cwd=workdir, env=env, timeout=config.budget.hard_timeout,
                         log_path=log_path, log_max_bytes=config.budget.log_max_bytes, sandbox=run_spec, stop=stop,
                         on_start=on_start)
    seconds = result.seconds
    if not config.task.evaluate and result.texts.get("reject") and not result.timed_out:
        # Without an evaluate phase the run command is the harness (its checks live in
        # read-only files), so its `reject: <reason>` line counts.
        return Measurement(False, result.texts["reject"], rejected=True, metrics=result.metrics,
                           seconds=seconds, log_path=log_path)
    if not result.ok:
        return Measurement(False, result.failure_reason(), metrics=result.metrics, seconds=seconds,
                           log_path=log_path, interrupted=result.interrupted)
    lock = read_lock(session.root)
    tampered = verify(lock, workdir) if lock else []
    if tampered:  # only possible without the sandbox, which mounts the task read-only
        return Measurement(False, "harness-modified-during-run", rejected=True, metrics=result.metrics,
                           seconds=seconds, log_path=log_path, flags={"problems": tampered})
    metrics = dict(result.metrics)
    flags: dict = {}
    final_log = log_path
    if config.task.evaluate:
        on_phase("evaluating", {"seq": seq, "label": label})
        eval_log = run_dir / f"{label}.evaluate.log"
        if eval_spec is not None:
            (out_dir.parent / "eval-tmp").mkdir(exist_ok=True)
        eval_env = {**env, "AUTORESEARCH_PHASE": "evaluate"}
        evaluation = run_command(config.task.evaluate, cwd=workdir, env=eval_env,
                                 timeout=config.budget.hard_evaluate_timeout, log_path=eval_log,
                                 log_max_bytes=config.budget.log_max_bytes, sandbox=eval_spec, stop=stop,
                                 on_start=on_start)
        seconds += evaluation.seconds
        final_log = eval_log
        if evaluation.texts.get("reject"):
            return Measurement(False, evaluation.texts["reject"], rejected=True, metrics=evaluation.metrics,
                               seconds=seconds, log_path=eval_log)
        if not evaluation.ok:
            return Measurement(False, "evaluate-" + evaluation.failure_reason(), metrics=evaluation.metrics,
                               seconds=seconds, log_path=eval_log, interrupted=evaluation.interrupted)
        claimed = metrics.get(config.metric.name)
        measured = evaluation.metrics.get(config.metric.name)
        if claimed is not None and measured is not None and not math.isclose(claimed, measured, rel_tol=1e-3, abs_tol=1e-9):
            flags["run_phase_claimed"] = claimed  # the run printed a number the evaluation did not confirm
        # Both phases' numbers are kept (the run's resource figures, say), the evaluate phase's
        # win; the run's own claim for the ratchet metric is kept aside as run.<name>.
        for owned in (config.metric.name, config.metric.holdout):
            metrics.pop(owned, None)  # only the evaluate phase may report these
        if claimed is not None:
            metrics[f"run.{config.metric.name}"] = claimed
        metrics = {**metrics, **evaluation.metrics}
    value = metrics.get(config.metric.name)
    if value is None:
        return Measurement(False, "missing-metric", metrics=metrics, seconds=seconds, log_path=final_log, flags=flags)
    if not math.isfinite(value):
        return Measurement(False, "non-finite-metric", metrics=metrics, seconds=seconds, log_path=final_log, flags=flags)
    return Measurement(True, metric=value, metrics=metrics, seconds=seconds, log_path=final_log, flags=flags)


# -- recovery -----------------------------------------------------------------------------------

def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reconcile(session: Session, include_own: bool = False) -> list[int]:
    """Repair what a killed process left: mark its `running` records as crashes, kill its
    leftover runs, put the tree back at best. Call with the task lock held. INCLUDE_OWN also
    closes this process's own records (after an interrupt landed between two steps)."""
    repaired = []
    for exp in session.journal.running():
        if exp.pid == os.getpid() and not include_own:
            continue
        for key in ("run_pgid",):
            pgid = exp.details.get(key)
            if pgid:
                try:
                    os.killpg(int(pgid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        exp.status, exp.reason = "crash", "interrupted"
        exp.finished_at = time.time()
        exp.log_tail = tail_lines(Path(exp.log_path)) if exp.log_path else ""
        session.journal.update(exp)
        repaired.append(exp.seq)
        if exp.tag == session.state.tag or exp.tag == session.tag:
            append_tsv(session.results_path(), session.config.metric.name, exp, session.config.resource.scale)
    if repaired and session.tag and session.ws.branch_exists(session.branch):
        tag = session.tag
        best = session.best_commit(tag)
        interrupted = session.journal.get(repaired[-1])
        ws = session.ws
        on_disk = ws.snapshot(best, exclude=session.state.preexisting)
        if interrupted and interrupted.commit_sha and on_disk != ws.tree_of(interrupted.commit_sha) \
                and on_disk != ws.tree_of(best):
            # Someone edited after the kill (the native loop's agent, say): keep their files,
            # move only the branch back to best, so the next experiment measures their edit.
            ws.point_branch_at(branch_name(tag), best)
        else:
            ws.restore(branch_name(tag), best, session.state.preexisting,
                       session.state_dir / "quarantine" / f"reconcile-{int(time.time())}")
    return repaired


# -- starting a run -----------------------------------------------------------------------------

def start(session: Session, tag: str | None = None) -> str:
    """Create the run branch autoresearch/<tag> at HEAD and switch to it."""
    ws = session.ws
    tag = tag or default_tag()
    if not ws.has_commits():
        raise SessionError("the repository has no commit yet: run `autoresearch init` first")
    if ws.branch_exists(branch_name(tag)):
        raise SessionError(f"the branch {branch_name(tag)} already exists: pick a new tag (--tag) or "
                           f"`git checkout {branch_name(tag)}` to continue it")
    dirty = ws.dirty()
    if dirty:
        raise SessionError(f"uncommitted changes in {', '.join(dirty[:5])}: commit or stash them first, so the "
                           "baseline measures a known commit")
    lock = session.lock()
    problems = verify(lock, session.root)
    if problems:
        raise SessionError(f"the harness differs from the lock ({'; '.join(problems)}): run `autoresearch lock`")
    head = ws.head() or ""
    ws.create_branch(branch_name(tag), head)
    ws.switch(branch_name(tag))
    session.state.tag = tag
    session.state.preexisting = ws.untracked()
    session.save_state()
    session.set_best(tag, head)
    session.journal.set_meta(f"start:{tag}", head)
    write_tsv(session.results_path(), [], session.config.metric.name, session.config.resource.scale)
    return tag


def relock(session: Session, force: bool = False) -> Lock:
    """`lock`: hash the harness again. On a run branch, an edited program.md (the human's lever)
    is committed and becomes part of best, so agents see it; a changed read-only file or config
    on a branch with experiments would make old metrics incomparable and needs FORCE."""
    s = session
    old = read_lock(s.root)
    changed = verify(old, s.root) if old else []
    harness_changed = [c for c in changed if not c.startswith(s.config.task.program + ":")]
    if harness_changed and not force and s.tag and s.journal.experiments(s.tag, limit=1):
        raise SessionError(f"the harness changed ({'; '.join(harness_changed)}) on a branch with experiments, so old "
                           "metrics would not compare: start a new tag (`autoresearch start --tag NEW`) or pass --force")
    s.acquire("lock")
    edited = [c.split(":")[0] for c in changed if c.endswith(": changed")]
    if edited and s.tag and s.ws.branch_exists(s.branch):
        s.set_best(s.tag, s.ws.commit_paths(edited, f"autoresearch: lock ({', '.join(edited)} changed)"))
    return write_lock(s.config)


# -- one experiment -----------------------------------------------------------------------------

@dataclass
class ProposalInfo:
    """What the proposer reported, recorded with the experiment."""

    proposer: str = "manual"
    propose_seconds: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None


class Experimenter:
    """Runs guarded experiments in one task (the main work tree)."""

    def __init__(self, session: Session, on_phase: PhaseCallback = _quiet,
                 stop: threading.Event | None = None) -> None:
        self.session = session
        self.on_phase = on_phase
        self.stop = stop

    @property
    def config(self):  # noqa: ANN201 - the TaskConfig
        return self.session.config

    def begin(self, description: str, info: ProposalInfo) -> Experiment:
        s = self.session
        tag = s.require_tag()
        best = s.best_commit(tag)
        lock = s.lock()
        exp = s.journal.begin(tag, description, info.proposer, best, program_hash=lock.program_hash,
                              propose_seconds=info.propose_seconds, tokens_in=info.tokens_in,
                              tokens_out=info.tokens_out, cost_usd=info.cost_usd)
        best_record = s.journal.best(tag)
        if self._repair_tsv(tag, exp.seq):
            exp.details["results_tsv_repaired"] = True
        exp.is_baseline = best_record is None
        exp.best_before = best_record.metric if best_record else None
        s.journal.update(exp)
        return exp

    def _tsv_signature(self) -> str:
        path = self.session.results_path()
        try:
            st = path.stat()
        except FileNotFoundError:
            return "missing"
        return f"{st.st_size}:{st.st_mtime_ns}"

    def _repair_tsv(self, tag: str, current: int) -> bool:
        """results.tsv is a view of the journal: if anyone edited it, rewrite it from the journal.

        The file's size and mtime after our own last write are remembered, so the full
        comparison (which reads the whole journal) runs only when something else touched it."""
        s, config = self.session, self.config
        if s.journal.get_meta(f"tsv:{tag}") == self._tsv_signature():
            return False
        rows = [e for e in s.journal.experiments(tag) if e.seq != current]
        expected = render_tsv(rows, config.metric.name, config.resource.scale)
        path = s.results_path()
        actual = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        repaired = actual != expected
        if repaired:
            write_tsv(path, rows, config.metric.name, config.resource.scale)
        s.journal.set_meta(f"tsv:{tag}", self._tsv_signature())
        return repaired

    def record_failure(self, exp: Experiment, status: str, reason: str, details: dict | None = None) -> Experiment:
        """Record an experiment that never ran (a proposer failure, a rejected change), tree at best."""
        exp.status, exp.reason = status, reason
        exp.details.update(details or {})
        self._restore(exp)
        return self._finish(exp)

    def run(self, description: str, info: ProposalInfo | None = None, exp: Experiment | None = None) -> Experiment:
        """The guarded experiment on whatever the working tree now holds."""
        s = self.session
        config = self.config
        info = info or ProposalInfo()
        exp = exp or self.begin(description, info)
        tag, best = exp.tag, exp.parent
        self.on_phase("guarding", {"seq": exp.seq, "description": description})
        problems = verify(s.lock(), s.root)
        if problems:
            return self.record_failure(exp, "rejected", "harness-modified", {"problems": problems})
        moved = self._head_moved(best, tag)
        if moved:
            exp.details["head_moved"] = moved
        tree = s.ws.snapshot(best, exclude=s.state.preexisting)
        changes = s.ws.changes(best, tree)  # diff-tree takes the commit for its tree
        violations = check_scope(changes, config, s.lock())
        if violations:
            return self.record_failure(exp, "rejected", "out-of-scope", {"violations": violations})
        if not changes and not exp.is_baseline:
            return self.record_failure(exp, "crash", "no-change")
        exp.details["files"] = [c.path for c in changes]
        if config.verdict.simplicity:
            exp.lines_delta = self._lines_delta(best, tree, [c.path for c in changes])
        message = f"{description.strip() or 'experiment'}\n\nautoresearch-seq: {exp.seq}\nautoresearch-tag: {tag}\n"
        commit = s.ws.commit_tree(tree, best, message)
        s.ws.point_branch_at(branch_name(tag), commit, also={experiment_ref(tag, exp.seq): commit},
                             on_branch="branch" not in moved)
        exp.commit_sha = commit
        s.journal.update(exp)
        return self._measure_and_decide(exp)

    # -- internals ------------------------------------------------------------------------

    def _head_moved(self, best: str, tag: str) -> dict:
        ws = self.session.ws
        head, branch = ws.head(), ws.current_branch()
        moved = {}
        if branch != branch_name(tag):
            moved["branch"] = branch or "(detached)"
        if head != best:
            moved["head"] = head or ""
        return moved

    def _lines_delta(self, best: str, tree: str, paths: list[str]) -> int:
        ws = self.session.ws
        delta = 0
        for path in paths:
            delta += count_lines(ws.show_file(tree, path)) - count_lines(ws.show_file(best, path))
        return delta

    def _pid_recorder(self, exp: Experiment) -> Callable[[int], None]:
        """Remember the run's process group, so a restart after a kill can end it."""
        def record(pid: int) -> None:
            exp.details["run_pgid"] = pid
            self.session.journal.update(exp)
        return record

    def _record_run(self, exp: Experiment, role: str, commit: str, seed: int, m: Measurement) -> None:
        self.session.journal.add_run(seq=exp.seq, tag=exp.tag, role=role, commit_sha=commit, seed=seed,
                                     status="ok" if m.ok else "crash", reason=m.reason, metric=m.metric,
                                     metrics=m.metrics, seconds=m.seconds, log_path=str(m.log_path or ""))

    def _measure_and_decide(self, exp: Experiment) -> Experiment:
        """Drive the decision flow with runs in the task folder (best's files checked out for
        the best's confirmation runs, then the candidate's again)."""
        s = self.session
        flow = decide_flow(self.config, s.journal, exp, on_phase=self.on_phase)
        try:
            request = next(flow)
            while True:
                if request.commit != exp.commit_sha:
                    self._checkout_files(request.commit)
                try:
                    m = measure(s, s.root, exp.seq, request.seed, request.label, stop=self.stop,
                                on_phase=self.on_phase, on_start=self._pid_recorder(exp))
                finally:
                    if request.commit != exp.commit_sha:
                        self._checkout_files(exp.commit_sha)
                self._record_run(exp, request.role, request.commit, request.seed, m)
                request = flow.send(m)
        except StopIteration as done:
            decision: V.Verdict = done.value
        result = self._settle(exp, decision)
        if decision.details.get("interrupted"):
            raise KeyboardInterrupt
        return result

    def _checkout_files(self, commit: str) -> None:
        self.session.ws.git("read-tree", "-u", "--reset", commit)

    def _settle(self, exp: Experiment, decision: V.Verdict) -> Experiment:
        s = self.session
        exp.status, exp.reason = decision.status, decision.reason or exp.reason
        exp.details.update(decision.details)
        if exp.status == "keep":
            s.set_best(exp.tag, exp.commit_sha)
            s.ws.restore(branch_name(exp.tag), exp.commit_sha, s.state.preexisting,
                         s.run_dir(exp.seq) / "quarantine")
        else:
            self._restore(exp)
        if exp.status != "keep" and not exp.log_tail and exp.status == "crash":
            exp.log_tail = tail_lines(Path(exp.log_path)) if exp.log_path else ""
        return self._finish(exp)

    def _restore(self, exp: Experiment) -> None:
        s = self.session
        moved = s.ws.restore(branch_name(exp.tag), exp.parent, s.state.preexisting, s.run_dir(exp.seq) / "quarantine")
        if moved:
            exp.details["quarantined"] = moved

    def _finish(self, exp: Experiment) -> Experiment:
        s = self.session
        exp.finished_at = time.time()
        if self._repair_tsv(exp.tag, exp.seq):  # edited while this experiment ran
            exp.details["results_tsv_repaired"] = True
        s.journal.update(exp)
        append_tsv(s.results_path(), self.config.metric.name, exp, self.config.resource.scale)
        s.journal.set_meta(f"tsv:{exp.tag}", self._tsv_signature())
        self.on_phase("done", {"seq": exp.seq, "experiment": exp})
        return exp


# -- the decision flow, shared by the sequential and the parallel loop ---------------------------

@dataclass(frozen=True)
class MeasureRequest:
    """One run the decision needs: COMMIT's files, a log LABEL, a SEED, and whose run it is."""

    commit: str
    label: str
    seed: int
    role: str = "candidate"  # or "best" (a confirmation run of the parent)


DecisionFlow = Generator[MeasureRequest, Measurement, V.Verdict]


def _run_seed(exp: Experiment, index: int) -> int:
    return exp.seq * 1000 + index


def decide_flow(config, journal, exp: Experiment, *, is_stale: Callable[[], bool] | None = None,  # noqa: ANN001
                on_phase: PhaseCallback = _quiet) -> DecisionFlow:
    """The verdict of a committed candidate, as a generator: it yields the runs it needs and
    receives their Measurements, so the sequential loop can run them in place and the parallel
    loop on its executor. Fills in exp's metric fields and returns the Verdict to settle.

    A failed screening run returns crash/rejected (details: interrupted). IS_STALE, when given,
    is asked before a keep: True returns Verdict("stale") so the caller can replay the change."""
    policy = config.verdict
    values: list[float] = []
    total = 0.0
    last: Measurement | None = None
    for i in range(policy.repeats):
        m = yield MeasureRequest(exp.commit_sha, "run" if i == 0 else f"repeat-{i}", _run_seed(exp, i))
        total += m.seconds
        exp.log_path = str(m.log_path or "")
        exp.details.update(m.flags)
        if not m.ok:
            exp.run_seconds, exp.metrics, exp.log_tail = total, m.metrics, tail_lines(m.log_path)
            return V.Verdict("rejected" if m.rejected else "crash", m.reason,
                             {"interrupted": True} if m.interrupted else {})
        values.append(m.metric)  # type: ignore[arg-type]
        last = m
    assert last is not None
    exp.run_seconds = total
    exp.metrics = dict(last.metrics)
    exp.metric = V.median(values)
    if len(values) > 1:
        exp.details["repeats"] = values
    exp.holdout = exp.metrics.get(config.metric.holdout) if config.metric.holdout else None
    if config.resource.name:
        exp.resource = exp.metrics.get(config.resource.name)
    broken = V.constraint_violations(exp.metrics, config.metric.constraints)
    if broken:
        exp.details["constraints"] = broken
        return V.Verdict("discard", "constraint")
    noise = journal.latest_noise(exp.tag)
    band = noise.suggested_min_delta if noise else 0.0
    decision = V.screen(exp.metric, exp.best_before, policy, config.maximize, exp.lines_delta or 0, band)
    exp.details.update(decision.details)
    if decision.status == "keep" and is_stale is not None and is_stale():
        return V.Verdict("stale")
    if decision.status == "keep" and not exp.is_baseline and policy.confirm == "paired":
        decision = yield from _confirm_flow(config, exp, decision, on_phase)
        if decision.status == "keep" and is_stale is not None and is_stale():
            return V.Verdict("stale")
    return decision


def _confirm_flow(config, exp: Experiment, screened: V.Verdict, on_phase: PhaseCallback) -> DecisionFlow:  # noqa: ANN001
    """Paired ABBA re-runs of the parent (best) and the candidate until the test decides."""
    policy = config.verdict
    needed = V.threshold(exp.best_before or 0.0, policy)
    if screened.reason == "simpler":
        needed = -max(needed, screened.details.get("band", 0.0))  # not worse beyond the band
    runs: dict[str, list[float]] = {"best": [], "candidate": []}
    outcome = None
    on_phase("confirming", {"seq": exp.seq})
    for i, role in enumerate(V.abba_roles(2 * max(V.MIN_PAIRS, policy.max_runs // 2))):
        commit = exp.parent if role == "best" else exp.commit_sha
        # fresh seeds: a lucky seed cannot carry a keep
        m = yield MeasureRequest(commit, f"confirm-{i}-{role}", _run_seed(exp, 100 + i), role)
        if not m.ok:
            exp.details["confirm"] = {"failed_run": i, "role": role, "reason": m.reason}
            if m.interrupted:
                return V.Verdict("crash", "interrupted", {"interrupted": True})
            if role == "candidate":
                return V.Verdict("crash", "flaky-" + m.reason)
            return V.Verdict("discard", "unconfirmed", {"best_crashed": m.reason})
        runs[role].append(m.metric)  # type: ignore[arg-type]
        if len(runs["best"]) == len(runs["candidate"]):
            outcome = V.paired_decision(runs["best"], runs["candidate"], policy, config.maximize, needed)
            if outcome.decision != "continue":
                break
    assert outcome is not None
    exp.details["confirm"] = {"pairs": outcome.pairs, "mean_improvement": outcome.mean_improvement,
                              "bound": outcome.bound, "alpha": outcome.alpha, "test": policy.test,
                              "best_runs": runs["best"], "candidate_runs": runs["candidate"]}
    if len(set(runs["candidate"])) == 1 and len(set(runs["best"])) > 1:
        # The best varies with AUTORESEARCH_SEED and the candidate does not: it pinned its
        # own (lucky) seed, and its advantage is that draw, not the change.
        return V.Verdict("discard", "ignores-seed")
    if outcome.decision == "better":
        exp.metric = V.median(runs["candidate"] + [exp.metric])  # type: ignore[list-item]
        return V.Verdict("keep", screened.reason)
    return V.Verdict("discard", "unconfirmed")


# -- noise --------------------------------------------------------------------------------------

def measure_noise(session: Session, n: int, on_phase: PhaseCallback = _quiet,
                  stop: threading.Event | None = None) -> NoiseRecord:
    """Run the current best N times with fresh seeds and store the spread."""
    tag = session.require_tag()
    best = session.best_commit(tag)
    session.ws.restore(branch_name(tag), best, session.state.preexisting, None)
    values: list[float] = []
    base = 10_000_000 + session.journal.count_runs(tag) * 7
    seq = 0  # noise runs belong to no experiment; their logs go to runs/noise-N
    for i in range(n):
        label = f"noise-{int(time.time())}-{i}"
        m = measure(session, session.root, seq, base + i, label, stop=stop, on_phase=on_phase)
        session.journal.add_run(seq=None, tag=tag, role="noise", commit_sha=best, seed=base + i,
                                status="ok" if m.ok else "crash", reason=m.reason, metric=m.metric,
                                metrics=m.metrics, seconds=m.seconds, log_path=str(m.log_path or ""))
        if m.interrupted:
            raise KeyboardInterrupt
        if not m.ok:
            raise SessionError(f"noise run {i + 1} of the best crashed ({m.reason}); see {m.log_path}")
        values.append(m.metric)  # type: ignore[arg-type]
    session.ws.restore(branch_name(tag), best, session.state.preexisting, None)
    sp = V.spread(values)
    record = NoiseRecord(tag=tag, commit_sha=best, n=sp.n, mean=sp.mean, median=sp.median, std=sp.std, mad=sp.mad,
                         min=sp.min, max=sp.max, suggested_min_delta=sp.suggested_min_delta(), values=values,
                         created_at=time.time())
    session.journal.add_noise(record)
    return record


# -- setup and baseline -------------------------------------------------------------------------

def run_setup(session: Session, stop: threading.Event | None = None) -> None:
    """The task's idempotent preparation (data, tokenizer), logged to .autoresearch/setup.log."""
    command = session.config.task.setup
    if not command:
        return
    log = session.state_dir / "setup.log"
    env = base_env({"AUTORESEARCH_PHASE": "setup", "AUTORESEARCH_BUDGET_S": f"{session.config.budget.seconds:g}"})
    result = run_command(command, cwd=session.root, env=env, timeout=6 * 3600, log_path=log, stop=stop)
    if result.interrupted:
        raise KeyboardInterrupt
    if not result.ok:
        raise SessionError(f"the task's setup `{command}` failed ({result.failure_reason()}); see {log}:\n"
                           + tail_lines(log, 15))


def baseline(experimenter: Experimenter) -> Experiment:
    """Run the untouched best as the branch's first experiment (its first keep)."""
    s = experimenter.session
    tag = s.require_tag()
    existing = s.journal.best(tag)
    if existing is not None:
        raise SessionError(f"the branch already has a baseline (seq {existing.seq}); "
                           "`autoresearch noise` re-measures the best")
    run_setup(s, experimenter.stop)
    s.ws.restore(branch_name(tag), s.best_commit(tag), s.state.preexisting, s.state_dir / "quarantine" / "baseline")
    return experimenter.run("baseline", ProposalInfo(proposer="baseline"))
