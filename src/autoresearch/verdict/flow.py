"""The decision flow of one committed candidate, as a generator.

It yields each run it needs (`MeasureRequest`: which commit, which seed, whose run) and receives
that run's `Measurement`; it returns the `Verdict`. The trial that drives it decides where runs
happen (in-process for a native experiment, on an executor slot in the loop), so there is one
decision procedure for every way an experiment is run.

Steps: the screening run(s) (`repeats`), constraints, the screen against the best with the
noise band, then on an apparent win either paired ABBA confirmation runs of the parent and the
candidate with fresh seeds until the paired test is decisive (`confirm = "paired"`), or runs
of the candidate, and of the best where its reference is the thinner side, against the best's
reference runs, with a guard run of the best before a keep and the new best's own reference
runs after one (`confirm = "reference"`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator

from autoresearch.config.task import TaskConfig
from autoresearch.journal.records import Experiment
from autoresearch.verdict.estimate import paired_estimate, two_sample_estimate
from autoresearch.verdict.paired import MIN_PAIRS, abba_roles, paired_decision
from autoresearch.verdict.reference import Reference, pooled, reference_arm, reference_decision, reference_moved
from autoresearch.verdict.stats import Verdict, constraint_violations, fmean, median, screen, threshold

# What the trial tells whoever watches (a view, the loop's driver): `on_phase(phase, info)`, with
# phases "proposing", "guarding", "running", "evaluating", "confirming", "done" (see report/live.py).
PhaseCallback = Callable[[str, dict], None]
BASELINE_RUNS = 3  # runs of the baseline when apparent wins are confirmed (confirm != "none")


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


@dataclass(frozen=True)
class MeasureRequest:
    """One run the decision needs: COMMIT's files, a log LABEL, a SEED, and whose run it is."""

    commit: str
    label: str
    seed: int
    role: str = "candidate"  # or "best" (a confirmation run of the parent)


DecisionFlow = Generator[MeasureRequest, Measurement, Verdict]


def quiet(phase: str, info: dict) -> None:
    """The PhaseCallback of nobody watching."""


def run_seed(seq: int, index: int) -> int:
    """Seeds are a function of the experiment and the run's index: reproducible, never shared."""
    return seq * 1000 + index


def decide_flow(config: TaskConfig, exp: Experiment, band: float = 0.0, *,
                is_stale: Callable[[], bool] | None = None, on_phase: PhaseCallback = quiet,
                reference: Reference | None = None) -> DecisionFlow:
    """The verdict of a committed candidate. Fills in exp's metric fields and returns the Verdict.

    BAND is the noise band (the last `noise` measurement's suggestion, 0 without one). A failed
    screening run returns crash/rejected (details: interrupted when it was). IS_STALE, when
    given, is asked before a keep: True returns Verdict("stale") so the caller can replay.
    REFERENCE: the best's reference runs, for `confirm = "reference"`."""
    policy = config.verdict
    values: list[float] = []
    total = 0.0
    last: Measurement | None = None
    # The baseline is measured as carefully as the candidates it is compared with: under a
    # confirming policy an apparent win gets several runs, so the first best gets BASELINE_RUNS
    # (their spread is also the noise drift detection needs when nobody ran `noise`).
    careful = policy.reference_runs if policy.confirm == "reference" else BASELINE_RUNS
    screening = max(policy.repeats, careful) if exp.is_baseline and policy.confirm != "none" else policy.repeats
    for i in range(screening):
        m = yield MeasureRequest(exp.commit_sha, "run" if i == 0 else f"repeat-{i}", run_seed(exp.seq, i))
        total += m.seconds
        exp.log_path = str(m.log_path or "")
        exp.details.update(m.flags)
        if not m.ok:
            exp.run_seconds, exp.metrics = total, m.metrics
            return Verdict("rejected" if m.rejected else "crash", m.reason,
                             {"interrupted": True} if m.interrupted else {})
        values.append(m.metric)  # type: ignore[arg-type]
        last = m
    assert last is not None
    exp.run_seconds = total
    exp.metrics = dict(last.metrics)
    exp.metric = median(values)
    if len(values) > 1:
        exp.details["repeats"] = values
    exp.holdout = exp.metrics.get(config.metric.holdout) if config.metric.holdout else None
    if config.resource.name:
        exp.resource = exp.metrics.get(config.resource.name)
    broken = constraint_violations(exp.metrics, config.metric.constraints)
    if broken:
        exp.details["constraints"] = broken
        return Verdict("discard", "constraint")
    bar = exp.best_before
    if policy.confirm == "reference" and reference is not None and reference.runs and not exp.is_baseline:
        # The screen asks the test's own question: better than the reference's mean? The best's
        # recorded metric is the median of the runs that made it pass (chosen by the stopping
        # rule, so better than its truth); the reference also holds the runs of it made since.
        bar = fmean(reference.runs)
        exp.details["screen_bar"] = bar
    decision = screen(exp.metric, bar, policy, config.maximize, exp.lines_delta or 0, band)
    exp.details.update(decision.details)
    if decision.status == "keep" and is_stale is not None and is_stale():
        return Verdict("stale")
    if decision.status == "keep" and not exp.is_baseline and policy.confirm in ("paired", "reference"):
        if policy.confirm == "paired":
            decision = yield from _confirm_flow(config, exp, decision, on_phase)
        else:
            ref = reference or Reference([exp.best_before if exp.best_before is not None else exp.metric])
            decision = yield from _reference_flow(config, exp, decision, values, ref, on_phase)
        if decision.status == "keep" and is_stale is not None and is_stale():
            return Verdict("stale")
    return decision


