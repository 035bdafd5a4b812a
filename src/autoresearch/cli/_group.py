"""The click group. A command's module is imported when that command runs (see COMMANDS): an
agent calls `experiment` hundreds of times a night, and it should not pay for the loop, the
report, optuna or matplotlib at each start."""

from __future__ import annotations

import importlib
from typing import Any

import click

from autoresearch import __version__

# command name -> the module (in this package) that defines it, and its function's name there
COMMANDS = {
    "init": ("task", "init"), "templates": ("task", "templates"), "knobs": ("task", "knobs_command"),
    "lock": ("task", "lock"), "verify": ("task", "verify_cmd"), "start": ("task", "start_cmd"),
    "baseline": ("experiment", "baseline_cmd"), "experiment": ("experiment", "experiment_cmd"),
    "noise": ("experiment", "noise_cmd"), "compare": ("experiment", "compare_cmd"), "repair": ("experiment", "repair_cmd"),
    "rescue": ("experiment", "rescue_cmd"), "transfer": ("transfer", "transfer_cmd"),
    "run": ("loop", "run_cmd"), "stop": ("loop", "stop_cmd"), "quickstart": ("loop", "quickstart"),
    "results": ("report", "results"), "status": ("report", "status"), "plot": ("report", "plot_cmd"),
    "report": ("report", "report_cmd"), "watch": ("report", "watch_cmd"), "review": ("report", "review_cmd"),
    "show": ("report", "show_cmd"), "diff": ("report", "diff_cmd"), "finalize": ("report", "finalize_cmd"),
}


class LazyGroup(click.Group):
    """A group whose commands are imported when asked for (by name, or by --help)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS) + [n for n in self.commands if n not in COMMANDS]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:  # added with add_command (a plugin, a test)
            return self.commands[name]
        where = COMMANDS.get(name)
        if where is None:
            return None
        module = importlib.import_module(f"autoresearch.cli.{where[0]}")
        command: Any = getattr(module, where[1])
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="autoresearch")
def cli() -> None:
    """Autonomous research loops on any code: an agent edits, a frozen harness measures,
    git keeps what improved."""

