"""The autonomous loop: run, stop, quickstart."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import click
from rich.table import Table

from autoresearch.cli._common import (
    EXIT_INTERRUPTED,
    consoles,
    fail,
    fmt,
    guarded,
    open_session,
    refuse_inside_proposal,
    warn_unsandboxed,
)
from autoresearch.cli._pace import Pace, clock_text
from autoresearch.config.task import check_limits, find_root, load_config, with_overrides
from autoresearch.executors import make_executor
from autoresearch.loop.driver import LoopResult, run_loop
from autoresearch.loop.policy import request_stop
from autoresearch.proposers import get_proposer
from autoresearch.report.gains import headline_lines, session_gain, stated_gain
from autoresearch.report.html import write_report
from autoresearch.report.live import LiveView, PlainView
from autoresearch.report.plot import write_plot
from autoresearch.report.totals import totals
from autoresearch.scaffold import init_from_template, list_templates, missing_extras
from autoresearch.trial.session import Session


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

    if slots is not None and slots < 1:
        fail("--slots: must be at least 1", 2)
    config = with_overrides(config, "executor", slots=slots)
    config = with_overrides(config, "agent", kind=agent, model=model, base_url=base_url, provider=provider)
    config = with_overrides(config, "loop", max_experiments=max_experiments, hours=hours, target=target,
                            plateau=plateau)
    check_limits(config.loop, "the loop's limits (--max-experiments / --hours / --target / --plateau, or [loop]):")
    return config


def _view(quiet: bool, session: Session):  # noqa: ANN202 - a LiveView or PlainView context manager

    if quiet or not sys.stdout.isatty():
        return PlainView(session)
    return LiveView(session)


def _write_outputs(session: Session) -> list[Path]:
    """progress.png and report.html next to results.tsv, written when a loop stops."""
    written = []
    try:
        written.append(write_plot(session, session.root / "progress.png"))
    except Exception as exc:  # noqa: BLE001 - a plot must never turn a finished night into an error
        click.echo(f"could not write progress.png: {exc}")
    try:
        written.append(write_report(session, session.root / "report.html"))
    except Exception as exc:  # noqa: BLE001
        click.echo(f"could not write report.html: {exc}")
    return written


def run_loop_cli(session: Session, quiet: bool, tap: Callable[[str, dict], None] | None = None) -> LoopResult:
    """The loop with its view; TAP also hears every phase event (the quickstart's clock)."""
    config = session.config
    warn_unsandboxed(session)
    first = get_proposer(config, config.agent.kind)  # a bad --agent fails here, before any branch work
    check = getattr(first, "check", None)
    if check is not None:
        check(session)  # e.g. tune: are there knobs at all?
    executor = make_executor(config.executor)
    view = _view(quiet, session)

    def message(text: str) -> None:
        click.echo(text, err=True)

    def proposer_for(slot: int):  # noqa: ANN202 - one proposer per slot: the slots propose at once
        return first if slot == 0 else get_proposer(config, config.agent.kind)

    agent_name = config.agent.kind.partition(":")[0]
    with view as live:
        on_phase = live.on_phase
        if tap is not None:
            def on_phase(phase: str, info: dict) -> None:
                tap(phase, info)
                live.on_phase(phase, info)
        result = run_loop(session, proposer_for, config.loop, executor, on_phase=on_phase,
                          on_message=message, agent_name=agent_name)
    n, keeps = len(result.experiments), result.keeps
    baseline = sum(1 for e in result.experiments if e.is_baseline)
    # one count everywhere: experiments include a baseline run this time; keeps never count it
    click.echo(f"stopped: {result.stopped_because} ({n} experiments{' incl. the baseline' if baseline else ''}, "
               f"{keeps} keep{'s' if keeps != 1 else ''} beyond the baseline; agent: {totals(result.experiments).line()})")
    for path in _write_outputs(session):
        click.echo(f"wrote {path}")
    return result


@click.command(name="run")
@_loop_options
@guarded
def run_cmd(agent, model, base_url, provider, max_experiments, hours, target, plateau, quiet, slots) -> None:  # noqa: ANN001
    """The autonomous loop: propose, experiment, keep or reset, repeat until a stop condition."""
    refuse_inside_proposal("run")
    root = find_root(".")
    config = _loop_config(load_config(root), agent, model, base_url, provider, max_experiments, hours, target, plateau,
                          slots)
    with Session(config) as s:
        result = run_loop_cli(s, quiet)
        if result.stopped_because == "interrupted":
            sys.exit(EXIT_INTERRUPTED)
        if result.stopped_because.startswith(("the proposer failed", "the agent is not installed", "the agent cannot authenticate",
                                               "the baseline failed")):
            sys.exit(1)


@click.command(name="stop")
@click.option("--now", is_flag=True, help="Interrupt the current experiment too (it is recorded as interrupted).")
@guarded
def stop_cmd(now: bool) -> None:
    """Ask a running `autoresearch run` in this task to stop (after the current experiment)."""
    with open_session() as s:
        if not request_stop(s, now):
            fail("no loop is running in this task: nothing to stop")
        click.echo("stop requested: the loop stops " + ("now" if now else "after the current experiment"))


def _undecided(e: Any) -> bool:
    """An experiment stopped before its test decided: its confirmation ran out of runs (the
    test still said `continue`, or said not-better only because of the run cap) or it was
    interrupted."""
    if e.reason == "interrupted":
        return True
    confirm = e.details.get("confirm") if isinstance(e.details, dict) else None
    return (e.reason == "unconfirmed" and isinstance(confirm, dict)
            and (confirm.get("decision") == "continue" or bool(confirm.get("capped"))))


def _honest_summary(exps: list, confirm: str) -> str:
    """One plain sentence: which gains were confirmed (and how, by the task's CONFIRM policy),
    which looked like gains in one run but were noise, and which were left undecided."""
    confirmed = confirm != "none"
    how = "re-runs against the best's reference runs" if confirm == "reference" else "paired re-runs beside the best"
    keeps = [e for e in exps if e.status == "keep" and not e.is_baseline]
    undecided = [e for e in exps if _undecided(e)]
    noise = [e for e in exps if e.reason == "unconfirmed" and e not in undecided]
    if not any(not e.is_baseline for e in exps):
        said = "no experiment beyond the baseline ran in the time (each run took longer than the demo allows)"
    elif not keeps:
        said = "no change beat the baseline"
    elif confirmed:
        said = f"{len(keeps)} gain{'s' if len(keeps) != 1 else ''} confirmed by {how}"
    else:
        said = (f"{len(keeps)} keep{'s' if len(keeps) != 1 else ''} from single runs, NOT confirmed "
                "(this task's [verdict] confirm = \"none\"; `autoresearch noise` shows how large its noise is)")
    if noise:
        said += f"; {len(noise)} apparent gain{'s' if len(noise) != 1 else ''} turned out to be noise"
    if undecided:
        said += (f"; {len(undecided)} UNDECIDED (seq {', '.join(str(e.seq) for e in undecided)}: the demo's "
                 "time or run cap ended the test before it could tell; neither a gain nor noise)")
    return said + "."


QUICKSTART_MINUTES = 10.0
QUICKSTART_BUDGETS = {"tinylm": 20.0}  # per template, per run, on its clock: a few experiments in ten minutes
QUICKSTART_MAX_RUNS = 8  # confirmation runs per candidate: room for 4 pairs under a paired test (3 left a real
# 5 % gain at a Bayes factor of 8: undecided); tinylm's reference test kept that gain in 6 runs
QUICKSTART_SOFT = 0.8  # past this share of the time no new experiment starts (earlier when runs are slow)
QUICKSTART_WIND_DOWN_S = 45.0  # the last seconds: the run in flight stopped, plot, report and summary


def _quickstart_template() -> str:
    names = {t.name for t in list_templates()}
    missing = missing_extras("tinylm")
    if missing or "tinylm" not in names:
        click.echo(f"using the `example` template: tinylm needs {', '.join(missing) or 'its files'} "
                   "(pip install 'autoresearch[llm]')", err=True)
        return "example"
    return "tinylm"


@click.command()
@click.argument("directory", default="autoresearch-quickstart", type=click.Path(file_okay=False, path_type=Path))
@click.option("--template", "-t", help="Template to use (default: tinylm when torch is installed, else example).")
@click.option("--experiments", "-n", type=click.IntRange(min=1), default=5, show_default=True,
              help="Experiments after the baseline (at least 1: the demo stops on its own; `run` is the open loop).")
@click.option("--budget", type=float, help="Seconds per run, written into the new task's autoresearch.toml "
              "(tinylm: 20 in the quickstart, against its own 60), so later commands measure the same way.")
@click.option("--minutes", type=click.FloatRange(min=1), default=QUICKSTART_MINUTES, show_default=True,
              help="The whole demo's time, setup included: no experiment starts in its last part, and one "
              "still running at the end is stopped and reported as undecided.")
@click.option("--quiet", "-q", is_flag=True)
@guarded
def quickstart(directory: Path, template: str | None, experiments: int, budget: float | None, minutes: float,
               quiet: bool) -> None:
    """The demo: scaffold a task, run its baseline and a few experiments with the built-in
    optimizer (no network, no keys), then show the results, the plot and the report. It ends
    within --minutes whatever it finds, printing what it does at least once a minute."""
    started = time.monotonic()
    template = template or _quickstart_template()
    if not (directory / "autoresearch.toml").exists():
        # the demo's shorter budget goes into the copy's own config, committed and locked with it:
        # `noise`, `compare` and a later `run` then measure what the demo's claims were made on
        budget = budget or QUICKSTART_BUDGETS.get(template)
        init_from_template(directory, template, budget=budget)
        click.echo(f"scaffolded {directory} from template {template!r}")
        config = load_config(directory)
        if budget:
            click.echo(f"quickstart: {budget:g} {config.budget.clock} seconds per run, written into its "
                       f"autoresearch.toml (the template's own budget is longer), so the demo ends within "
                       f"{minutes:g} minutes")
    else:
        config = load_config(directory)
        if budget is not None and budget != config.budget.seconds:
            fail(f"--budget {budget:g}: {directory} exists with [budget] seconds = {config.budget.seconds:g}, and its "
                 "results were measured on that budget; edit [budget] seconds in its autoresearch.toml (the next "
                 "experiment then starts a new epoch) or give the quickstart a new folder", 2)
    config = with_overrides(config, "agent", kind="tune")
    config = with_overrides(config, "loop", max_experiments=experiments, hours=0.0, plateau=0)
    if config.verdict.confirm != "none" and config.verdict.max_runs > QUICKSTART_MAX_RUNS:
        click.echo(f"quickstart: at most {QUICKSTART_MAX_RUNS} confirmation runs per candidate (the task's own "
                   f"cap is {config.verdict.max_runs}); a candidate the test cannot decide in them is reported "
                   "as undecided")
        config = with_overrides(config, "verdict", max_runs=QUICKSTART_MAX_RUNS)
    total = 60 * minutes
    with Session(config) as s:
        pace = Pace(s, started, soft_s=QUICKSTART_SOFT * total, hard_s=total - min(QUICKSTART_WIND_DOWN_S, 0.15 * total),
                    echo=click.echo, beat=quiet or not sys.stdout.isatty())
        with pace:
            result = run_loop_cli(s, quiet, tap=pace.tap)
        exps = s.journal.experiments(s.tag)
        table = Table(title=f"{config.task.name}: autoresearch/{s.tag}")
        for col in ("seq", "commit", config.metric.name, "status", "description"):
            table.add_column(col)
        for e in exps:
            table.add_row(str(e.seq), e.short_commit, fmt(e.metric), "undecided" if _undecided(e) else e.status,
                          e.description)
        consoles.out.print(table)
        # the session's gain from the evidence (the keeps' confirmations, or a `compare`), as
        # status and review state it, never the best against a bar that may be stale
        stated = stated_gain(exps, config.maximize, s.journal.comparisons(s.tag))
        for line in headline_lines(session_gain(exps, config.maximize), stated, label="gain"):
            click.echo(line)
        click.echo(_honest_summary(exps, config.verdict.confirm))
        click.echo(f"task folder: {s.root}  (results.tsv, progress.png, report.html; "
                   f"continue with: cd {directory} && autoresearch run --agent tune)")
        click.echo(f"quickstart: done in {clock_text(time.monotonic() - started)}")
        if result.stopped_because == "interrupted":
            sys.exit(EXIT_INTERRUPTED)

