"""What happened in a run: the summary figures, the morning review, one experiment's record.

Everything here reads; nothing writes. The figures (`summarize`) are shared by the terminal
review, the HTML report and the plot's title, so all three always agree. Diffs come from git:
an experiment's commit against its parent (the best it was proposed against).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from autoresearch.git.workspace import GitError, Workspace, experiment_ref
from autoresearch.harness.output import tail_lines
from autoresearch.journal.records import Experiment, NoiseRecord, fixed
from autoresearch.journal.store import Journal
from autoresearch.report.gains import (
    baseline_of,
    change_words,
    estimate_short,
    headline_lines,
    keep_estimate,
    raw_note,
    runs_per_decision,
    session_gain,
    stated_gain,
)
from autoresearch.report.gains import best_of as _best_of
from autoresearch.report.totals import Totals, totals

DONE = ("keep", "discard", "crash", "rejected")
CLOSEST = 5  # how many near misses the review lists


# -- the figures --------------------------------------------------------------------------------

def gain(exp: Experiment, maximize: bool) -> float | None:
    """How much an experiment beat the best it was measured against (positive is better)."""
    delta = exp.delta()
    if delta is None:
        return None
    return delta if maximize else -delta


def best_of(experiments: list[Experiment], maximize: bool) -> Experiment | None:
    """The last keep: keeps only ever improve, so it is the branch tip's record."""
    return _best_of(experiments)


def _hours(start: float | None, end: float | None) -> float:
    if start is None or end is None or end <= start:
        return 0.0
    return (end - start) / 3600.0


def summarize(experiments: list[Experiment], maximize: bool, noise: NoiseRecord | None = None,
              comparisons: list[dict] | None = None) -> dict[str, Any]:
    """The headline figures of one tag's experiments, as plain JSON-able values. COMPARISONS: the
    journal's `autoresearch compare` records (the side-by-side measurement leads when it is of
    this baseline and best)."""
    done = [e for e in experiments if e.status in DONE]
    counts = {s: sum(1 for e in done if e.status == s) for s in DONE}
    counts["running"] = sum(1 for e in experiments if e.status == "running")
    base = baseline_of(experiments)
    best = best_of(experiments, maximize)
    # The headline gain: best vs baseline, unless the bar was re-measured in between (the machine
    # changed); then the keeps' own gains, summed (gains.py). The raw figure stays beside it.
    g = session_gain(experiments, maximize)
    improvement, pct = (g.headline, g.headline_pct) if best is not None else (None, None)
    # ... unless there is evidence (gains.stated_gain): a side-by-side compare, or the keeps' own
    # confirmation estimates; then that is the gain, with its interval
    stated = stated_gain(experiments, maximize, comparisons or [])
    if stated is not None:
        improvement, pct = stated.value, stated.pct
    trials = [e for e in done if not e.is_baseline]
    kept = sum(1 for e in trials if e.status == "keep")
    starts = [e.started_at for e in experiments if e.started_at]
    ends = [e.finished_at for e in done if e.finished_at]
    wall = _hours(min(starts) if starts else None, max(ends) if ends else None)
    slots: dict[int, list[Experiment]] = {}
    for e in done:
        slots.setdefault(e.slot, []).append(e)
    per_slot = []
    for slot, exps in sorted(slots.items()):
        hours = _hours(min(e.started_at for e in exps), max((e.finished_at or e.started_at) for e in exps))
        per_slot.append({"slot": slot, "experiments": len(exps), "hours": hours,
                         "per_hour": len(exps) / hours if hours > 0 else None})
    tokens_in = [e.tokens_in for e in experiments if e.tokens_in is not None]
    tokens_out = [e.tokens_out for e in experiments if e.tokens_out is not None]
    costs = [e.cost_usd for e in experiments if e.cost_usd is not None]
    run_seconds = [e.run_seconds for e in done if e.run_seconds]
    summary: dict[str, Any] = {
        "experiments": len(done),
        "counts": counts,
        "baseline": base.metric if base else None,
        "baseline_seq": base.seq if base else None,
        "best": best.metric if best else None,
        "best_seq": best.seq if best else None,
        "best_holdout": best.holdout if best else None,
        "baseline_holdout": base.holdout if base else None,
        "improvement": improvement,
        "improvement_pct": pct,
        "remeasured": g.remeasured,
        "raw_improvement": g.raw if best is not None else None,
        "raw_improvement_pct": g.raw_pct if best is not None else None,
        "gain_note": raw_note(g),
        "gain_evidence": stated.to_json() if stated is not None else None,
        "gain_lines": headline_lines(g, stated, label=""),
        "runs_per_decision": runs_per_decision(experiments),
        "keep_rate": kept / len(trials) if trials else None,
        "wall_hours": wall,
        "per_hour": len(done) / wall if wall > 0 else None,
        "slots": per_slot,
        "mean_run_seconds": sum(run_seconds) / len(run_seconds) if run_seconds else None,
        "tokens_in": sum(tokens_in) if tokens_in else None,
        "tokens_out": sum(tokens_out) if tokens_out else None,
        "cost_usd": sum(costs) if costs else None,
        "agent": totals(experiments).to_json(),
        "noise": None,
    }
    if noise is not None:
        summary["noise"] = {"n": noise.n, "median": noise.median, "std": noise.std, "mad": noise.mad,
                            "min": noise.min, "max": noise.max, "suggested_min_delta": noise.suggested_min_delta,
                            "improvement_in_std": (improvement / noise.std) if improvement is not None
                            and noise.std > 0 else None}
    return summary


