"""The `autoresearch` command: one click group, the commands grouped by what the user is doing.

- task: init, templates, knobs, lock, verify, start
- experiment: baseline, experiment, noise, repair, rescue (the native loop, by hand)
- loop: run, stop, quickstart (the autonomous loop)
- report: results, status, plot, report, watch, review, show, diff, finalize

Exit codes (errors.py): 0 success (an experiment that ran: keep or discard), 1 a problem with
the task's state or the run, 2 a broken config or bad arguments, 3 an experiment that crashed,
4 an experiment that was rejected, 130 interrupted. A command's module is imported only when that
command runs (an agent calls `experiment` hundreds of times a night: it never loads the loop,
the report, rich, optuna or matplotlib). The commonest call of all, `experiment -m ...`, does
not load click either: `main` recognises its plain form and runs the same function the click
command runs (`_native.native_experiment`); any other form (`--help`, a typo) goes to click.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's (see autoresearch/__init__.py)
if TYPE_CHECKING:
    from typing import Any

    from ._group import cli


def native_experiment_args(args: list[str]) -> tuple[str, bool] | None:
    """(message, --json) when ARGS is exactly `experiment` with -m/--message and maybe --json,
    as click would read them; None for anything else, which click then parses (and explains)."""
    if not args or args[0] != "experiment":
        return None
    message: str | None = None
    as_json = False
    i = 1
    while i < len(args):
        arg = args[i]
        value: str | None = None
        if arg in ("-m", "--message"):
            if i + 1 >= len(args):
                return None
            value, i = args[i + 1], i + 2
        elif arg.startswith("--message="):
            value, i = arg[len("--message="):], i + 1
        elif arg.startswith("-m") and not arg.startswith("--"):
            value, i = arg[2:], i + 1
        elif arg == "--json" and not as_json:
            as_json, i = True, i + 1
        else:
            return None
        if value is not None:
            if message is not None:
                return None  # given twice: click's rules (the last wins) are click's to apply
            message = value
    return None if message is None else (message, as_json)


def main() -> None:
    fast = native_experiment_args(sys.argv[1:])
    if fast is not None:
        from ._warm_client import run_served

        try:
            code = run_served(sys.argv)
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            sys.exit(130)
        if code is not None:  # `autoresearch serve` ran it, warm
            sys.exit(code)
        from ._native import native_experiment

        native_experiment(*fast)
        return
    from ._group import cli

    cli(standalone_mode=True)


def __getattr__(name: str) -> Any:
    if name == "cli":  # the click group, built on first use
        from ._group import cli

        return cli
    raise AttributeError(name)


__all__ = ["cli", "main"]
