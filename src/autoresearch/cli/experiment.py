"""Experimenting by hand (the native loop): baseline, experiment, noise, repair, rescue."""

from __future__ import annotations

import os
import sys

import click

from ._common import (EXIT_CONFIG, EXIT_INTERRUPTED, consoles, exit_code_for, fail, fmt, guarded, open_session,  # noqa: F401
                      print_experiment, refuse_inside_proposal, warn_unsandboxed)

@click.command(name="baseline")
@click.option("--json", "as_json", is_flag=True)
@guarded
def baseline_cmd(as_json: bool) -> None:
    """Run the task's setup, then the untouched best: the branch's first keep."""
    from ..branch import repair
    from ..trial import baseline

    refuse_inside_proposal("baseline")
    with open_session() as s:
        s.acquire("baseline")
        warn_unsandboxed(s)
        repair(s)
        exp = baseline(s)
        print_experiment(exp, s.config.metric.name, as_json)
        sys.exit(exit_code_for(exp))


@click.command(name="experiment")
@click.option("-m", "--message", "description", required=True, help="What this experiment tries.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of two lines.")
def experiment_cmd(description: str, as_json: bool) -> None:
    """Guard, commit, run, measure, decide, record; then keep or reset to best."""
    from ._native import native_experiment

    native_experiment(description, as_json)


@click.command(name="noise")
@click.option("-n", "runs", type=int, default=5, show_default=True, help="How many runs of the best.")
@guarded
def noise_cmd(runs: int) -> None:
    """Run the current best N times; store and show the spread and a suggested min_delta."""
    from ..branch import repair
    from ..trial import measure_noise

    refuse_inside_proposal("noise")
    if runs < 2:
        fail("-n: must be at least 2", 2)
    with open_session() as s:
        s.acquire("noise")
        warn_unsandboxed(s)
        repair(s)
        rec = measure_noise(s, runs)
        click.echo(f"{s.config.metric.name} over {rec.n} runs of {rec.commit_sha[:7]}: median {rec.median:.6f}, "
                   f"std {rec.std:.6f}, MAD {rec.mad:.6f}, min {rec.min:.6f}, max {rec.max:.6f}")
        from .. import verdict as V

        advice = V.advise(V.spread(rec.values), s.config.verdict)
        for line in advice.lines:
            click.echo(line)
        click.echo(f"suggested: [verdict] min_delta = {advice.settings['min_delta']:.6g}"
                   + (", relative = true" if advice.settings.get("relative") else "") + f"  (for the {advice.policy})")
        click.echo(f"the best's reference is now this median ({rec.median:.6g}): later candidates are compared with it")




@click.command(name="repair")
@guarded
def repair_cmd() -> None:
    """Close what a killed command left, and rebuild a lost journal from git.

    Every start repairs on its own; this command also rebuilds `.autoresearch/journal.db` from
    the records stored beside each experiment's commit (refs/notes/autoresearch) when the
    journal was lost or moved aside."""
    from ..branch import repair
    from ..rebuild import rebuild

    with open_session() as s:
        s.acquire("repair")
        added = rebuild(s)
        closed = repair(s)
        click.echo(f"rebuilt {added} experiment records from git; closed {len(closed)} interrupted experiments"
                   + (f" ({', '.join(map(str, closed))})" if closed else ""))


@click.command(name="rescue")
@click.option("--tag", help="Another run tag than the current one.")
@guarded
def rescue_cmd(tag: str | None) -> None:
    """List the uncommitted work autoresearch saved before it reset the task folder.

    Get one back with `git checkout <ref> -- <path>` (one file) or `git diff HEAD <ref>`."""
    from ..branch import rescues

    with open_session() as s:
        tag = tag or s.tag or (s.journal.tags() or [""])[-1]
        found = rescues(s, tag) if tag else {}
        if not found:
            click.echo("nothing rescued" + (f" in autoresearch/{tag}" if tag else ""))
            return
        for ref, sha in sorted(found.items(), key=lambda kv: int(kv[0].rsplit("/", 1)[1])):
            click.echo(f"{ref}  {sha[:7]}  {s.ws.subject(sha)}")
            click.echo(f"    files: {s.ws.git('diff', '--name-only', f'{sha}~1', sha).split() or ['(none)']}")
        click.echo("get one back: git checkout <ref> -- <path>   (or see it: git show <ref>)")


@click.command(name="serve")
@click.option("--idle", type=click.FloatRange(min=0), default=3600, show_default=True,
              help="Leave after this many seconds without a request (0: never).")
@click.option("--stop", "stop_it", is_flag=True,
              help="Stop this task's server (experiments in flight are interrupted and recorded).")
@guarded
def serve_cmd(idle: float, stop_it: bool) -> None:
    """Keep the native experiment warm: `experiment -m ...` in this task then skips the
    interpreter's start-up and imports (about 100 ms less per experiment here). Runs in the
    foreground until Ctrl-C, `serve --stop`, or --idle seconds without a request."""
    from .. import serve
    from ..task import CONFIG_NAME, find_root

    root = find_root(".")
    if stop_it:
        pid = serve.stop(root)
        click.echo(f"stopped the server (pid {pid})" if pid else "no server runs for this task")
        return
    if not (root / CONFIG_NAME).exists():
        fail(f"no {CONFIG_NAME} here or above: run `autoresearch serve` inside a task "
             "(`autoresearch init` makes one)", EXIT_CONFIG)
    server = serve.Server(root, idle=idle)
    click.echo(f"serving native experiments for {root} (pid {os.getpid()}); "
               "stop with Ctrl-C or `autoresearch serve --stop`", err=True)
    server.serve()