def stated(exp: Experiment, maximize: bool) -> float | None:
    """A keep's gain as stated from its evidence (gains.keep_estimate), None without one."""
    est = keep_estimate(exp, maximize)
    return est.value if est is not None else None


def top_hits(experiments: list[Experiment], maximize: bool, n: int | None = None) -> list[Experiment]:
    """The keeps (baseline aside), biggest gain first, as its decision's evidence measured it."""
    keeps = [e for e in experiments if e.status == "keep" and not e.is_baseline and stated(e, maximize) is not None]
    keeps.sort(key=lambda e: stated(e, maximize) or 0.0, reverse=True)
    return keeps[:n] if n else keeps


def closest_misses(experiments: list[Experiment], maximize: bool, n: int = CLOSEST) -> list[Experiment]:
    """Discarded ideas that came nearest to (or past) the best without being kept (a duplicate
    is its original's measurement again, so it is left out)."""
    misses = [e for e in experiments if e.status == "discard" and e.reason != "duplicate"
              and gain(e, maximize) is not None]
    misses.sort(key=lambda e: gain(e, maximize) or 0.0, reverse=True)
    return misses[:n]


def failures_by_reason(experiments: list[Experiment], status: str) -> OrderedDict[str, list[Experiment]]:
    """Crashes (or rejections) grouped by reason, the most frequent reason first."""
    groups: dict[str, list[Experiment]] = {}
    for e in experiments:
        if e.status == status:
            groups.setdefault(e.reason or "(no reason)", []).append(e)
    return OrderedDict(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])))


# -- git: diffs of experiments ------------------------------------------------------------------

def commit_of(ws: Workspace, exp: Experiment) -> str | None:
    """The experiment's commit: its recorded sha, else its ref refs/autoresearch/<tag>/<seq>."""
    if exp.commit_sha and ws.rev(exp.commit_sha):
        return exp.commit_sha
    return ws.rev(experiment_ref(exp.tag, exp.seq))


def parent_of(ws: Workspace, exp: Experiment, commit: str) -> str | None:
    if exp.parent and ws.rev(exp.parent):
        return exp.parent
    return ws.rev(f"{commit}^")


def experiment_diff(ws: Workspace, exp: Experiment, stat: bool = False) -> str | None:
    """The experiment's change against its parent; None when it never became a commit."""
    commit = commit_of(ws, exp)
    if commit is None:
        return None
    parent = parent_of(ws, exp, commit)
    if parent is None:
        return ""
    args = ["diff", "--no-color", "--no-ext-diff"] + (["--stat"] if stat else []) + [parent, commit]
    return ws.git(*args)


def batch_diffs(ws: Workspace, experiments: list[Experiment], max_lines: int = 400,
                max_chars: int = 40_000) -> dict[int, str]:
    """Every experiment's diff against its parent in two git calls, each capped in size.

    One `git diff-tree --stdin` reads "commit parent" lines and prints each patch after the
    commit's id, so a report of a thousand experiments does not start a thousand processes."""
    pairs = [(e.seq, e.commit_sha, e.parent) for e in experiments if e.commit_sha and e.parent]
    if not pairs:
        return {}
    wanted = sorted({sha for _, c, p in pairs for sha in (c, p)})
    present: set[str] = set()
    try:
        out = ws.git("cat-file", "--batch-check", input="\n".join(wanted) + "\n")
    except GitError:
        return {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] == "commit":
            present.add(parts[0])
    pairs = [(s, c, p) for s, c, p in pairs if c in present and p in present]
    lines = "".join(f"{c} {p}\n" for _, c, p in pairs)
    try:
        out = ws.git("diff-tree", "--stdin", "-r", "-p", "--no-color", "--no-ext-diff", input=lines)
    except GitError:
        return {}
    by_commit: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.split("\n"):
        if len(line) == 40 and line in present:
            current = by_commit.setdefault(line, [])
            continue
        if current is not None:
            current.append(line)
    diffs: dict[int, str] = {}
    for seq, commit, _ in pairs:
        body = by_commit.get(commit)
        if body is None:
            diffs[seq] = ""
            continue
        while body and not body[-1]:
            body = body[:-1]
        diffs[seq] = cap_text("\n".join(body), max_lines, max_chars, f"autoresearch diff {seq}")
    return diffs


