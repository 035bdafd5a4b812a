"""report.html: one self-contained page about a run, readable offline and fast at 1,000 rows.

The page carries everything inline: CSS, a small script, the data as one JSON block, and the
static progress.png as a data URI. The CSS and script are kept as real files in report/assets/
(package data, read once per process) and pasted into each page, so no page links to anything. The headline (summary, noise, throughput, top hits) is plain
HTML written here; the chart (SVG) and the experiment table are drawn by the script from the
JSON, and a row's details (diff, log tail, metrics) are only built when the row is opened, so a
long run still opens at once. `report.html#open=3` opens experiment 3 on load. Re-measurements
of the best's reference (report/references.py) are drawn on the chart and listed in a section
of their own, never as rows: they are not experiments.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import html
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from autoresearch.journal.records import Experiment, fixed
from autoresearch.journal.transfers import transfers
from autoresearch.redact import scrub
from autoresearch.report.environment import environment_html, environment_info
from autoresearch.report.gains import estimate_words, keep_estimate, noise_advice, pct_words
from autoresearch.report.plot import focus_range, render_png
from autoresearch.report.quarantine import quarantine_diff
from autoresearch.report.references import ReferenceEvent, reference_events, references_html
from autoresearch.report.review import batch_diffs, cap_text, fmt_hours, gain, log_tail, summarize, top_hits
from autoresearch.report.totals import Totals, duration
from autoresearch.report.transfer import transfer_html
from autoresearch.trial.session import Session

TOP_HITS = 15
LOG_LINES = 30  # log tail per row
DETAILS_CHARS = 4000


@functools.lru_cache(maxsize=None)
def _asset(name: str) -> str:
    """The text of report/assets/<name>, read once per process.

    The page's CSS and script live as package data so they can be read, linted and diffed as
    CSS and JavaScript; they are still inlined into every page, so the report stays one file
    that opens offline.
    """
    return (resources.files("autoresearch.report") / "assets" / name).read_text(encoding="utf-8")


def _num(value: float | None) -> float | None:
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _row(e: Experiment, maximize: bool) -> dict[str, Any]:
    """One experiment in the compact shape the page's script reads."""
    details = json.dumps(e.details, default=str, sort_keys=True)
    return {
        "s": e.seq, "st": e.status, "r": e.reason, "m": _num(e.metric), "bb": _num(e.best_before),
        "d": _num(e.delta()), "g": _num(gain(e, maximize)), "h": _num(e.holdout), "ds": e.description,
        "p": e.proposer, "sl": e.slot, "t0": e.started_at, "t1": e.finished_at, "rs": _num(e.run_seconds),
        "ps": _num(e.propose_seconds), "c": e.commit_sha, "pa": e.parent, "b": e.is_baseline,
        "ti": e.tokens_in, "to": e.tokens_out, "$": _num(e.cost_usd), "ld": e.lines_delta,
        "mx": {k: _num(v) for k, v in e.metrics.items()},
        "dt": details if len(details) <= DETAILS_CHARS else details[:DETAILS_CHARS] + " ...",
        "lp": e.log_path,
    }


