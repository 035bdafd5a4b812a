"""The command layer: arguments in, calls into the library, short output back.

Exit codes: 0 success (an experiment that ran: keep or discard), 1 a problem with the task's
state or the run (message on stderr), 2 a broken config or bad arguments, 3 an experiment that
crashed, 4 an experiment that was rejected, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .guard import read_lock, verify
from .journal import Experiment, render_tsv, write_tsv
from .scaffold import ScaffoldError, init_from_flags, init_from_template, list_templates
from .session import Session, SessionError
from .task import ConfigError, find_root, load_config

EXIT_CRASH, EXIT_REJECTED, EXIT_INTERRUPTED = 3, 4, 130

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[red]error:[/red] {escape(message)}", markup=True, soft_wrap=True)
    sys.exit(code)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's user-facing errors into a message and an exit code."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            fail(str(exc), 2)
        except (SessionError, ScaffoldError) as exc:
            fail(str(exc), 1)
        except KeyboardInterrupt:
            err_console.print("interrupted: what ran is recorded and the tree is back at best")
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


def open_session(path: str = ".") -> Session:
    return Session(load_config(find_root(path)))


def warn_unsandboxed(session: Session) -> None:
    """Say once per command when runs will not be sandboxed (bubblewrap missing or unusable)."""
    from .sandbox import resolve_kind

    _, hint = resolve_kind(session.config.sandbox.kind)
    if hint:
        err_console.print(f"[yellow]warning:[/yellow] {escape(hint)}")


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def experiment_lines(exp: Experiment, metric_name: str) -> tuple[str, str]:
    """The two short lines an agent reads after an experiment."""
    delta = exp.delta()
    if exp.status in ("keep", "discard") and exp.metric is not None:
        against = "" if delta is None else f" ({delta:+.6f} vs best {exp.best_before:.6f})"
        first = f"{exp.status}: {metric_name} {exp.metric:.6f}{against}"
    else:
        first = f"{exp.status}: {exp.reason}"
    reason = f" [{exp.reason}]" if exp.status in ("keep", "discard") and exp.reason not in ("improved", "not-better", "") else ""
    first += f"{reason} | seq {exp.seq} commit {exp.short_commit or '-'}"
    return first, f"log: {exp.log_path or '-'}"


def exit_code_for(exp: Experiment) -> int:
    return {"crash": EXIT_CRASH, "rejected": EXIT_REJECTED}.get(exp.status, 0)


def print_experiment(exp: Experiment, metric_name: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(exp.to_json(), default=str))
    else:
        for line in experiment_lines(exp, metric_name):
            click.echo(line)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="autoresearch")
def cli() -> None:
    """Autonomous research loops on any code: an agent edits, a frozen harness measures,
    git keeps what improved."""


# -- setting up ---------------------------------------------------------------------------------

@cli.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--template", "-t", help="Copy this template (see `autoresearch templates`).")
@click.option("--editable", "-e", multiple=True, help="Without a template: a glob the agent may change (repeatable).")
@click.option("--readonly", "-r", multiple=True, help="Without a template: a harness file to lock (repeatable).")
@click.option("--run", "run_cmd", help="Without a template: the command that prints the metric.")
@click.option("--evaluate", "evaluate_cmd", default="", help="Optional harness-owned evaluate command.")
@click.option("--metric", "-m", help="Without a template: the metric's name, as printed `name: value`.")
@click.option("--goal", type=click.Choice(["minimize", "maximize"]), default="minimize", show_default=True)
@click.option("--budget", type=float, default=300.0, show_default=True, help="Seconds per experiment.")
@click.option("--name", default="", help="Task name (default: the folder's name).")
@guarded
def init(directory: Path, template: str | None, editable: tuple[str, ...], readonly: tuple[str, ...],
         run_cmd: str | None, evaluate_cmd: str, metric: str | None, goal: str, budget: float, name: str) -> None:
    """Create a task: from a template, or in an existing project from flags."""
    if template:
        written = init_from_template(directory, template)
        click.echo(f"initialized {directory} from template {template!r} ({len(written)} files), committed and locked")
        click.echo(f"next: cd {directory} && autoresearch start && autoresearch baseline")
        return
    missing = [flag for flag, value in (("--editable", editable), ("--run", run_cmd), ("--metric", metric)) if not value]
    if missing:
        fail(f"without --template, init needs {', '.join(missing)} (or pick a template: autoresearch templates)", 2)
    value = init_from_flags(directory, editable=list(editable), readonly=list(readonly), run=run_cmd or "",
                            metric=metric or "", goal=goal, budget=budget, evaluate=evaluate_cmd, name=name)
    click.echo(f"the check run printed {metric}: {value:g}; wrote autoresearch.toml and program.md, committed and locked")
    click.echo("next: autoresearch start && autoresearch baseline")


@cli.command()
def templates() -> None:
    """List the templates `init --template` can copy."""
    for t in list_templates():
        click.echo(f"{t.name:10s} {t.description}")


@cli.command()
@click.option("--force", is_flag=True, help="Also accept changed read-only files or config on a branch with history.")
@guarded
def lock(force: bool) -> None:
    """Hash the harness (read-only files, autoresearch.toml, program.md) into .autoresearch/lock.json.

    On a run branch, a changed program.md is committed so the agent sees it; a changed harness
    or config would make old metrics incomparable and needs --force (or a new tag)."""
    from .experiment import relock

    with open_session() as s:
        new = relock(s, force)
        click.echo(f"locked {len(new.files)} files ({', '.join(sorted(new.files))}); program {new.program_hash}")


@cli.command(name="verify")
@guarded
def verify_cmd() -> None:
    """Check the harness files against the lock."""
    with open_session() as s:
        problems = verify(s.lock(), s.root)
        if problems:
            for p in problems:
                click.echo(p)
            sys.exit(1)
        click.echo(f"ok: {len(s.lock().files)} locked files unchanged")


@cli.command(name="start")
@click.option("--tag", help="Run tag; the branch is autoresearch/<tag> (default: today, e.g. nov27).")
@guarded
def start_cmd(tag: str | None) -> None:
    """Create the run branch autoresearch/<tag> at HEAD and switch to it."""
    from .experiment import start

    with open_session() as s:
        s.acquire("start")
        tag = start(s, tag)
        click.echo(f"on branch autoresearch/{tag}; next: autoresearch baseline")


# -- experimenting ------------------------------------------------------------------------------

@cli.command(name="baseline")
@click.option("--json", "as_json", is_flag=True)
@guarded
def baseline_cmd(as_json: bool) -> None:
    """Run the task's setup, then the untouched best: the branch's first keep."""
    from .experiment import Experimenter, baseline, reconcile

    with open_session() as s:
        s.acquire("baseline")
        warn_unsandboxed(s)
        reconcile(s)
        exp = baseline(Experimenter(s))
        print_experiment(exp, s.config.metric.name, as_json)
        sys.exit(exit_code_for(exp))


@cli.command(name="experiment")
@click.option("-m", "--message", "description", required=True, help="What this experiment tries.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of two lines.")
@guarded
def experiment_cmd(description: str, as_json: bool) -> None:
    """Guard, commit, run, measure, decide, record; then keep or reset to best."""
    from .experiment import Experimenter, reconcile

    with open_session() as s:
        s.acquire("experiment")
        warn_unsandboxed(s)
        reconcile(s)
        exp = Experimenter(s).run(description)
        print_experiment(exp, s.config.metric.name, as_json)
        sys.exit(exit_code_for(exp))


@cli.command(name="noise")
@click.option("-n", "runs", type=int, default=5, show_default=True, help="How many runs of the best.")
@guarded
def noise_cmd(runs: int) -> None:
    """Run the current best N times; store and show the spread and a suggested min_delta."""
    from .experiment import measure_noise, reconcile

    if runs < 2:
        fail("-n must be at least 2", 2)
    with open_session() as s:
        s.acquire("noise")
        warn_unsandboxed(s)
        reconcile(s)
        rec = measure_noise(s, runs)
        click.echo(f"{s.config.metric.name} over {rec.n} runs of {rec.commit_sha[:7]}: median {rec.median:.6f}, "
                   f"std {rec.std:.6f}, MAD {rec.mad:.6f}, min {rec.min:.6f}, max {rec.max:.6f}")
        click.echo(f"suggested: [verdict] min_delta = {rec.suggested_min_delta:.6g}")


# -- looking ------------------------------------------------------------------------------------

@cli.command()
@click.option("--tsv", is_flag=True, help="Print results.tsv regenerated from the journal.")
@click.option("--write", is_flag=True, help="Rewrite results.tsv from the journal.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--tag", help="Another run tag than the current one.")
@guarded
def results(tsv: bool, write: bool, as_json: bool, tag: str | None) -> None:
    """The experiments of the current run tag."""
    with open_session() as s:
        tag = tag or s.tag
        exps = [e for e in s.journal.experiments(tag)] if tag else []
        if write:
            write_tsv(s.results_path(), exps, s.config.metric.name, s.config.resource.scale)
        if tsv:
            click.echo(render_tsv(exps, s.config.metric.name, s.config.resource.scale), nl=False)
        elif as_json:
            click.echo(json.dumps([e.to_json() for e in exps], default=str))
        else:
            table = Table(title=f"autoresearch/{tag}" if tag else "no run yet")
            for col in ("seq", "commit", s.config.metric.name, "delta", "status", "reason", "description"):
                table.add_column(col, justify="right" if col in ("seq", "delta") else "left")
            styles = {"keep": "green", "discard": "dim", "crash": "red", "rejected": "magenta", "running": "yellow"}
            for e in exps:
                d = e.delta()
                table.add_row(str(e.seq), e.short_commit, fmt(e.metric), "" if d is None else f"{d:+.6f}",
                              e.status, e.reason, e.description, style=styles.get(e.status))
            console.print(table)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@guarded
def status(as_json: bool) -> None:
    """Branch, best, last experiment, lock state, noise."""
    from .parallel import throughput

    with open_session() as s:
        tag = s.tag
        lock_state = "not locked"
        lk = read_lock(s.root)
        if lk:
            problems = verify(lk, s.root)
            lock_state = "ok" if not problems else "CHANGED: " + "; ".join(problems)
        info: dict[str, Any] = {"task": s.config.task.name, "root": str(s.root), "tag": tag or None,
                                "branch": s.ws.current_branch(), "lock": lock_state}
        if tag and s.ws.branch_exists(s.branch):
            best = s.journal.best(tag)
            last = s.journal.last(tag)
            noise = s.journal.latest_noise(tag)
            info.update({
                "best": best.to_json() if best else None,
                "best_commit": s.best_commit(tag),
                "last": last.to_json() if last else None,
                "counts": s.journal.counts(tag),
                "throughput": throughput(s.journal, tag),
                "noise": None if noise is None else {k: getattr(noise, k) for k in
                                                      ("n", "median", "std", "mad", "min", "max", "suggested_min_delta")},
            })
        if as_json:
            click.echo(json.dumps(info, default=str))
            return
        click.echo(f"task     {info['task']} ({info['root']})")
        click.echo(f"branch   {info['branch'] or '(detached)'}   tag {tag or '-'}")
        click.echo(f"lock     {lock_state}")
        if "counts" in info:
            best, last, counts = info["best"], info["last"], info["counts"]
            metric = s.config.metric.name
            click.echo(f"best     {fmt(best['metric']) if best else '-'} {metric} at {info['best_commit'][:7]}"
                       + (f" (seq {best['seq']})" if best else " (no baseline yet: autoresearch baseline)"))
            if last:
                click.echo(f"last     seq {last['seq']} {last['status']} {last['reason']}: {last['description']}")
            click.echo("counts   " + ", ".join(f"{k} {v}" for k, v in counts.items()))
            tp = info["throughput"]
            if tp.get("experiments"):
                click.echo(f"speed    {tp['per_hour']:.1f} experiments/hour over {tp['slots']} slot(s) "
                           f"({tp['per_slot_per_hour']:.1f} per slot)")
            if info["noise"]:
                n = info["noise"]
                click.echo(f"noise    std {n['std']:.6g}, MAD {n['mad']:.6g} over {n['n']} runs; "
                           f"suggested min_delta {n['suggested_min_delta']:.6g}")


# -- the loop -----------------------------------------------------------------------------------

def _loop_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--agent", "-a", help="claude | codex | aider | gemini | opencode | api | tune | "
                     "command:'<cmd with {brief_file}>' (default: [agent] kind)."),
        click.option("--model", help="Model for the agent or API."),
        click.option("--base-url", help="API base URL (OpenAI-compatible servers: vLLM, Ollama, llama.cpp)."),
        click.option("--provider", type=click.Choice(["openai", "anthropic"]), help="API wire format."),
        click.option("--max-experiments", "-n", type=int, help="Stop after this many experiments."),
        click.option("--hours", type=float, help="Stop after this many hours."),
        click.option("--target", type=float, help="Stop when the best reaches this value."),
        click.option("--plateau", type=int, help="Stop after this many experiments without a keep."),
        click.option("--quiet", "-q", is_flag=True, help="Plain lines instead of the live view."),
        click.option("--slots", type=int, help="Experiments in flight at once ([executor] slots)."),
    ]):
        fn = option(fn)
    return fn


def _loop_config(config, agent, model, base_url, provider, max_experiments, hours, target, plateau, slots=None):  # noqa: ANN001, ANN202
    from .task import with_overrides

    if slots is not None and slots < 1:
        fail("--slots must be at least 1", 2)
    config = with_overrides(config, "executor", slots=slots)
    config = with_overrides(config, "agent", kind=agent, model=model, base_url=base_url, provider=provider)
    return with_overrides(config, "loop", max_experiments=max_experiments, hours=hours, target=target,
                          plateau=plateau)


def _view(quiet: bool, session: Session):  # noqa: ANN202 - a LiveView or PlainView context manager
    from .report.live import LiveView, PlainView

    if quiet or not sys.stdout.isatty():
        return PlainView(session)
    return LiveView(session)


def _write_outputs(session: Session) -> list[Path]:
    """progress.png and report.html next to results.tsv, written when a loop stops."""
    written = []
    try:
        from .report.plot import write_plot

        written.append(write_plot(session, session.root / "progress.png"))
    except Exception as exc:  # noqa: BLE001 - a plot must never turn a finished night into an error
        err_console.print(f"could not write progress.png: {exc}")
    try:
        from .report.html import write_report

        written.append(write_report(session, session.root / "report.html"))
    except Exception as exc:  # noqa: BLE001
        err_console.print(f"could not write report.html: {exc}")
    return written


def run_loop_cli(session: Session, quiet: bool) -> "LoopResult":  # noqa: F821
    from .loop import Loop
    from .proposers.base import ProposerError, get_proposer

    config = session.config
    warn_unsandboxed(session)
    try:
        proposer = get_proposer(config, config.agent.kind)
    except ProposerError as exc:
        fail(str(exc), 1)
    view = _view(quiet, session)

    def message(text: str) -> None:
        click.echo(text, err=True)

    agent_name = config.agent.kind.partition(":")[0]
    with view as live:
        if config.executor.slots > 1 or config.executor.kind == "ray":
            from .executors import make_executor
            from .parallel import run_parallel

            # one proposer per slot, so the slots propose at the same time
            result = run_parallel(session, lambda slot: get_proposer(config, config.agent.kind), config.loop,
                                  make_executor(config.executor), on_phase=live.on_phase, on_message=message,
                                  agent_name=agent_name)
        else:
            result = Loop(session, proposer, config.loop, on_phase=live.on_phase, agent_name=agent_name,
                          on_message=message).run()
    click.echo(f"stopped: {result.stopped_because} ({len(result.experiments)} experiments, {result.keeps} keeps)")
    for path in _write_outputs(session):
        click.echo(f"wrote {path}")
    return result


@cli.command(name="run")
@_loop_options
@guarded
def run_cmd(agent, model, base_url, provider, max_experiments, hours, target, plateau, quiet, slots) -> None:  # noqa: ANN001
    """The autonomous loop: propose, experiment, keep or reset, repeat until a stop condition."""
    root = find_root(".")
    config = _loop_config(load_config(root), agent, model, base_url, provider, max_experiments, hours, target, plateau,
                          slots)
    with Session(config) as s:
        result = run_loop_cli(s, quiet)
        if result.stopped_because == "interrupted":
            sys.exit(EXIT_INTERRUPTED)
        if result.stopped_because.startswith(("the proposer failed", "the agent is not installed", "the baseline failed")):
            sys.exit(1)


@cli.command(name="stop")
@click.option("--now", is_flag=True, help="Interrupt the current experiment too (it is recorded as interrupted).")
@guarded
def stop_cmd(now: bool) -> None:
    """Ask a running `autoresearch run` in this task to stop (after the current experiment)."""
    from .loop import request_stop

    with open_session() as s:
        request_stop(s, now)
        click.echo("stop requested: the loop stops " + ("now" if now else "after the current experiment"))


def _quickstart_template() -> str:
    names = {t.name for t in list_templates()}
    try:
        import torch  # noqa: F401
    except ImportError:
        return "example"
    return "tinylm" if "tinylm" in names else "example"


@cli.command()
@click.argument("directory", default="autoresearch-quickstart", type=click.Path(file_okay=False, path_type=Path))
@click.option("--template", "-t", help="Template to use (default: tinylm when torch is installed, else example).")
@click.option("--experiments", "-n", type=int, default=5, show_default=True, help="Experiments after the baseline.")
@click.option("--budget", type=float, help="Override the template's seconds per experiment.")
@click.option("--quiet", "-q", is_flag=True)
@guarded
def quickstart(directory: Path, template: str | None, experiments: int, budget: float | None, quiet: bool) -> None:
    """The demo: scaffold a task, run its baseline and a few experiments with the built-in
    optimizer (no network, no keys), then show the results, the plot and the report."""
    from .task import with_overrides

    template = template or _quickstart_template()
    if not (directory / "autoresearch.toml").exists():
        init_from_template(directory, template)
        click.echo(f"scaffolded {directory} from template {template!r}")
    config = load_config(directory)
    config = with_overrides(config, "agent", kind="tune")
    config = with_overrides(config, "loop", max_experiments=experiments, hours=0.0, plateau=0)
    if budget:
        config = with_overrides(config, "budget", seconds=budget)
    with Session(config) as s:
        result = run_loop_cli(s, quiet)
        exps = s.journal.experiments(s.tag)
        table = Table(title=f"{config.task.name}: autoresearch/{s.tag}")
        for col in ("seq", "commit", config.metric.name, "status", "description"):
            table.add_column(col)
        for e in exps:
            table.add_row(str(e.seq), e.short_commit, fmt(e.metric), e.status, e.description)
        console.print(table)
        best = s.journal.best(s.tag)
        base = next((e for e in exps if e.is_baseline and e.status == "keep"), None)
        if best and base and best.metric is not None and base.metric is not None:
            click.echo(f"baseline {base.metric:.6f} -> best {best.metric:.6f} ({best.metric - base.metric:+.6f})")
        click.echo(f"task folder: {s.root}  (results.tsv, progress.png, report.html; "
                   f"continue with: cd {directory} && autoresearch run --agent tune)")
        if result.stopped_because == "interrupted":
            sys.exit(EXIT_INTERRUPTED)


from .report.commands import register as _register_report_commands  # noqa: E402

_register_report_commands(cli)


def main() -> None:
    cli(standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main()