def cap_text(text: str, max_lines: int, max_chars: int, more: str) -> str:
    """At most MAX_LINES lines and MAX_CHARS characters, saying how much was cut and where to see it."""
    lines = text.split("\n")
    cut = len(lines) > max_lines or len(text) > max_chars
    if not cut:
        return text
    kept = "\n".join(lines[:max_lines])[:max_chars]
    shown = kept.count("\n") + 1
    return kept + f"\n[... {len(lines) - shown} more lines: `{more}`]"


def log_tail(exp: Experiment, n: int = 20) -> str:
    """The last N lines of the experiment's log (the journal's copy when the file is gone)."""
    if exp.log_path:
        path = Path(exp.log_path)
        if path.exists():
            return tail_lines(path, n)
    if exp.log_tail:
        return "\n".join(exp.log_tail.splitlines()[-n:])
    return ""


# -- the morning review -------------------------------------------------------------------------

@dataclass
class Review:
    tag: str
    metric: str
    maximize: bool
    holdout: str
    summary: dict[str, Any]
    kept: list[Experiment]
    crashes: OrderedDict[str, list[Experiment]]
    rejections: OrderedDict[str, list[Experiment]]
    closest: list[Experiment]
    since_last_keep: int

    def to_json(self) -> dict[str, Any]:
        def brief(e: Experiment) -> dict[str, Any]:
            return {"seq": e.seq, "status": e.status, "reason": e.reason, "description": e.description,
                    "metric": e.metric, "best_before": e.best_before, "delta": e.delta(),
                    "holdout": e.holdout, "commit": e.commit_sha, "gain": _gain_json(e, self.maximize)}

        return {
            "tag": self.tag, "metric": self.metric, "goal": "maximize" if self.maximize else "minimize",
            "holdout_metric": self.holdout or None, "summary": self.summary,
            "kept": [brief(e) for e in self.kept],
            "crashes": [{"reason": r, "count": len(es), "seqs": [e.seq for e in es],
                         "example": es[-1].description} for r, es in self.crashes.items()],
            "rejections": [{"reason": r, "count": len(es), "seqs": [e.seq for e in es],
                            "example": es[-1].description} for r, es in self.rejections.items()],
            "closest": [brief(e) for e in self.closest],
            "since_last_keep": self.since_last_keep,
        }


def _gain_json(exp: Experiment, maximize: bool) -> dict[str, Any] | None:
    est = keep_estimate(exp, maximize) if exp.status == "keep" else None
    return est.to_json() if est is not None else None


def build_review(journal: Journal, tag: str, metric: str, maximize: bool, holdout: str = "") -> Review:
    experiments = journal.experiments(tag)
    summary = summarize(experiments, maximize, journal.latest_noise(tag), journal.comparisons(tag))
    kept = [e for e in experiments if e.status == "keep" and not e.is_baseline]
    since = 0
    for e in reversed(experiments):
        if e.status == "keep":
            break
        if e.status in DONE:
            since += 1
    return Review(tag=tag, metric=metric, maximize=maximize, holdout=holdout, summary=summary, kept=kept,
                  crashes=failures_by_reason(experiments, "crash"),
                  rejections=failures_by_reason(experiments, "rejected"),
                  closest=closest_misses(experiments, maximize), since_last_keep=since)


def fmt_hours(hours: float) -> str:
    """A wall time that reads well at any scale: seconds, minutes or hours."""
    seconds = hours * 3600
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{hours:.2f} h"


def fmt_num(value: float | None, digits: int = 6) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return fixed(value, digits)


def fmt_delta(value: float | None, digits: int = 6) -> str:
    return "-" if value is None else fixed(value, digits, "+")


def _seqs(exps: list[Experiment], limit: int = 8) -> str:
    seqs = [str(e.seq) for e in exps]
    return ", ".join(seqs[:limit]) + (f", ... ({len(seqs) - limit} more)" if len(seqs) > limit else "")


