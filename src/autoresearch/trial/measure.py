"""One measurement of a commit: the run phase, then the evaluate phase when the task has one.

Runs never happen in the task folder. Each run gets a fresh export of the commit under test
(exactly its tree: no untracked or ignored files, no bytecode caches, no `.git`), a fresh
output folder, and the environment contract of `harness.env.task_env`. So whatever an agent or an
earlier run left on disk, and whatever is swapped in the task folder during a run, the harness
that measures is the committed one, and the committed harness is the locked one (the guard
rejects any candidate that changes it).

The budget is the harness's to enforce, not the editable code's: a run phase whose time on the
task's clock (wall seconds, or on `clock = "cpu"` the CPU seconds of its whole process tree,
from its own cgroup) exceeds `[budget] seconds` plus the declared start-up allowance is
`rejected: over-budget`, however good its number; on the cpu clock it is stopped there.
"""

from __future__ import annotations

import math
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from autoresearch.config.task import TaskConfig
from autoresearch.errors import StateError
from autoresearch.git.workspace import clear_dir
from autoresearch.harness.env import base_env, task_env, thread_env
from autoresearch.harness.guard import read_lock, verify
from autoresearch.harness.load import TreeWatch, load_between, sample_cpu, was_busy
from autoresearch.harness.output import tail_lines
from autoresearch.harness.process import RunResult, run_command
from autoresearch.harness.sandbox import SandboxSpec, expand_path, resolve_kind
from autoresearch.harness.split import ModelProcesses, run_split
from autoresearch.trial.session import Session
from autoresearch.verdict.flow import Measurement, PhaseCallback, quiet


def _same_number(claimed: float, measured: float) -> bool:
    """Whether the run's claim is the evaluation's number. A diverged run that says nan (or inf)
    and an evaluation that says the same make no mismatch: both say the run failed (a crash)."""
    if not (math.isfinite(claimed) and math.isfinite(measured)):
        return (math.isnan(claimed) and math.isnan(measured)) or claimed == measured
    return math.isclose(claimed, measured, rel_tol=1e-3, abs_tol=1e-9)


def _sandbox_specs(session: Any, out_dir: Path,
                   env: dict[str, str]) -> tuple[SandboxSpec | None, SandboxSpec | None, SandboxSpec | None]:
    """The sandboxes of the run phase, the evaluate phase's scorer, and its model processes
    (the run's world, with the run's outputs read-only and nothing writable but a private /tmp)."""
    kind, _ = resolve_kind(session.config.sandbox.kind)
    if kind == "none":
        return None, None, None
    sb = session.config.sandbox
    eval_data = [expand_path(p, env) for p in sb.eval_data]
    train_data = [expand_path(p, env) for p in sb.train_data]
    state = session.state_dir
    run_spec = SandboxSpec(writable=[out_dir], readonly=train_data, hidden=[state, *eval_data], network=sb.network)
    eval_spec = SandboxSpec(writable=[out_dir.parent / "eval-tmp"], readonly=[out_dir, *eval_data],
                            hidden=[state], network=sb.network)
    model_spec = SandboxSpec(readonly=[out_dir, *train_data], hidden=[state, *eval_data], network=sb.network)
    return run_spec, eval_spec, model_spec


def run_env(session: Any, *, seq: int, seed: int, out_dir: Path, phase: str,
            devices: str | None = None) -> dict[str, str]:
    """The environment contract of a run (see harness.env.task_env for what else it holds)."""
    config = session.config
    extra = {
        "AUTORESEARCH_BUDGET_S": f"{config.budget.seconds:g}",
        "AUTORESEARCH_BUDGET_CLOCK": config.budget.clock,
        "AUTORESEARCH_SEQ": str(seq),
        "AUTORESEARCH_SEED": str(seed),
        "AUTORESEARCH_OUT": str(out_dir),
        "AUTORESEARCH_PHASE": phase,
    }
    if devices is not None:
        extra["CUDA_VISIBLE_DEVICES"] = devices
    home = out_dir.parent / "home"
    home.mkdir(parents=True, exist_ok=True)
    # No PYTHONPYCACHEPREFIX: the run's tree is a fresh export with no caches in it, and the
    # libraries keep their own (read-only to the run in the sandbox); see _planted_bytecode.
    env = task_env(extra, list(config.task.env), home=home, pycache_prefix=None)
    return {**env, **thread_env(env)}


