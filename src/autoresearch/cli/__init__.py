"""The `autoresearch` command: one click group, the commands grouped by what the user is doing.

- task: init, templates, knobs, lock, verify, start
- experiment: baseline, experiment, noise, compare, repair, rescue (the native loop, by hand)
- loop: run, stop, quickstart (the autonomous loop)
- report: results, status, plot, report, watch, review, show, diff, finalize

Exit codes (errors.py): 0 success (an experiment that ran: keep or discard), 1 a problem with
the task's state or the run, 2 a broken config or bad arguments, 3 an experiment that crashed,
4 an experiment that was rejected, 130 interrupted.

May import: anything in the package (the top layer).
"""

from autoresearch.cli._group import cli


def main() -> None:
    cli(standalone_mode=True)


__all__ = ["cli", "main"]