def render_review(review: Review, console: Console) -> None:
    """The review as a few short blocks in the terminal."""
    s, m = review.summary, review.metric
    c = s["counts"]
    direction = "higher" if review.maximize else "lower"
    console.print(f"[bold]autoresearch/{review.tag}[/bold]: {s['experiments']} experiments over "
                  f"{fmt_hours(s['wall_hours'])} ({c['keep']} keep, {c['discard']} discard, {c['crash']} crash, "
                  f"{c['rejected']} rejected{', ' + str(c['running']) + ' running' if c['running'] else ''})",
                  soft_wrap=True)
    if s["baseline"] is None:
        console.print("no baseline measured yet: `autoresearch baseline`")
    else:
        line = f"{m} ({direction} is better): baseline {fmt_num(s['baseline'])} -> best {fmt_num(s['best'])}"
        if s["improvement"] is not None and s["gain_evidence"] is not None:
            # the evidence states the gain (gains.headline_lines); the two numbers are as measured
            line += f" as measured, at seq {s['best_seq']}\n" + "\n".join(
                ("gain: " if i == 0 else "") + text for i, text in enumerate(s["gain_lines"]))
        elif s["improvement"] is not None and s["remeasured"]:
            # the bar moved in between: the raw difference is not the gain, the keeps' sum is
            line += f" as measured (not like-for-like), at seq {s['best_seq']}"
            line += (f"\ngain: {change_words(s['improvement'], s['improvement_pct'])}, the keeps summed, each "
                     f"against the bar of its time\nnote: {s['gain_note']}")
        elif s["improvement"] is not None:
            line += f" ({change_words(s['improvement'], s['improvement_pct'])}) at seq {s['best_seq']}"
        console.print(line, soft_wrap=True)
    if review.holdout and s["best_holdout"] is not None:
        console.print(f"{review.holdout} (held-out data): baseline {fmt_num(s['baseline_holdout'])} -> best "
                      f"{fmt_num(s['best_holdout'])}")
    if s["noise"]:
        n = s["noise"]
        extra = (f"; the improvement is {n['improvement_in_std']:.1f} std" if n["improvement_in_std"] is not None
                 else "")
        console.print(f"noise: std {n['std']:.3g} over {n['n']} runs of the best{extra}")
    console.print(f"agent: {Totals(**s['agent']).line()}", soft_wrap=True)

    console.print()
    if review.kept:
        table = Table(title="kept", title_justify="left", show_edge=False)
        for col, just in (("seq", "right"), (m, "right"), ("gain ± 95%", "right"), ("description", "left")):
            table.add_column(col, justify=just)  # type: ignore[arg-type]
        if review.holdout:
            table.add_column(review.holdout, justify="right")
        for e in review.kept:
            est = keep_estimate(e, review.maximize)
            row = [str(e.seq), fmt_num(e.metric), estimate_short(est) if est is not None else "-", e.description]
            if review.holdout:
                row.append(fmt_num(e.holdout))
            table.add_row(*row, style="green")
        console.print(table)
    else:
        console.print("kept: nothing beyond the baseline yet")
    console.print(f"since the last keep: {review.since_last_keep} experiments")
    rpd = s.get("runs_per_decision")
    if rpd:
        console.print(f"runs per decision: {rpd['mean']:.1f} on average, at most {rpd['max']} "
                      f"({rpd['decisions']} decisions)")

    for title, groups, style in (("crashed", review.crashes, "red"), ("rejected", review.rejections, "magenta")):
        if not groups:
            continue
        console.print()
        console.print(f"[bold]{title}[/bold] ({sum(len(v) for v in groups.values())}), by reason:")
        for reason, exps in groups.items():
            console.print(f"  [{style}]{reason}[/{style}] x{len(exps)}: seq {_seqs(exps)} "
                          f"(last: {exps[-1].description})", soft_wrap=True)

    if review.closest:
        console.print()
        table = Table(title="closest without a keep", title_justify="left", show_edge=False)
        for col, just in (("seq", "right"), (m, "right"), ("vs best", "right"), ("reason", "left"),
                          ("description", "left")):
            table.add_column(col, justify=just)  # type: ignore[arg-type]
        for e in review.closest:
            table.add_row(str(e.seq), fmt_num(e.metric), fmt_delta(e.delta()), e.reason, e.description)
        console.print(table)


# -- one experiment -----------------------------------------------------------------------------

def show_record(ws: Workspace, exp: Experiment, log_lines: int = 20, with_diff: bool = True) -> dict[str, Any]:
    """Everything `autoresearch show` prints, as JSON-able values."""
    commit = commit_of(ws, exp)
    data = exp.to_json()
    data["ref"] = experiment_ref(exp.tag, exp.seq) if ws.rev(experiment_ref(exp.tag, exp.seq)) else None
    data["commit"] = commit
    data["log_tail_lines"] = log_tail(exp, log_lines)
    if with_diff:
        data["diff"] = experiment_diff(ws, exp) if commit else None
    return data
