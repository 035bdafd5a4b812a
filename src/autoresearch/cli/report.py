"""Looking at a run: results, status, plot, report, watch, review, show, diff, finalize.

None of them takes the task's busy lock:
they read the journal and git (finalize only writes its own branch), so they work while a
loop is running in another terminal.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from autoresearch.cli._common import EXIT_PROBLEM, consoles, fixed, fmt
from autoresearch.cli._common import fail as _fail
from autoresearch.cli._common import guarded as _guarded
from autoresearch.cli._common import open_session as _open
from autoresearch.config.task import find_root
from autoresearch.harness.guard import read_lock, verify
from autoresearch.journal.results import render_tsv, throughput, write_tsv
from autoresearch.proposers.research_log import research_log
from autoresearch.report.environment import environment_info, environment_lines
from autoresearch.report.finalize import finalize
from autoresearch.report.gains import headline_lines, noise_advice, session_gain, stated_gain
from autoresearch.report.html import write_report
from autoresearch.report.live import watch
from autoresearch.report.plot import write_plot
from autoresearch.report.program_review import MIN_FAILURES, draft_program, write_program
from autoresearch.report.quarantine import parent_label, quarantine_diff
from autoresearch.report.review import build_review, experiment_diff, fmt_delta, fmt_num, render_review, show_record
from autoresearch.report.totals import Totals, totals
from autoresearch.trial.branch import current_epoch, interrupted, interrupted_words, rescues
from autoresearch.trial.notes import experiment_refs


def _tag(session: Any, tag: str | None) -> str:
    tag = tag or session.tag or (session.journal.tags() or [""])[-1]
    if not tag:
        _fail("no run yet: `autoresearch start` and `autoresearch baseline` first")
    return tag


def _experiment(session: Any, seq: int):
    exp = session.journal.get(seq)
    if exp is None:
        _fail(f"no experiment {seq} in the journal")
    return exp


def _out_path(session: Any, output: Path | None, name: str) -> Path:
    return output if output is not None else session.root / name


@click.command(name="plot")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the PNG (default: progress.png in the task folder).")
@click.option("--tag", help="Another run tag than the current one.")
@_guarded
def plot_cmd(output: Path | None, tag: str | None) -> None:
    """Write progress.png: every experiment, the kept ones labelled, the running best."""
    with _open() as s:
        path = write_plot(s, _out_path(s, output, "progress.png"), tag=_tag(s, tag))
        click.echo(f"wrote {path}")


@click.command(name="report")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the page (default: report.html in the task folder).")
@click.option("--tag", help="Another run tag than the current one.")
@click.option("--no-static-chart", is_flag=True, help="Leave out the embedded progress.png (a smaller file).")
@_guarded
def report_cmd(output: Path | None, tag: str | None, no_static_chart: bool) -> None:
    """Write report.html: summary, chart, top hits, and every experiment with its diff and log."""
    with _open() as s:
        path = write_report(s, _out_path(s, output, "report.html"), tag=_tag(s, tag),
                            static_chart=not no_static_chart)
        click.echo(f"wrote {path}")


@click.command(name="watch")
@click.option("-n", "--interval", type=float, default=2.0, show_default=True, help="Seconds between refreshes.")
@click.option("--once", is_flag=True, help="Show the current state once and exit.")
@click.option("--plain", is_flag=True, help="One line per verdict and phase instead of the live panel.")
@_guarded
def watch_cmd(interval: float, once: bool, plain: bool) -> None:
    """Follow a loop running in another terminal (read from the journal)."""
    watch(find_root("."), interval, once=once, plain=True if plain else None)


@click.command(name="review")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--tag", help="Another run tag than the current one.")
@click.option("--program", "program", is_flag=True,
              help="Draft additions to program.md from the record (ideas that failed again and again, directions "
                   "that keep winning, knobs that never mattered), printed as a diff `git apply` takes.")
@click.option("--apply", "apply_", is_flag=True, help="With --program: write the draft into program.md.")
@click.option("--log", "log", is_flag=True,
              help="Print the research log the loop's agents get in their brief (the whole run, grouped by what "
                   "each experiment changed): for an agent driving `autoresearch experiment` itself.")
@_guarded
def review_cmd(as_json: bool, tag: str | None, program: bool, apply_: bool, log: bool) -> None:
    """The morning summary: what was kept, what crashed and why, what came closest.

    With --program, the next program.md instead: review the diff, then `git apply` it (or
    `--apply`), edit, and start a new run with it: `autoresearch start --tag NEW` (the new run's
    agents still see this run's research log and notes)."""
    if apply_ and not program:
        _fail("--apply: only with --program (it writes the drafted program.md)", 2)
    with _open() as s:
        if program:
            program_draft(s, _tag(s, tag), apply_, as_json)
            return
        if log:
            click.echo(research_log(s, _tag(s, tag)) or "nothing tried yet: no research log")
            return
        c = s.config
        review = build_review(s.journal, _tag(s, tag), c.metric.name, c.maximize, c.metric.holdout)
        if as_json:
            click.echo(json.dumps(review.to_json(), default=str))
        else:
            render_review(review, consoles.out)


def program_draft(s: Any, tag: str, apply_: bool, as_json: bool) -> None:
    """`review --program`: the diff, or the file written."""
    draft = draft_program(s, tag)
    if as_json:
        click.echo(json.dumps({"path": draft.path, "diff": draft.diff, "failed": draft.lessons.failed,
                               "winning": draft.lessons.winning, "never_mattered": draft.lessons.flat}))
    elif not draft.lessons:
        click.echo(f"nothing to add to {draft.path} yet: no idea failed {MIN_FAILURES} times, no direction won twice, "
                   "no knob was moved often enough to call it flat")
    elif not apply_:
        click.echo(draft.diff, nl=False)
    if apply_ and draft.lessons:
        write_program(s.root / draft.path, draft.new)
        click.echo(f"wrote {draft.path}; edit it, then start a run with it: autoresearch start --tag NEW", err=as_json)


def _echo_diff(diff: str) -> None:
    for line in diff.splitlines():
        if line.startswith(("+++", "---", "diff --git", "index ")):
            click.secho(line, bold=True)
        elif line.startswith("+"):
            click.secho(line, fg="green")
        elif line.startswith("-"):
            click.secho(line, fg="red")
        elif line.startswith("@@"):
            click.secho(line, fg="cyan")
        else:
            click.echo(line)


@click.command(name="show")
@click.argument("seq", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--lines", type=int, default=20, show_default=True, help="Lines of the log tail.")
@click.option("--no-diff", is_flag=True, help="Leave out the diff.")
@_guarded
def show_cmd(seq: int, as_json: bool, lines: int, no_diff: bool) -> None:
    """One experiment: its record, metrics, log tail and diff against its parent."""
    with _open() as s:
        exp = _experiment(s, seq)
        data = show_record(s.ws, exp, lines, with_diff=not no_diff)
        if as_json:
            click.echo(json.dumps(data, default=str))
            return
        metric = s.config.metric.name
        how = interrupted_words(exp)  # "lost to the full disk" when its command could still say so
        reason = f"{exp.reason}: {how}" if exp.reason == "interrupted" and how != exp.reason else exp.reason
        head = f"seq {exp.seq}  {exp.status}" + (f" ({reason})" if reason else "") + f"  autoresearch/{exp.tag}"
        click.secho(head, bold=True)
        rows = [("description", exp.description)]
        if data["commit"] and not exp.details.get("ref_holds"):
            rows.append(("commit", f"{data['commit']}" + (f"  ({data['ref']})" if data["ref"] else "")))
        elif data["commit"]:  # interrupted before its candidate was committed: the ref keeps its record
            rows.append(("commit", f"none: {how} before the candidate was committed; {data['ref']} holds the "
                                   "parent's tree and this record"))
        else:
            rows.append(("commit", "none: the change was refused before it was committed"))
        if exp.details.get("cause_message"):  # the command's own last words: its error's first clause
            rows.append(("cause", str(exp.details["cause_message"]).split("; free some space")[0]))
        parent = parent_label(s.journal.experiments(exp.tag), exp)
        rows.append(("parent", (exp.parent or "-") + parent))
        if exp.metric is not None or exp.status in ("keep", "discard"):
            vs = f"  ({fmt_delta(exp.delta())} vs best {fmt_num(exp.best_before)})" if exp.delta() is not None else ""
            rows.append((metric, fmt_num(exp.metric) + vs))
        if s.config.metric.holdout:
            rows.append((s.config.metric.holdout, fmt_num(exp.holdout)))
        timing = [f"proposer {exp.proposer or '-'}"]
        if exp.propose_seconds is not None:
            timing.append(f"proposed in {exp.propose_seconds:.1f} s")
        if exp.run_seconds is not None:
            timing.append(f"ran {exp.run_seconds:.1f} s")
        if exp.tokens_in is not None or exp.tokens_out is not None:
            timing.append(f"tokens {exp.tokens_in or 0} in / {exp.tokens_out or 0} out")
        if exp.cost_usd is not None:
            timing.append(f"${exp.cost_usd:.4f}")
        rows.append(("run", ", ".join(timing)))
        if exp.metrics:
            rows.append(("metrics", ", ".join(f"{k} {v:g}" for k, v in exp.metrics.items())))
        if exp.details:
            rows.append(("details", json.dumps(exp.details, default=str)[:1500]))
        rows.append(("log", exp.log_path or "-"))
        for key, value in rows:
            click.echo(f"{key:<12} {value}")
        tail = data["log_tail_lines"]
        if tail:
            click.echo()
            click.secho(f"log tail (last {lines} lines):", bold=True)
            click.echo(tail)
        if not no_diff:
            click.echo()
            diff = data.get("diff")
            if diff is None:
                click.echo("no diff: never committed")
            elif not diff:
                click.echo(f"no diff: no change against its parent{parent}")
                quarantined = quarantine_diff(s.ws, exp, s.run_dir(exp.seq))
                if quarantined:
                    _echo_diff(quarantined)
            else:
                unfinished = exp.details.get("unfinished_edit")
                click.secho("the failed agent's unfinished edit (kept, never run):" if unfinished
                            else "diff against its parent:", bold=True)
                _echo_diff(diff)


@click.command(name="diff")
@click.argument("seq", type=int)
@click.option("--stat", is_flag=True, help="Only the files and line counts.")
@_guarded
def diff_cmd(seq: int, stat: bool) -> None:
    """The diff of experiment SEQ against its parent (refs/autoresearch/<tag>/<seq>)."""
    with _open() as s:
        exp = _experiment(s, seq)
        diff = experiment_diff(s.ws, exp, stat=stat)
        if diff is None:
            _fail(f"experiment {seq} has no commit ({exp.status}: {exp.reason}): nothing to diff")
        if stat:
            click.echo(diff, nl=False)
        else:
            _echo_diff(diff or quarantine_diff(s.ws, exp, s.run_dir(exp.seq)))


@click.command(name="finalize")
@click.option("--tag", help="Another run tag than the current one.")
@click.option("--force", is_flag=True, help="Rebuild autoresearch/<tag>-final if it exists.")
@click.option("--skip-conflicts", is_flag=True, help="Leave out keeps that do not apply and go on.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_guarded
def finalize_cmd(tag: str | None, force: bool, skip_conflicts: bool, as_json: bool) -> None:
    """Make autoresearch/<tag>-final: the start commit plus one reviewable commit per keep."""
    with _open() as s:
        result = finalize(s, _tag(s, tag), force=force, skip_conflicts=skip_conflicts)
        if as_json:
            click.echo(json.dumps(result.to_json(), default=str))
        else:
            click.echo(f"{result.branch}: {len(result.applied)} commits on {result.start[:7]}, tip {result.tip[:7]}")
            for a in result.applied:
                click.echo(f"  {a.commit[:7]} seq {a.seq}{f' ({a.gain})' if a.gain else ''}: {a.description}")
            for seq, why in result.skipped:
                click.echo(f"  skipped seq {seq}: {why}")
            for c in result.conflicts:
                click.echo(f"  CONFLICT seq {c.seq} ({', '.join(c.paths) or 'does not apply'}): {c.description}")
            if result.stopped_at is not None:
                click.echo(f"stopped at seq {result.stopped_at}: the branch holds the keeps before it "
                           "(resolve by hand, or rerun with --force --skip-conflicts to leave it out)")
            if result.matches_best:
                click.echo("the final tree matches the best commit")
            elif result.differs_from_best:
                click.echo(f"the final tree differs from the best commit in: {', '.join(result.differs_from_best)}")
            click.echo(f"review: git log --reverse -p {result.start[:7]}..{result.branch}")
        if not result.ok:
            sys.exit(EXIT_PROBLEM)


@click.command()
@click.option("--tsv", is_flag=True, help="Print results.tsv regenerated from the journal.")
@click.option("--write", is_flag=True, help="Rewrite results.tsv from the journal.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--tag", help="Another run tag than the current one.")
@_guarded
def results(tsv: bool, write: bool, as_json: bool, tag: str | None) -> None:
    """The experiments of the current run tag."""
    from rich.table import Table

    with _open() as s:
        tag = tag or s.tag
        exps = [e for e in s.journal.experiments(tag)] if tag else []
        if write:
            write_tsv(s.results_path(), exps, s.config.metric.name, s.config.resource.scale)
        if tsv:
            click.echo(render_tsv(exps, s.config.metric.name, s.config.resource.scale), nl=False)
        elif as_json:
            click.echo(json.dumps([e.to_json() for e in exps], default=str))
        else:
            table = Table(title=f"autoresearch/{tag}" if tag else "no run yet")
            for col in ("seq", "commit", s.config.metric.name, "delta", "status", "reason", "description"):
                table.add_column(col, justify="right" if col in ("seq", "delta") else "left")
            styles = {"keep": "green", "discard": "dim", "crash": "red", "rejected": "magenta", "running": "yellow"}
            for e in exps:
                d = e.delta()
                table.add_row(str(e.seq), e.short_commit, fmt(e.metric), "" if d is None else fixed(d, 6, "+"),
                              e.status, e.reason, e.description, style=styles.get(e.status))
            consoles.out.print(table)


@click.command()
@click.option("--json", "as_json", is_flag=True)
@_guarded
def status(as_json: bool) -> None:
    """Branch, best, last experiment, lock state, noise, epochs, claim mismatches."""
    with _open() as s:
        tag = s.tag
        lock_state = "not locked"
        lk = read_lock(s.root)
        if lk:
            problems = verify(lk, s.root)
            forged = s.lock_forgery(restore=False) if problems else ""
            lock_state = "ok" if not problems else "CHANGED: " + "; ".join(problems)
            if forged:  # the lock file is what changed: the files are compared with the lock in git
                lock_state = "; ".join([f"FORGED: {forged}", *verify(s.anchored_lock() or lk, s.root)])
        info: dict[str, Any] = {"task": s.config.task.name, "root": str(s.root), "tag": tag or None,
                                "branch": s.ws.current_branch(), "lock": lock_state}
        if s.journal.is_empty() and experiment_refs(s):  # read-only: say it, the next command rebuilds it
            info["journal"] = "lost: the next command (or `autoresearch repair`) rebuilds it from git"
            click.echo(f"journal  {info['journal']}", err=True)
        if tag and s.ws.branch_exists(s.branch):
            best = s.journal.best(tag)
            last = s.journal.last(tag)
            experiments = s.journal.experiments(tag)
            gain = session_gain(experiments, s.config.maximize)
            evidence = stated_gain(experiments, s.config.maximize, s.journal.comparisons(tag))
            noise = s.journal.latest_noise(tag)
            info.update({
                "best": best.to_json() if best else None,
                "best_commit": s.best_commit(tag),
                "last": last.to_json() if last else None,
                "counts": s.journal.counts(tag),
                "gain": gain.to_json(),
                "gain_evidence": evidence.to_json() if evidence is not None else None,
                "throughput": throughput(s.journal, tag),
                "noise": None if noise is None else {k: getattr(noise, k) for k in
                                                      ("n", "median", "std", "mad", "min", "max", "suggested_min_delta")},
                "advice": noise_advice(noise, s.config.verdict),
                "epoch": current_epoch(s, tag),
                "claim_mismatches": s.journal.flagged(tag, "run_phase_claimed"),
                "rescued": sorted(rescues(s, tag)),
                "interrupted": [e.seq for e in interrupted(s) if e.tag == tag],
                "environment": environment_info(s, tag),
                "agent": totals(s.journal.experiments(tag)).to_json(),
            })
        if as_json:
            click.echo(json.dumps(info, default=str))
            return
        click.echo(f"task     {info['task']} ({info['root']})")
        click.echo(f"branch   {info['branch'] or '(detached)'}   tag {tag or '-'}")
        click.echo(f"lock     {lock_state}")
        if "counts" in info:
            best, last, counts = info["best"], info["last"], info["counts"]
            metric = s.config.metric.name
            click.echo(f"best     {fmt(best['metric']) if best else '-'} {metric} at {info['best_commit'][:7]}"
                       + (f" (seq {best['seq']})" if best else " (no baseline yet: autoresearch baseline)"))
            for line in headline_lines(gain, evidence):
                click.echo(line)
            if last:
                word = "interrupted" if last["seq"] in info["interrupted"] else last["status"]
                click.echo(f"last     seq {last['seq']} {word} {last['reason']}: {last['description']}")
            for seq in info["interrupted"]:  # its command was killed: not running, not recorded yet
                click.echo(f"pending  seq {seq} interrupted; the next command records it (its results.tsv row "
                           "is pending until then)")
            click.echo("counts   " + ", ".join(f"{k} {v}" for k, v in counts.items()))
            click.echo(f"agent    {Totals(**info['agent']).line()}")
            tp = info["throughput"]
            if tp.get("experiments"):
                click.echo(f"speed    {tp['per_hour']:.1f} experiments/hour over {tp['slots']} slot(s) "
                           f"({tp['per_slot_per_hour']:.1f} per slot)")
            if info["noise"]:
                n = info["noise"]
                click.echo(f"noise    std {n['std']:.6g}, MAD {n['mad']:.6g} over {n['n']} runs; "
                           f"suggested {info['advice']}")
            if info["epoch"]:
                click.echo(f"epoch    {info['epoch']} (the harness or the environment changed: results before the "
                           "break are not compared with results after it)")
            for line in environment_lines(info["environment"]):
                click.echo(line)
            if info["claim_mismatches"]:
                click.secho(f"CLAIM MISMATCH  the run phase printed a {metric} the evaluation did not confirm in "
                            f"experiments {', '.join(map(str, info['claim_mismatches']))}", fg="red", bold=True)
            if info["rescued"]:
                click.echo(f"rescued  {len(info['rescued'])} saves of uncommitted work (autoresearch rescue)")



