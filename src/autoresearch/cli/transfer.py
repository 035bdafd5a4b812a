"""`autoresearch transfer`: do the gains carry over to another configuration?"""

from __future__ import annotations

import json
from typing import Any

import click

from autoresearch.cli._common import guarded, open_session, refuse_inside_proposal, warn_unsandboxed
from autoresearch.loop.transfer import parse_sets, transfer
from autoresearch.report.transfer import table_lines
from autoresearch.trial.branch import repair


@click.command(name="transfer")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="A knob of the editable files at another value (repeatable), e.g. --set DEPTH=8; "
                   "`autoresearch knobs` lists them.")
@click.option("--budget", type=float, help="Another [budget] seconds per run.")
@click.option("-n", "--runs", type=click.IntRange(min=1), default=4, show_default=True,
              help="Runs of each commit (paired by round).")
@click.option("--each", is_flag=True, help="Every keep in order, each against the keep before it, not only "
                                             "the baseline against the best.")
@click.option("--json", "as_json", is_flag=True, help="Print the check as JSON.")
@guarded
def transfer_cmd(sets: tuple[str, ...], budget: float | None, runs: int, each: bool, as_json: bool) -> None:
    """Re-measure the baseline and the best (--each: every keep) at another setting of the knobs
    or another budget, and say which gains carry over.

    Each commit runs N times in fresh exports with the new values written in (the branch, the
    task folder and the best are untouched); the rounds alternate their order and share one seed
    per round, and each step is judged from its paired runs. The check is recorded in the
    journal and shown in `autoresearch report`."""
    refuse_inside_proposal("transfer")
    wanted = parse_sets(sets)
    with open_session() as s:
        s.acquire("transfer")  # one command at a time: a loop in this task would share the folders
        repair(s)
        warn_unsandboxed(s)

        def progress(run: dict[str, Any]) -> None:
            if not as_json:
                result = f"{run['metric']:.6g}" if run["ok"] else f"crash: {run['reason']}"
                click.echo(f"round {run['round'] + 1}/{runs}  seq {run['seq']}: {result}  ({run['seconds']:.1f} s)",
                           err=True)

        check = transfer(s, wanted, budget=budget, runs=runs, each=each, on_run=progress)
        if as_json:
            click.echo(json.dumps(check, default=str))
            return
        for line in table_lines(check):
            click.echo(line)
        click.echo("recorded in the journal; `autoresearch report` shows it with a chart")
