"""Experimenting by hand (the native loop): baseline, experiment, noise, compare, repair, rescue."""

from __future__ import annotations

import json
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
from autoresearch.report.gains import compare_estimate, estimate_words
from autoresearch.report.view import confirm_line
from autoresearch.trial.branch import repair, rescues
from autoresearch.trial.compare import compare, resolve
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
        exp = experiment(s, description, refuse_no_change=True, on_phase=_confirm_progress)
        if exp.details.get("after_baseline"):  # no best in this epoch yet: it was measured first
            click.echo(f"the best was measured first (seq {exp.details['after_baseline']}), then this candidate "
                       "against it", err=True)
        print_experiment(exp, s.config.metric.name, as_json, s.config.maximize)
        sys.exit(exit_code_for(exp))


def _confirm_progress(phase: str, info: dict) -> None:
    """A line per confirmation run on stderr: a decision that needs many runs is seen as it happens."""
    if phase == "confirming" and "run" in info:
        click.echo(confirm_line(info), err=True)


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
        said: list[str] = []
        rec = measure_noise(s, runs, on_message=said.append)
        click.echo(f"{s.config.metric.name} over {rec.n} runs of {rec.commit_sha[:7]}: median {fixed(rec.median)}, "
                   f"std {fixed(rec.std)}, MAD {fixed(rec.mad)}, min {fixed(rec.min)}, max {fixed(rec.max)}")
        advice = V.advise(V.spread(rec.values), s.config.verdict)
        for line in advice.lines:
            click.echo(line)
        click.echo(f"suggested: {advice.headline}")  # what status and the report say too
        for text in said:  # under load the runs are no reference: said so, and the old one stays
            click.echo(text)


@click.command(name="compare")
@click.argument("a", default="baseline")
@click.argument("b", default="best")
@click.option("-n", "pairs", type=int, default=3, show_default=True,
              help="Pairs of runs: one run of A and one of B each, in ABBA order.")
@click.option("--json", "as_json", is_flag=True, help="Print the record as one JSON object.")
@guarded
def compare_cmd(a: str, b: str, pairs: int, as_json: bool) -> None:
    """Measure B against A side by side: N pairs of runs, and how much better B is, with its 95 %
    interval. A and B: baseline, best, an experiment's seq or a git revision (default: baseline
    and best, the session's gain; status, review and the report then lead with it)."""
    refuse_inside_proposal("compare")
    if pairs < 2:
        fail("-n: at least 2 pairs (one pair has no interval)", 2)
    with open_session() as s:
        s.acquire("compare")
        warn_unsandboxed(s)
        repair(s)
        tag = s.require_tag()
        (ca, la), (cb, lb) = resolve(s, tag, a), resolve(s, tag, b)
        metric = s.config.metric.name

        def line(done: int, total: int, side: str, value: float, est: V.Estimate | None) -> None:
            if as_json:
                return
            sofar = ""
            if est is not None:  # B - A in the metric's units, as confirmation lines show candidate - best
                diff = est.value if s.config.maximize else -est.value
                sofar = f", paired diff B - A {diff:+.4g}" + (f" ± {est.half:.2g}" if est.half is not None else "")
            click.echo(f"run {done}/{total}: {la if side == 'a' else lb} {metric} {value:.6g}{sofar}")

        record = compare(s, tag, ca, cb, pairs, on_run=line)
        if as_json:
            click.echo(json.dumps({**record, "a_label": la, "b_label": lb}))
            return
        est = compare_estimate(record, s.config.maximize)
        if record["busy_runs"]:
            click.echo(f"{record['busy_runs']} of {2 * pairs} runs were under load (the pairs share it, "
                       "but a burst inside one pair widens the interval)")
        click.echo(f"B = {lb} {cb[:7]} against A = {la} {ca[:7]}: {estimate_words(est)}")
        if not est.covers(0.0) and est.low is not None:
            click.echo("the interval leaves out 0: " + ("B is better" if est.value > 0 else "B is worse"))
        else:
            click.echo("the interval includes 0: no difference shown at this many pairs")


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