def _progress(seq: int, done: int, total: int, best: list[float], cand: list[float], maximize: bool,
              paired: bool) -> dict[str, Any]:
    """A "confirming" event after each confirmation run: how far (DONE of at most TOTAL runs) and
    what the runs say so far (the means, and the difference candidate - best in the metric's
    units with its interval), for a line per run in a pipe and a progress bar in the live view."""
    info: dict[str, Any] = {"seq": seq, "run": done, "of": total, "paired": paired}
    if best and cand:
        est = paired_estimate(best, cand, maximize) if paired else two_sample_estimate(best, cand, maximize)
        info.update(best=fmean(best), candidate=fmean(cand), diff=est.value if maximize else -est.value,
                    half=est.half)
    return info


def _failed(m: "Measurement", role: str) -> Verdict:
    """The verdict when a confirmation run fails: the candidate's failure is its own (flaky)."""
    if m.interrupted:
        return Verdict("crash", "interrupted", {"interrupted": True})
    if role == "candidate":
        return Verdict("crash", "flaky-" + m.reason)
    return Verdict("discard", "unconfirmed", {"best_crashed": m.reason})


def _reference_flow(config: TaskConfig, exp: Experiment, screened: Verdict, screening: list[float],
                    reference: Reference, on_phase: PhaseCallback) -> DecisionFlow:
    """`confirm = "reference"`: the test of the candidate's runs against the best's reference runs,
    re-running whichever side makes the comparison sharper (reference_arm: the side with fewer
    runs) until it decides. The best's runs made here are journaled runs of the best, so they
    join its reference for every later candidate: the reference grows where a candidate needs it
    and is reused after. Before a keep, at least one fresh run of the best (the guard: the first
    one) checks that the reference did not go stale in the candidate's favour (a faster machine).
    After a keep the candidate is run up to `reference_runs` times: its confirmation runs were
    chosen by the stopping rule (they are the runs that made it pass, better than its truth), and
    fresh runs dilute that bias before they become its reference as the new best.

    Reusing the best's runs across candidates selects them a little: a candidate is dropped more
    often when the best's runs came out good, and those runs stay. That makes the reference look
    better than its truth, so keeps get rarer, never easier (benchmarks/false_keeps.py measures
    the false keeps through this very flow)."""
    policy, maximize = config.verdict, config.maximize
    needed = threshold(exp.best_before or 0.0, policy)
    if screened.reason == "simpler":
        needed = -max(needed, screened.details.get("band", 0.0))  # not worse beyond the band
    cand = list(screening)
    fresh: list[float] = []  # this experiment's runs of the best
    on_phase("confirming", {"seq": exp.seq})
    info: dict[str, Any] = {"test": "reference", "reference_runs": list(reference.runs)}
    exp.details["confirm"] = info
    outcome = reference_decision(reference, cand, policy, maximize, needed)
    while outcome.decision == "continue" or (outcome.decision == "better" and not fresh):
        # a keep waits for the guard; otherwise the side whose run sharpens the test more
        if outcome.decision == "better" or reference_arm(len(cand), len(reference.runs)) == "best":
            m = yield MeasureRequest(exp.parent, f"confirm-{len(fresh)}-best", run_seed(exp.seq, 300 + len(fresh)), "best")
            if not m.ok:
                info.update(failed_run=len(cand) + len(fresh), role="best", reason=m.reason)
                return _failed(m, "best")
            if not fresh:
                # The guard: the first fresh run of the best. It joins the reference like any
                # run of the best, unless it beat the reference by far, which says the reference is
                # stale (a faster machine): then nothing is kept and the best is re-measured.
                info["guard"] = m.metric
                if reference_moved(reference, m.metric, pooled(reference, cand), maximize):  # type: ignore[arg-type]
                    exp.details["reference_moved"] = m.metric
                    return Verdict("discard", "unconfirmed")
            fresh.append(m.metric)  # type: ignore[arg-type]
            reference = Reference([*reference.runs, m.metric], reference.other_ss, reference.other_df)  # type: ignore[list-item]
        else:
            m = yield MeasureRequest(exp.commit_sha, f"confirm-{len(cand)}-candidate", run_seed(exp.seq, 100 + len(cand)))
            if not m.ok:
                info.update(failed_run=len(cand) + len(fresh), role="candidate", reason=m.reason)
                return _failed(m, "candidate")
            cand.append(m.metric)  # type: ignore[arg-type]
        on_phase("confirming", _progress(exp.seq, len(cand) + len(fresh) - len(screening), 2 * policy.max_runs,
                                         reference.runs, cand, maximize, paired=False))
        outcome = reference_decision(reference, cand, policy, maximize, needed)
    info.update(decision=outcome.decision, runs=len(cand), best_runs=fresh, mean_improvement=outcome.mean_improvement,
                bound=outcome.bound,
                alpha=outcome.alpha, candidate_runs=list(cand))
    if outcome.decision != "better":
        return Verdict("discard", "unconfirmed")
    while len(cand) < policy.reference_runs:  # the new best's reference (see the docstring)
        m = yield MeasureRequest(exp.commit_sha, f"reference-{len(cand)}", run_seed(exp.seq, 200 + len(cand)))
        if not m.ok:
            info.update(failed_run=len(cand) + len(fresh), role="candidate", reason=m.reason)
            return _failed(m, "candidate")
        cand.append(m.metric)  # type: ignore[arg-type]
    info["candidate_runs"] = list(cand)
    if len(set(cand)) == 1 and len(set(reference.runs)) > 1:
        return Verdict("discard", "ignores-seed")  # the same number for every seed: it pinned its own
    exp.metric = median(cand)
    return Verdict("keep", screened.reason)


