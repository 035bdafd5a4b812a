"""`autoresearch knobs`: what `--agent tune` would search, before a single experiment runs.

tune only edits the knobs it finds (module- and class-level UPPER_CASE constants and any
`NAME = <literal>` with a `# search:` comment). When a project keeps its settings somewhere
else, the loop used to discover that by failing; this command shows the same listing up front:
every knob with file, line, scope, current value and search space, then the assignments that
looked like knobs but were skipped, counted by reason in one line (`--verbose` lists each). It exits 1 when tune has nothing to search
(and says why), so scripts can check a task before starting a long run.

The command lives here, beside the listing it prints; the CLI registers it (`cli.add_command`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from autoresearch.config.task import ConfigError, find_root, load_config
from autoresearch.proposers.knobs import list_knobs


@click.command(name="knobs")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
@click.option("--verbose", "-v", is_flag=True, help="List every skipped assignment with its reason.")
@click.option("--dir", "directory", default=".", type=click.Path(file_okay=False, path_type=Path),
              help="The task folder (default: the one holding the current directory).")
def knobs_command(as_json: bool, directory: Path, verbose: bool) -> None:
    """List the knobs `--agent tune` searches (file:line NAME = value  space), then what was skipped,
    in one line (--verbose: each)."""
    try:
        config = load_config(find_root(directory))
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    listing = list_knobs(config)
    problem = listing.problem()
    if as_json:
        click.echo(json.dumps(listing.to_json(), indent=2))
    else:
        for line in listing.lines():
            click.echo(line)
        if listing.knobs:
            click.echo(f"{len(listing.knobs)} knobs, {len(listing.tunable)} searched by tune "
                       f"(in {', '.join(listing.files) or 'no files'})")
        for line in listing.skipped_lines(verbose or not listing.tunable):  # nothing to search: say why, each
            click.echo(line)
        if problem:
            click.echo(problem, err=True)
    sys.exit(1 if problem else 0)
