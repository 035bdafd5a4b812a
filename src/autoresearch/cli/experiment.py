"""Experimenting by hand (the native loop): baseline, experiment, noise, repair, rescue."""

from __future__ import annotations

import signal
import sys

import click

from autoresearch import verdict as V
from autoresearch.cli._common import (
    exit_code_for,
    fail,
    fixed,
    guarded,
    open_session,
    print_experiment,
    refuse_inside_proposal,
    warn_unsandboxed,
)
from autoresearch.trial.branch import repair, rescues
from autoresearch.trial.lifecycle import baseline, experiment, measure_noise
from autoresearch.trial.notes import rebuild


@click.command(name="baseline")
@click.option("--json", "as_json", is_flag=True)
@guarded
def baseline_cmd(as_json: bool) -> None:
    """Run the task's setup, then the untouched best: the branch's first keep."""
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
@guarded
def experiment_cmd(description: str, as_json: bool) -> None:
    """Guard, commit, run, measure, decide, record; then keep or reset to best."""
    # SIGTERM is Ctrl-C, as for `run`: the run is stopped, the attempt recorded, the folder back
    # at best (an agent's tool timeout ends the command this way).
    signal.signal(signal.SIGTERM, _interrupt)
    refuse_inside_proposal("experiment")
    with open_session() as s:
        s.acquire("experiment")
        warn_unsandboxed(s)
        repair(s)
        exp = experiment(s, description, refuse_no_change=True)
        if exp.details.get("after_baseline"):  # no best in this epoch yet: it was measured first
            click.echo(f"the best was measured first (seq {exp.details['after_baseline']}), then this candidate "
                       "against it", err=True)
        print_experiment(exp, s.config.metric.name, as_json)
        sys.exit(exit_code_for(exp))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.command(name="noise")
@click.option("-n", "runs", type=int, default=5, show_default=True, help="How many runs of the best.")
@guarded
def noise_cmd(runs: int) -> None:
    """Run the current best N times; store and show the spread and a suggested min_delta."""
    refuse_inside_proposal("noise")
    if runs < 2:
        fail("-n: must be at least 2", 2)
    with open_session() as s:
        s.acquire("noise")
        warn_unsandboxed(s)
        repair(s)
        rec = measure_noise(s, runs)
        click.echo(f"{s.config.metric.name} over {rec.n} runs of {rec.commit_sha[:7]}: median {fixed(rec.median)}, "
                   f"std {fixed(rec.std)}, MAD {fixed(rec.mad)}, min {fixed(rec.min)}, max {fixed(rec.max)}")
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