def _confirm_flow(config: TaskConfig, exp: Experiment, screened: Verdict,
                  on_phase: PhaseCallback) -> DecisionFlow:
    """Paired ABBA re-runs of the parent (best) and the candidate until the test decides."""
    policy = config.verdict
    needed = threshold(exp.best_before or 0.0, policy)
    if screened.reason == "simpler":
        needed = -max(needed, screened.details.get("band", 0.0))  # not worse beyond the band
    runs: dict[str, list[float]] = {"best": [], "candidate": []}
    outcome = None
    on_phase("confirming", {"seq": exp.seq})
    # The sequential test is valid at every look, so max_runs caps it as written (a quickstart's
    # short cap); the bootstrap and the sign test need MIN_PAIRS pairs before they may decide.
    sequential = policy.test == "sequential" or policy.confirm == "sequential"
    most_pairs = max(1, policy.max_runs // 2) if sequential else max(MIN_PAIRS, policy.max_runs // 2)
    roles = abba_roles(2 * most_pairs)
    for i, role in enumerate(roles):
        commit = exp.parent if role == "best" else exp.commit_sha
        # fresh seeds: a lucky seed cannot carry a keep
        m = yield MeasureRequest(commit, f"confirm-{i}-{role}", run_seed(exp.seq, 100 + i), role)
        if not m.ok:
            exp.details["confirm"] = {"failed_run": i, "role": role, "reason": m.reason}
            return _failed(m, role)
        runs[role].append(m.metric)  # type: ignore[arg-type]
        pairs = min(len(runs["best"]), len(runs["candidate"]))
        on_phase("confirming", _progress(exp.seq, i + 1, len(roles), runs["best"][:pairs], runs["candidate"][:pairs],
                                         config.maximize, paired=True))
        if len(runs["best"]) == len(runs["candidate"]):
            outcome = paired_decision(runs["best"], runs["candidate"], policy, config.maximize, needed)
            if outcome.decision != "continue":
                break
    assert outcome is not None
    confirm: dict[str, Any] = {"decision": outcome.decision, "capped": outcome.capped, "pairs": outcome.pairs,
                               "mean_improvement": outcome.mean_improvement,
                               "bound": outcome.bound, "alpha": outcome.alpha, "test": policy.test,
                               "best_runs": runs["best"], "candidate_runs": runs["candidate"]}
    exp.details["confirm"] = confirm
    if len(set(runs["candidate"])) == 1 and len(set(runs["best"])) > 1:
        # The best varies with AUTORESEARCH_SEED and the candidate does not: it pinned its
        # own (lucky) seed, and its advantage is that draw, not the change.
        return Verdict("discard", "ignores-seed")
    if outcome.decision == "better":
        exp.metric = median(runs["candidate"] + [exp.metric])  # type: ignore[list-item]
        return Verdict("keep", screened.reason)
    return Verdict("discard", "unconfirmed")