def _script_json(data: Any) -> str:
    """JSON that is safe inside a <script> element (no `</script>`, no `<!--`)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _fmt(value: float | None, digits: int = 6) -> str:
    return "–" if value is None else fixed(value, digits)


def _card(label: str, value: str, note: str = "") -> str:
    extra = f'<div class="note">{html.escape(note)}</div>' if note else ""
    return (f'<div class="card"><div class="label">{html.escape(label)}</div>'
            f'<div class="value">{html.escape(value)}</div>{extra}</div>')


def _warnings_html(experiments: list[Experiment]) -> str:
    """What a reader must know first: experiments run without the sandbox, claim mismatches."""
    items = []
    bare = [e.seq for e in experiments if e.details.get("sandbox") == "none"]
    if bare:
        items.append(f"{len(bare)} experiment(s) ran WITHOUT the sandbox (bubblewrap was not usable): agents and "
                     "runs were not contained (see the README's threat model)")
    claims = [e.seq for e in experiments if "run_phase_claimed" in e.details]
    if claims:
        items.append("CLAIM MISMATCH: the run phase printed a metric the evaluation did not confirm in experiment(s) "
                     + ", ".join(map(str, claims[:20])))
    epochs = sorted({int(e.details["epoch"]) for e in experiments if e.details.get("epoch")})
    if epochs:
        items.append(f"the harness or the environment changed: epoch(s) {', '.join(map(str, epochs))}; results are "
                     "compared only within an epoch (see Environment)")
    if not items:
        return ""
    return '<section class="warnings"><h2>Warnings</h2><ul>' + "".join(
        f"<li>{html.escape(i)}</li>" for i in items) + "</ul></section>"


def _summary_html(s: dict[str, Any], metric: str, holdout: str, advice: str = "") -> str:
    c = s["counts"]
    cards = [
        _card("baseline", _fmt(s["baseline"]), f"seq {s['baseline_seq']}" if s["baseline_seq"] else ""),
        _card("best", _fmt(s["best"]), f"seq {s['best_seq']}" if s["best_seq"] else ""),
    ]
    evidence = s.get("gain_evidence")
    if s["improvement"] is not None and evidence is not None:
        # the gain from the evidence (gains.stated_gain), its interval beside it
        cards.append(_card("gain" + (" (side by side)" if evidence["how"] == "compare" else " (sum of keeps' estimates)"),
                           f"{s['improvement']:.6g}" + (f" ± {evidence['half']:.2g}" if evidence["half"] is not None else ""),
                           " · ".join(s["gain_lines"])))
    elif s["improvement"] is not None:
        pct = "" if s["improvement_pct"] is None else pct_words(s["improvement_pct"])
        if s["remeasured"]:  # the bar moved: the keeps' own gains lead, the raw difference follows
            cards.append(_card("improvement (sum of keeps)", f"{s['improvement']:.6g}",
                               f"{pct} · each keep vs the bar of its time" if pct else "each keep vs the bar of its time"))
            raw_pct = "" if s["raw_improvement_pct"] is None else f"{pct_words(s['raw_improvement_pct'])} · "
            cards.append(_card("raw best vs baseline", f"{s['raw_improvement']:.6g}", f"{raw_pct}not like-for-like"))
        else:
            cards.append(_card("improvement", f"{s['improvement']:.6g}", pct))
    if holdout:
        cards.append(_card(f"{holdout} (held out)", _fmt(s["best_holdout"]),
                           f"baseline {_fmt(s['baseline_holdout'])}"))
    running = f", {c['running']} running" if c["running"] else ""
    cards.append(_card("experiments", str(s["experiments"]),
                       f"{c['keep']} keep · {c['discard']} discard · {c['crash']} crash · "
                       f"{c['rejected']} rejected{running}"))
    if s["keep_rate"] is not None:
        cards.append(_card("keep rate", f"{100 * s['keep_rate']:.1f}%", "keeps beyond the baseline"))
    cards.append(_card("wall time", fmt_hours(s["wall_hours"]),
                       f"{s['mean_run_seconds']:.1f} s per run on average" if s["mean_run_seconds"] else ""))
    if s["per_hour"] is not None:
        slots = s["slots"]
        note = " · ".join(f"slot {x['slot']}: {x['per_hour']:.1f}/h" for x in slots if x["per_hour"] is not None)
        cards.append(_card("experiments per hour", f"{s['per_hour']:.1f}",
                           f"{len(slots)} slot{'s' if len(slots) != 1 else ''}" + (f" · {note}" if note else "")))
    if s["tokens_in"] is not None or s["tokens_out"] is not None:
        cards.append(_card("tokens", f"{(s['tokens_in'] or 0) + (s['tokens_out'] or 0):,}",
                           f"{s['tokens_in'] or 0:,} in · {s['tokens_out'] or 0:,} out"))
    if s["cost_usd"] is not None:
        cards.append(_card("cost", f"${s['cost_usd']:.2f}"))
    agent = Totals(**s["agent"])
    cards.append(_card("agent time", duration(agent.agent_seconds), agent.line()))
    if s["noise"]:
        n = s["noise"]
        note = f"MAD {n['mad']:.3g} over {n['n']} runs of the best" + (f" · suggested {advice}" if advice else "")
        if n["improvement_in_std"] is not None:
            note += f" · improvement = {n['improvement_in_std']:.1f} std"
        cards.append(_card("noise (std)", f"{n['std']:.3g}", note))
    note = f'<p class="muted" id="gain-note">Note: {html.escape(s["gain_note"])}.</p>' if s["gain_note"] else ""
    return '<div class="cards" id="summary">' + "".join(cards) + "</div>" + note


def _top_hits_html(hits: list[Experiment], maximize: bool, baseline: float | None, metric: str, holdout: str) -> str:
    if not hits:
        return '<p class="muted" id="top-hits">No keeps beyond the baseline yet.</p>'
    head = ["#", "seq", "gain", "% of baseline", "evidence", metric] + ([holdout] if holdout else []) + ["description"]
    rows = []
    for rank, e in enumerate(hits, 1):
        est = keep_estimate(e, maximize)  # its decision's evidence, not its metric vs a bar that may be stale
        g = est.value if est is not None else 0.0
        half = f" ± {est.half:.2g}" if est is not None and est.half is not None else ""
        pct = f"{100 * g / abs(baseline):.2f}%" if baseline else "–"
        cells = [str(rank), f'<a href="#open={e.seq}">{e.seq}</a>', f"{g:+.6g}{half}", pct,
                 html.escape(estimate_words(est)) if est is not None else "–", _fmt(e.metric)]
        if holdout:
            cells.append(_fmt(e.holdout))
        cells.append(html.escape(e.description))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f'<table class="hits" id="top-hits"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def build_report(experiments: list[Experiment], *, task: str, tag: str, metric: str, maximize: bool,
                 holdout: str = "", diffs: dict[int, str] | None = None, noise: Any = None,
                 static_chart: bool = True, generated: float | None = None,
                 references: list[ReferenceEvent] | None = None, comparisons: list[dict] | None = None,
                 advice: str = "", sections: str = "") -> str:
    """The report page for these experiments, as one HTML string.

    REFERENCES (the best's re-measurements) are drawn on the chart and listed in their own
    section; they are not experiments, so no row, count or rate includes them. SECTIONS: more
    HTML sections after the top hits (the environment, transfer checks)."""
    references = references or []
    s = summarize(experiments, maximize, noise, comparisons)
    rows = [_row(e, maximize) for e in experiments]
    logs = {}
    for e in experiments:
        text = log_tail(e, LOG_LINES)
        if text:
            logs[e.seq] = cap_text(text, LOG_LINES, 8000, f"autoresearch show {e.seq}")
    focus = focus_range(experiments, maximize, also=[ev.new for ev in references])
    when = dt.datetime.fromtimestamp(generated or dt.datetime.now().timestamp()).strftime("%Y-%m-%d %H:%M")
    data = {
        "meta": {"task": task, "tag": tag, "metric": metric, "goal": "maximize" if maximize else "minimize",
                 "holdout": holdout, "generated": when, "focus": list(focus) if focus else None,
                 "slots": len({e.slot for e in experiments})},
        "rows": rows,
        "diffs": {str(k): v for k, v in (diffs or {}).items()},
        "logs": {str(k): v for k, v in logs.items()},
        "refs": [ev.to_json() for ev in references],
    }
    png = ""
    if static_chart:
        b64 = base64.b64encode(render_png(experiments, metric, maximize, tag, references)).decode("ascii")
        png = (f'<details class="static"><summary>static chart (progress.png)</summary>'
               f'<img alt="progress chart" src="data:image/png;base64,{b64}"></details>')
    title = f"{task} · autoresearch/{tag}" if tag else task
    goal = "higher" if maximize else "lower"
    body = f"""<header><h1>{html.escape(title)}</h1>
<div class="muted">{html.escape(metric)} ({goal} is better) · generated {when}</div></header>
{_warnings_html(experiments)}<section><h2>Summary</h2>{_summary_html(s, metric, holdout, advice)}</section>
<section><h2>Progress</h2><div id="chart" class="chart"><noscript>The interactive chart needs
JavaScript; the static chart is below.</noscript></div>{png}</section>
{references_html(references)}<section><h2>Top hits</h2>{_top_hits_html(top_hits(experiments, maximize, TOP_HITS), maximize, s['baseline'], metric, holdout)}</section>
{sections}<section><h2>All experiments</h2>
<div class="filters"><input id="q" type="search" placeholder="filter: words in description, reason, proposer; or a seq">
<span id="statuses"></span><span id="shown" class="muted"></span></div>
<table id="exps" class="exps"><thead></thead><tbody></tbody></table></section>"""
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>\n{_asset('report.css')}</style></head>\n<body>\n{body}\n"
            f'<script type="application/json" id="ar-data">{_script_json(data)}</script>\n'
            f"<script>\n{_asset('report.js')}</script>\n</body></html>\n")


def write_report(session: Session, path: Path | str, *, tag: str | None = None, static_chart: bool = True) -> Path:
    """Write report.html for one tag (the session's current one by default) and return its path."""
    journal = session.journal
    tag = tag or session.tag or (journal.tags() or [""])[-1]
    experiments = journal.experiments(tag) if tag else []
    config = session.config
    page = build_report(experiments, task=config.task.name, tag=tag, metric=config.metric.name,
                        maximize=config.maximize, holdout=config.metric.holdout,
                        diffs=_with_quarantined(session, experiments), noise=journal.latest_noise(tag) if tag else None,
                        static_chart=static_chart,
                        references=reference_events(journal, tag, experiments) if tag else [],
                        comparisons=journal.comparisons(tag) if tag else [],
                        advice=noise_advice(journal.latest_noise(tag) if tag else None, config.verdict),
                        sections=extra_sections(session, tag, experiments) if tag else "")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(scrub(page), encoding="utf-8")
    tmp.replace(path)
    return path


def extra_sections(session: Session, tag: str, experiments: list[Experiment]) -> str:
    """The sections after the top hits: the runs' environment, the transfer checks."""
    return environment_html(environment_info(session, tag)) + transfer_html(transfers(session.journal, tag))


def _with_quarantined(session: Session, experiments: list[Experiment]) -> dict[int, str]:
    """Each experiment's diff; where it changed nothing, the edits it had quarantined."""
    diffs = batch_diffs(session.ws, experiments)
    for e in experiments:
        if not diffs.get(e.seq) and (e.details.get("quarantine") or {}).get("kept"):
            diffs[e.seq] = quarantine_diff(session.ws, e, session.run_dir(e.seq)) or diffs.get(e.seq, "")
    return diffs


__all__ = ["build_report", "write_report"]