def measure(session: Any, workdir: Path, seq: int, seed: int, label: str, *,
            stop: threading.Event | None = None, devices: str | None = None,
            on_phase: PhaseCallback = quiet, on_start: Callable[[int], None] | None = None) -> Measurement:
    """Run the task once in WORKDIR, which holds exactly the commit under test (an export).

    SESSION needs only config, root, state_dir and run_dir(seq): a Ray worker passes its own.
    A log that could not be written (a full disk) does not change the result; it is recorded
    in the experiment's details as `log_problem`."""
    log_problems: list[str] = []
    before, watch = sample_cpu(), TreeWatch()

    def started(pid: int) -> None:
        watch.follow(pid)
        if on_start is not None:
            on_start(pid)

    try:
        m = _measure(session, workdir, seq, seed, label, stop=stop, devices=devices, on_phase=on_phase,
                     on_start=started, log_problems=log_problems)
    finally:
        seen = watch.stop()  # never a sampling thread left behind, whatever _measure raised
    load = load_between(before, sample_cpu(), seen)
    if load is not None:  # how busy the machine was meanwhile (a reference is never made of busy runs)
        m.flags["load"] = load.to_json()
    if log_problems:
        m.flags["log_problem"] = "; ".join(log_problems)
    return m


def _measure(session: Any, workdir: Path, seq: int, seed: int, label: str, *, stop: threading.Event | None,
             devices: str | None, on_phase: PhaseCallback, on_start: Callable[[int], None] | None,
             log_problems: list[str]) -> Measurement:
    config = session.config
    run_dir = session.run_dir(seq)
    out_dir = run_dir / (f"out-{label}" if label != "run" else "out")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    env = run_env(session, seq=seq, seed=seed, out_dir=out_dir, phase="run", devices=devices)
    run_spec, eval_spec, model_spec = _sandbox_specs(session, out_dir, env)
    log_path = run_dir / f"{label}.log"
    on_phase("running", {"seq": seq, "label": label, "budget": config.budget.seconds, "started": time.time()})
    budget = config.budget
    limit = budget.seconds + budget.allowance
    result = run_command(config.task.run, cwd=workdir, env=env, timeout=budget.hard_timeout,
                         log_path=log_path, log_max_bytes=budget.log_max_bytes, sandbox=run_spec, stop=stop,
                         on_start=on_start, clock=budget.clock, cpu_limit=limit)
    if result.log_problem:
        log_problems.append(f"{log_path.name}: {result.log_problem}")
    seconds = result.seconds
    charged = result.cpu_seconds if budget.clock == "cpu" and result.cpu_seconds is not None else seconds
    if result.over_budget or (result.ok and charged > limit):
        # The editable code decides when to stop training; the harness decides what counts.
        return Measurement(False, "over-budget", rejected=True, metrics=result.metrics, seconds=seconds,
                           log_path=log_path, flags={"over_budget": {
                               "seconds": round(charged, 3), "clock": budget.clock, "budget": budget.seconds,
                               "grace": budget.allowance}})
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
    flags: dict = {}
    forged = session.lock_forgery() if tampered else ""
    if forged:  # the lock file was written by someone else (a native agent): the one in git counts
        flags["lock_forged"] = forged
        lock = read_lock(session.root)
        tampered = verify(lock, workdir) if lock else []
    if tampered:  # only possible without the sandbox, which mounts the export read-only
        return Measurement(False, "harness-modified-during-run", rejected=True, metrics=result.metrics,
                           seconds=seconds, log_path=log_path, flags={**flags, "problems": tampered})
    metrics = dict(result.metrics)
    if result.cpu_seconds is not None:  # the run's CPU share: how busy the machine was
        flags["cpu_seconds"] = round(result.cpu_seconds, 3)
        if result.clock_note:
            flags["clock_note"] = result.clock_note
    final_log = log_path
    planted = _planted_bytecode(workdir)
    if planted:  # Python writes none here (PYTHONDONTWRITEBYTECODE): the run's code made these
        flags["bytecode_removed"] = planted[:20]
    if config.task.evaluate:
        on_phase("evaluating", {"seq": seq, "label": label})
        eval_log = run_dir / f"{label}.evaluate.log"
        if eval_spec is not None:
            (out_dir.parent / "eval-tmp").mkdir(exist_ok=True)
        eval_env = {**env, "AUTORESEARCH_PHASE": "evaluate"}
        evaluation = _evaluate(config, workdir, eval_env, eval_log, eval_spec, model_spec, stop, on_start, label)
        if evaluation.log_problem:
            log_problems.append(f"{eval_log.name}: {evaluation.log_problem}")
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
        if claimed is not None and measured is not None and not _same_number(claimed, measured):
            # The run printed a number the evaluation did not confirm: shown as a claim mismatch.
            flags["run_phase_claimed"] = claimed
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


