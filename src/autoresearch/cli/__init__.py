"""The `autoresearch` command: one click group, the commands grouped by what the user is doing.

- task: init, templates, lock, verify, start, knobs
- experiment: baseline, experiment, noise, repair, rescue (the native loop, by hand)
- loop: run, stop, quickstart (the autonomous loop)
- report: results, status, plot, report, watch, review, show, diff, finalize

Exit codes (errors.py): 0 success (an experiment that ran: keep or discard), 1 a problem with
the task's state or the run, 2 a broken config or bad arguments, 3 an experiment that crashed,
4 an experiment that was rejected, 130 interrupted. Modules import what they need inside the
command, so `autoresearch experiment` starts without rich, optuna or matplotlib.
"""

from __future__ import annotations

import click

from .. import __version__
from . import experiment, loop, report, task


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="autoresearch")
def cli() -> None:
    """Autonomous research loops on any code: an agent edits, a frozen harness measures,
    git keeps what improved."""


for _module in (task, experiment, loop, report):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    cli(standalone_mode=True)


__all__ = ["cli", "main"]
