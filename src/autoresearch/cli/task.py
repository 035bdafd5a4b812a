"""Setting up a task: init, templates, lock, verify, start."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from autoresearch.cli._common import (
    fail,
    guarded,
    open_session,
)
from autoresearch.scaffold import init_from_flags, init_from_template, list_templates, scorer_warnings


@click.command()
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
@click.option("--commit", "commit_files", is_flag=True,
              help="Commit the task's files that git does not track (read-only, editable, named by --run) with the "
                   "config; without it init refuses them, since every run uses a clean export of a commit.")
@click.option("--confirm", type=click.Choice(["auto", "none", "sequential", "paired", "reference"]), default="auto",
              show_default=True, help="Without a template: how apparent wins are confirmed ([verdict] confirm). "
              "auto: sequential for a timed metric (by its name) or one whose two check runs differ, none only for "
              "a metric that gave the same number twice.")
@guarded
def init(directory: Path, template: str | None, editable: tuple[str, ...], readonly: tuple[str, ...],
         run_cmd: str | None, evaluate_cmd: str, metric: str | None, goal: str, budget: float, name: str,
         commit_files: bool, confirm: str) -> None:
    """Create a task: from a template, or in an existing project from flags."""
    if template:
        _require_extras(template)
        written = init_from_template(directory, template)
        click.echo(f"initialized {directory} from template {template!r} ({len(written)} files), committed and locked")
        click.echo(f"next: cd {directory} && autoresearch start && autoresearch baseline")
        return
    missing = [flag for flag, value in (("--editable", editable), ("--run", run_cmd), ("--metric", metric)) if not value]
    if missing:
        fail(f"without --template, init needs {', '.join(missing)} (or pick a template: autoresearch templates)", 2)
    value = init_from_flags(directory, editable=list(editable), readonly=list(readonly), run=run_cmd or "",
                            metric=metric or "", goal=goal, budget=budget, evaluate=evaluate_cmd, name=name,
                            commit=commit_files, confirm=confirm, on_message=click.echo)
    click.echo(f"the check run printed {metric}: {value:g}; wrote autoresearch.toml and program.md, committed and locked")
    for problem in scorer_warnings(directory):
        click.echo(f"warning: {problem}", err=True)
    click.echo("next: autoresearch start && autoresearch baseline")


@click.command()
def templates() -> None:
    """List the templates `init --template` can copy."""
    for t in list_templates():
        click.echo(f"{t.name:10s} {t.description}")


@click.command()
@click.option("--force", is_flag=True, help="Also accept changed read-only files or config on a branch with history.")
@guarded
def lock(force: bool) -> None:
    """Hash the harness (read-only files, autoresearch.toml, program.md) into .autoresearch/lock.json.

    On a run branch, a changed program.md is committed so the agent sees it; a changed harness
    or config would make old metrics incomparable and needs --force (or a new tag)."""
    with open_session() as s:
        new = relock(s, force)
        click.echo(f"locked {len(new.files)} files ({', '.join(sorted(new.files))}); program {new.program_hash}")


@click.command(name="verify")
@guarded
def verify_cmd() -> None:
    """Check the harness files against the lock."""
    with open_session() as s:
        forged = s.lock_forgery(restore=False)  # the lock file itself, written by someone else
        problems = ([f"lock: {forged}"] if forged else []) + verify((s.anchored_lock() if forged else None) or s.lock(), s.root)
        if problems:
            for p in problems:
                click.echo(p)
            sys.exit(1)
        click.echo(f"ok: {len(s.lock().files)} locked files unchanged")


@click.command(name="start")
@click.option("--tag", help="Run tag; the branch is autoresearch/<tag> (default: today, e.g. nov27).")
@guarded
def start_cmd(tag: str | None) -> None:
    """Create the run branch autoresearch/<tag> at HEAD and switch to it.

    An edited harness, config or program.md is committed on the new branch and locked for it:
    that is how a new tag gets a new harness."""
    with open_session() as s:
        s.acquire("start")
        tag = start(s, tag)
        click.echo(f"on branch autoresearch/{tag}; next: autoresearch baseline")
        found = s.state.preexisting
        if found:  # in the start record (the journal, its notes and .autoresearch/state.json)
            click.echo(f"{len(found)} untracked file(s) were here before start and are not guarded (never committed, "
                       f"restored or rescued): {', '.join(found[:10])}{' ...' if len(found) > 10 else ''}")




def _require_extras(template: str) -> None:
    """The LLM templates need the `llm` extra: say so at init, not with a traceback later."""
    missing = missing_extras(template)
    if missing:
        fail(f"the {template!r} template needs {', '.join(missing)}: pip install 'autoresearch[llm]' "
             "(or pick another template: autoresearch templates)")


from autoresearch.harness.guard import verify
from autoresearch.proposers.knobs_cli import knobs_command  # noqa: E402,F401 - registered by name in cli/__init__
from autoresearch.scaffold import missing_extras
from autoresearch.trial.branch import relock, start