def _evaluate(config: TaskConfig, workdir: Path, env: dict[str, str], log: Path, spec: SandboxSpec | None,
              model_spec: SandboxSpec | None, stop: threading.Event | None,
              on_start: Callable[[int], None] | None, label: str) -> RunResult:
    """The evaluate phase: one command, or (with `[task] model`) the scorer and its model
    processes, each model process logging to `<label>.model-<i>.log` beside the scorer's log."""
    timeout, cap = config.budget.hard_evaluate_timeout, config.budget.log_max_bytes
    if not config.task.model:
        return run_command(config.task.evaluate, cwd=workdir, env=env, timeout=timeout, log_path=log,
                           log_max_bytes=cap, sandbox=spec, stop=stop, on_start=on_start)
    count = config.task.model_processes
    models = ModelProcesses(config.task.model, count, model_spec,
                            [log.with_name(f"{label}.model-{i}.log") for i in range(count)])
    scored, _ = run_split(config.task.evaluate, models, cwd=workdir, env=env, timeout=timeout, log_path=log,
                          log_max_bytes=cap, sandbox=spec, stop=stop, on_start=on_start)
    return scored


def _planted_bytecode(tree: Path) -> list[str]:
    """Remove bytecode caches a run left in its export (only possible without the sandbox,
    which mounts the export read-only), so the evaluate phase loads the committed sources."""
    found = []
    for folder, dirs, files in os.walk(tree):  # one pass (pathlib's rglob compiled a pattern per call)
        rel = os.path.relpath(folder, tree)
        for name in [d for d in dirs if d == "__pycache__"] + [f for f in files if f.endswith(".pyc")]:
            found.append(name if rel == "." else os.path.join(rel, name))
            clear_dir(Path(folder) / name)
        dirs[:] = [d for d in dirs if d != "__pycache__"]
    return found


def export_dir(session: Session, slot: int) -> Path:
    return session.state_dir / "slots" / str(slot) / "tree"


def measure_commit(session: Session, commit: str, seq: int, seed: int, label: str, *, slot: int = 0,
                   stop: threading.Event | None = None, devices: str | None = None,
                   on_phase: PhaseCallback = quiet, on_start: Callable[[int], None] | None = None) -> Measurement:
    """Export COMMIT into the slot's run folder and measure it there."""
    tree = export_dir(session, slot)
    clear_dir(tree)
    session.ws.export(commit, tree)
    return measure(session, tree, seq, seed, label, stop=stop, devices=devices, on_phase=on_phase,
                   on_start=on_start)


def executor_failure(session: Any, seq: int, label: str, reason: str, text: str,
                     interrupted: bool = False) -> Measurement:
    """A run that the machinery (not the experiment) failed to make: logged, and a crash."""
    log = session.run_dir(seq) / f"{label}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"autoresearch: {text}\n")
    return Measurement(False, reason, log_path=log, interrupted=interrupted)


# -- setup ----------------------------------------------------------------------------------------

SETUP_TIMEOUT_S = 6 * 3600


def setup_env(config: TaskConfig) -> dict[str, str]:
    """The environment of the task's setup: the user's own (it is harness code the user committed
    and locked, and it may need the network and the user's credentials), with the phase and budget."""
    return base_env({"AUTORESEARCH_PHASE": "setup", "AUTORESEARCH_BUDGET_S": f"{config.budget.seconds:g}"})


def setup_command(config: TaskConfig, cwd: Path, log: Path, stop: threading.Event | None = None) -> RunResult:
    """The task's setup command, run once in CWD (the task folder, or a Ray worker's unpacked tree)."""
    return run_command(config.task.setup, cwd=cwd, env=setup_env(config), timeout=SETUP_TIMEOUT_S, log_path=log,
                       stop=stop)


def run_setup(session: Session, stop: threading.Event | None = None) -> None:
    """The task's idempotent preparation (data, tokenizer), in the task folder, logged to
    .autoresearch/setup.log."""
    command = session.config.task.setup
    if not command:
        return
    log = session.state_dir / "setup.log"
    result = setup_command(session.config, session.root, log, stop)
    if result.interrupted:
        raise KeyboardInterrupt
    if not result.ok:
        raise StateError(f"the task's setup `{command}` failed ({result.failure_reason()}); see {log}:\n"
                         + tail_lines(log, 15))


def journaled_run(session: Session, tag: str, commit: str, role: str, seed: int, label: str, *, slot: int = 0,
                  stop: threading.Event | None = None, on_phase: PhaseCallback = quiet) -> tuple[Measurement, int]:
    """One run of COMMIT outside any experiment (`noise`, a reference re-measurement), journaled
    with ROLE; returns it and its run id. An interrupted run raises KeyboardInterrupt."""
    m = measure_commit(session, commit, 0, seed, label, slot=slot, stop=stop, on_phase=on_phase)
    # a run under load is journaled as `busy`: no reference, replicate or reference run counts it
    status = ("busy" if was_busy(m.flags) else "ok") if m.ok else "crash"
    run_id = session.journal.add_run(seq=None, tag=tag, role=role, commit_sha=commit, seed=seed,
                                     status=status, reason=m.reason, metric=m.metric,
                                     metrics=m.metrics, seconds=m.seconds, log_path=str(m.log_path or ""))
    if m.interrupted:
        raise KeyboardInterrupt
    return m, run_id
