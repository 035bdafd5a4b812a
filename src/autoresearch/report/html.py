"""report.html: one self-contained page about a run, readable offline and fast at 1,000 rows.

The page carries everything inline: CSS, a small script, the data as one JSON block, and the
static progress.png as a data URI. The headline (summary, noise, throughput, top hits) is plain
HTML written here; the chart (SVG) and the experiment table are drawn by the script from the
JSON, and a row's details (diff, log tail, metrics) are only built when the row is opened, so a
long run still opens at once. `report.html#open=3` opens experiment 3 on load.
"""

from __future__ import annotations

from ..redact import scrub

import base64
import datetime as dt
import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..journal import Experiment
from .plot import focus_range, render_png
from .review import batch_diffs, cap_text, fmt_hours, gain, log_tail, summarize, top_hits

if TYPE_CHECKING:  # pragma: no cover
    from ..session import Session

TOP_HITS = 15
LOG_LINES = 30  # log tail per row
DETAILS_CHARS = 4000


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
    return "–" if value is None else f"{value:.{digits}f}"


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
        items.append(f"the harness changed: epoch(s) {', '.join(map(str, epochs))}; results are compared only within "
                     "an epoch")
    if not items:
        return ""
    return '<section class="warnings"><h2>Warnings</h2><ul>' + "".join(
        f"<li>{html.escape(i)}</li>" for i in items) + "</ul></section>"


def _summary_html(s: dict[str, Any], metric: str, holdout: str) -> str:
    c = s["counts"]
    cards = [
        _card("baseline", _fmt(s["baseline"]), f"seq {s['baseline_seq']}" if s["baseline_seq"] else ""),
        _card("best", _fmt(s["best"]), f"seq {s['best_seq']}" if s["best_seq"] else ""),
    ]
    if s["improvement"] is not None:
        pct = "" if s["improvement_pct"] is None else f"{s['improvement_pct']:.2f}% better"
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
    if s["noise"]:
        n = s["noise"]
        note = f"MAD {n['mad']:.3g} over {n['n']} runs of the best · suggested min_delta {n['suggested_min_delta']:.3g}"
        if n["improvement_in_std"] is not None:
            note += f" · improvement = {n['improvement_in_std']:.1f} std"
        cards.append(_card("noise (std)", f"{n['std']:.3g}", note))
    return '<div class="cards" id="summary">' + "".join(cards) + "</div>"


def _top_hits_html(hits: list[Experiment], maximize: bool, baseline: float | None, metric: str, holdout: str) -> str:
    if not hits:
        return '<p class="muted" id="top-hits">No keeps beyond the baseline yet.</p>'
    head = ["#", "seq", "gain", "% of baseline", metric] + ([holdout] if holdout else []) + ["description"]
    rows = []
    for rank, e in enumerate(hits, 1):
        g = gain(e, maximize) or 0.0
        pct = f"{100 * g / abs(baseline):.2f}%" if baseline else "–"
        cells = [str(rank), f'<a href="#open={e.seq}">{e.seq}</a>', f"{g:+.6g}", pct, _fmt(e.metric)]
        if holdout:
            cells.append(_fmt(e.holdout))
        cells.append(html.escape(e.description))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f'<table class="hits" id="top-hits"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def build_report(experiments: list[Experiment], *, task: str, tag: str, metric: str, maximize: bool,
                 holdout: str = "", diffs: dict[int, str] | None = None, noise: Any = None,
                 static_chart: bool = True, generated: float | None = None) -> str:
    """The report page for these experiments, as one HTML string."""
    s = summarize(experiments, maximize, noise)
    rows = [_row(e, maximize) for e in experiments]
    logs = {}
    for e in experiments:
        text = log_tail(e, LOG_LINES)
        if text:
            logs[e.seq] = cap_text(text, LOG_LINES, 8000, f"autoresearch show {e.seq}")
    focus = focus_range(experiments, maximize)
    when = dt.datetime.fromtimestamp(generated or dt.datetime.now().timestamp()).strftime("%Y-%m-%d %H:%M")
    data = {
        "meta": {"task": task, "tag": tag, "metric": metric, "goal": "maximize" if maximize else "minimize",
                 "holdout": holdout, "generated": when, "focus": list(focus) if focus else None,
                 "slots": len({e.slot for e in experiments})},
        "rows": rows,
        "diffs": {str(k): v for k, v in (diffs or {}).items()},
        "logs": {str(k): v for k, v in logs.items()},
    }
    png = ""
    if static_chart:
        b64 = base64.b64encode(render_png(experiments, metric, maximize, tag)).decode("ascii")
        png = (f'<details class="static"><summary>static chart (progress.png)</summary>'
               f'<img alt="progress chart" src="data:image/png;base64,{b64}"></details>')
    title = f"{task} · autoresearch/{tag}" if tag else task
    goal = "higher" if maximize else "lower"
    body = f"""<header><h1>{html.escape(title)}</h1>
<div class="muted">{html.escape(metric)} ({goal} is better) · generated {when}</div></header>
{_warnings_html(experiments)}<section><h2>Summary</h2>{_summary_html(s, metric, holdout)}</section>
<section><h2>Progress</h2><div id="chart" class="chart"><noscript>The interactive chart needs
JavaScript; the static chart is below.</noscript></div>{png}</section>
<section><h2>Top hits</h2>{_top_hits_html(top_hits(experiments, maximize, TOP_HITS), maximize, s['baseline'], metric, holdout)}</section>
<section><h2>All experiments</h2>
<div class="filters"><input id="q" type="search" placeholder="filter: words in description, reason, proposer; or a seq">
<span id="statuses"></span><span id="shown" class="muted"></span></div>
<table id="exps" class="exps"><thead></thead><tbody></tbody></table></section>"""
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n"
            f'<script type="application/json" id="ar-data">{_script_json(data)}</script>\n'
            f"<script>{_JS}</script>\n</body></html>\n")


def write_report(session: Session, path: Path | str, *, tag: str | None = None, static_chart: bool = True) -> Path:
    """Write report.html for one tag (the session's current one by default) and return its path."""
    journal = session.journal
    tag = tag or session.tag or (journal.tags() or [""])[-1]
    experiments = journal.experiments(tag) if tag else []
    config = session.config
    page = build_report(experiments, task=config.task.name, tag=tag, metric=config.metric.name,
                        maximize=config.maximize, holdout=config.metric.holdout,
                        diffs=batch_diffs(session.ws, experiments), noise=journal.latest_noise(tag) if tag else None,
                        static_chart=static_chart)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(scrub(page), encoding="utf-8")
    tmp.replace(path)
    return path


_CSS = """
:root{--fg:#1d2127;--muted:#6b7280;--line:#e5e7eb;--keep:#1f8a3b;--discard:#8b8f96;--crash:#c62828;
--rejected:#7b4bb7;--running:#b7791f;--best:#1f6fb4;--bg:#fff;--soft:#f7f8fa}
*{box-sizing:border-box}
body{font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);
background:var(--bg);margin:0 auto;max-width:1400px;padding:18px 24px 60px}
h1{font-size:22px;margin:0 0 2px}h2{font-size:16px;margin:26px 0 10px;border-bottom:1px solid var(--line);padding-bottom:4px}
.muted{color:var(--muted)}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:10px}
.card{background:var(--soft);border:1px solid var(--line);border-radius:8px;padding:9px 12px}
.card .label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.03em}
.card .value{font-size:20px;font-weight:600;font-variant-numeric:tabular-nums}
.card .note{color:var(--muted);font-size:12px}
.chart{width:100%;min-height:200px}
.chart svg{width:100%;height:auto;display:block}
.chart .axis line,.chart .grid line{stroke:#d9dce1}.chart .grid line{stroke-dasharray:2 3}
.chart text{font-size:11px;fill:#4b5563}
.chart .pt{cursor:pointer}.chart .pt.discard{fill:var(--discard);opacity:.45}
.chart .pt.keep{fill:var(--keep);stroke:#111;stroke-width:.8}
.chart .pt.crash{stroke:var(--crash);stroke-width:2}.chart .pt.rejected{fill:var(--rejected)}
.chart .best{fill:none;stroke:var(--best);stroke-width:1.8;opacity:.85}
.chart .klabel{fill:#1a661a;font-size:10px}
details.static{margin-top:8px}details.static img{max-width:100%}
table{border-collapse:collapse;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.hits td:nth-child(-n+5){font-variant-numeric:tabular-nums;white-space:nowrap}
.filters{display:flex;gap:14px;align-items:center;flex-wrap:wrap;margin-bottom:8px}
.filters input[type=search]{width:360px;padding:5px 8px;border:1px solid #cfd3d9;border-radius:6px}
.filters label{user-select:none;cursor:pointer}
table.exps thead th{position:sticky;top:0;background:#fff;cursor:pointer;white-space:nowrap;user-select:none}
table.exps th.sorted-asc::after{content:" ▲";font-size:10px}table.exps th.sorted-desc::after{content:" ▼";font-size:10px}
tr.row{cursor:pointer}tr.row:hover{background:#f3f6fb}tr.row.open{background:#eef3fb}
tr.row td.desc{max-width:520px}
.st{font-weight:600}.st-keep{color:var(--keep)}.st-discard{color:var(--discard)}.st-crash{color:var(--crash)}
.st-rejected{color:var(--rejected)}.st-running{color:var(--running)}
tr.detail td{background:#fbfbfc;padding:10px 14px}
.detail .meta{color:var(--muted);margin-bottom:6px}
.detail h4{margin:10px 0 4px;font-size:13px}
pre{margin:0;padding:8px 10px;background:#fff;border:1px solid var(--line);border-radius:6px;overflow:auto;
max-height:420px;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre.diff .add{color:#116329;background:#e6ffec;display:block}pre.diff .del{color:#82071e;background:#ffebe9;display:block}
pre.diff .hunk{color:#0550ae;display:block}pre.diff .file{font-weight:700;display:block}
.kv{display:flex;flex-wrap:wrap;gap:4px 16px;font-variant-numeric:tabular-nums}
"""

_JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("ar-data").textContent);
  var M = D.meta, ROWS = D.rows, SVGNS = "http://www.w3.org/2000/svg";
  var BY = {}; ROWS.forEach(function (r) { BY[r.s] = r; });
  var STATUSES = ["keep", "discard", "crash", "rejected", "running"];

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }
  function num(v, d) { return v == null ? "" : Number(v).toFixed(d == null ? 6 : d); }
  function signed(v, d) { return v == null ? "" : (v >= 0 ? "+" : "") + Number(v).toFixed(d == null ? 6 : d); }
  function short(s, n) { s = String(s || ""); return s.length > n ? s.slice(0, n - 1) + "…" : s; }
  function when(t) {
    if (!t) return "";
    var d = new Date(t * 1000), p = function (x) { return (x < 10 ? "0" : "") + x; };
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " + p(d.getHours()) + ":" + p(d.getMinutes());
  }

  // ---- chart ------------------------------------------------------------------------------
  function el(name, attrs, parent) {
    var e = document.createElementNS(SVGNS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function ticks(lo, hi, n) {
    var span = hi - lo; if (!(span > 0)) return [lo];
    var step = Math.pow(10, Math.floor(Math.log10(span / n))), err = span / n / step;
    if (err >= 7.5) step *= 10; else if (err >= 3.5) step *= 5; else if (err >= 1.5) step *= 2;
    var out = []; for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
    return out;
  }
  function drawChart() {
    var box = document.getElementById("chart");
    var done = ROWS.filter(function (r) { return r.st !== "running"; });
    if (!done.length) { box.insertAdjacentHTML("beforeend", '<p class="muted">No experiments yet.</p>'); return; }
    var W = 1000, H = 380, L = 78, R = 16, T = 14, B = 34;
    var svg = el("svg", {viewBox: "0 0 " + W + " " + H, id: "chart-svg", role: "img"}, box);
    var seqs = done.map(function (r) { return r.s; });
    var x0 = Math.min.apply(null, seqs) - 1, x1 = Math.max.apply(null, seqs) + 1;
    var f = M.focus || [0, 1], y0 = f[0], y1 = f[1];
    var maximize = M.goal === "maximize";
    function X(s) { return L + (s - x0) / (x1 - x0) * (W - L - R); }
    function Y(v) { return T + (1 - (v - y0) / (y1 - y0)) * (H - T - B); }
    var grid = el("g", {"class": "grid"}, svg), axis = el("g", {"class": "axis"}, svg);
    ticks(y0, y1, 6).forEach(function (v) {
      el("line", {x1: L, x2: W - R, y1: Y(v), y2: Y(v)}, grid);
      var t = el("text", {x: L - 6, y: Y(v) + 4, "text-anchor": "end"}, axis); t.textContent = +v.toPrecision(6);
    });
    ticks(x0, x1, 10).forEach(function (s) {
      if (s !== Math.round(s)) return;
      var t = el("text", {x: X(s), y: H - B + 16, "text-anchor": "middle"}, axis); t.textContent = s;
    });
    el("line", {x1: L, x2: W - R, y1: H - B, y2: H - B}, axis);
    el("line", {x1: L, x2: L, y1: T, y2: H - B}, axis);
    var lab = el("text", {x: W - R, y: H - 4, "text-anchor": "end"}, axis); lab.textContent = "experiment (seq)";
    var ym = (T + H - B) / 2;
    var ylab = el("text", {x: 14, y: ym, "text-anchor": "middle", transform: "rotate(-90 14 " + ym + ")"}, axis);
    ylab.textContent = M.metric + (maximize ? " (higher is better)" : " (lower is better)");
    var keeps = done.filter(function (r) { return r.st === "keep" && r.m != null; });
    if (keeps.length) {
      var d = "M" + X(keeps[0].s) + "," + Y(keeps[0].m);
      for (var i = 1; i < keeps.length; i++) d += " H" + X(keeps[i].s) + " V" + Y(keeps[i].m);
      d += " H" + X(x1 - 1);
      el("path", {d: d, "class": "best"}, svg);
    }
    var pts = el("g", {"class": "points"}, svg);
    function tip(node, r) {
      var t = el("title", {}, node);
      t.textContent = "seq " + r.s + " · " + r.st + (r.r ? " (" + r.r + ")" : "") +
        (r.m != null ? " · " + num(r.m) : "") + (r.d != null ? " (" + signed(r.d) + ")" : "") + "\n" + r.ds;
    }
    function open(r) { return function () { location.hash = "open=" + r.s; }; }
    done.forEach(function (r) {
      var node;
      if ((r.st === "discard" || r.st === "keep") && r.m != null) {
        // Points outside the focused range are pinned to its edge as small triangles.
        if (r.m >= y0 && r.m <= y1) node = el("circle", {cx: X(r.s), cy: Y(r.m), r: r.st === "keep" ? 5 : 3.2, "class": "pt " + r.st, "data-seq": r.s}, pts);
        else if (r.m > y1) node = el("path", {d: "M" + X(r.s) + "," + T + " l-4,7 h8 z", "class": "pt pinned " + r.st, "data-seq": r.s}, pts);
        else node = el("path", {d: "M" + X(r.s) + "," + (H - B) + " l-4,-7 h8 z", "class": "pt pinned " + r.st, "data-seq": r.s}, pts);
      } else if (r.st === "crash") {
        var cx = X(r.s), cy = H - B - 7;
        node = el("path", {d: "M" + (cx - 4) + "," + (cy - 4) + " l8,8 m0,-8 l-8,8", "class": "pt crash", "data-seq": r.s}, pts);
      } else if (r.st === "rejected") {
        var rx = X(r.s), ry = H - B - 20;
        node = el("path", {d: "M" + (rx - 4.5) + "," + ry + " h9 l-4.5,8 z", "class": "pt rejected", "data-seq": r.s}, pts);
      }
      if (node) { tip(node, r); node.addEventListener("click", open(r)); }
    });
    if (keeps.length <= 40) {
      keeps.forEach(function (r, i) {
        if (r.m < y0 || r.m > y1) return;
        var t = el("text", {x: X(r.s) + 6, y: Y(r.m) - 6, "class": "klabel",
                            transform: "rotate(-20 " + (X(r.s) + 6) + " " + (Y(r.m) - 6) + ")"}, svg);
        t.textContent = short(r.ds, 38);
      });
    }
  }

  // ---- table ------------------------------------------------------------------------------
  var COLS = [
    {k: "s", t: "seq", num: true},
    {k: "st", t: "status"},
    {k: "m", t: M.metric, num: true, f: function (r) { return num(r.m); }},
    {k: "d", t: "Δ vs best", num: true, f: function (r) { return signed(r.d); }},
  ];
  if (M.holdout) COLS.push({k: "h", t: M.holdout, num: true, f: function (r) { return num(r.h); }});
  COLS.push({k: "r", t: "reason"}, {k: "ds", t: "description", cls: "desc"}, {k: "p", t: "proposer"});
  if (M.slots > 1) COLS.push({k: "sl", t: "slot", num: true});
  COLS.push({k: "rs", t: "run s", num: true, f: function (r) { return num(r.rs, 1); }},
            {k: "c", t: "commit", f: function (r) { return (r.c || "").slice(0, 7); }},
            {k: "t0", t: "started", num: true, f: function (r) { return when(r.t0); }});

  var state = {sort: "s", dir: 1, q: "", show: {}, open: {}};
  STATUSES.forEach(function (s) { state.show[s] = true; });
  var table = document.getElementById("exps"), tbody = table.tBodies[0];

  function header() {
    table.tHead.innerHTML = "<tr>" + COLS.map(function (c) {
      var cls = (c.num ? "num " : "") + (state.sort === c.k ? (state.dir > 0 ? "sorted-asc" : "sorted-desc") : "");
      return '<th data-k="' + c.k + '" class="' + cls + '">' + esc(c.t) + "</th>";
    }).join("") + "</tr>";
  }
  function cell(c, r) {
    var v = c.f ? c.f(r) : r[c.k];
    var cls = (c.num ? "num " : "") + (c.cls || "") + (c.k === "st" ? " st st-" + r.st : "");
    return '<td class="' + cls + '">' + esc(v) + "</td>";
  }
  function visible(r) {
    if (!state.show[r.st]) return false;
    if (!state.q) return true;
    var q = state.q.toLowerCase();
    if (/^\d+$/.test(q)) return String(r.s) === q || (r.ds || "").toLowerCase().indexOf(q) >= 0;
    return ((r.ds || "") + " " + r.r + " " + r.p + " " + r.st + " " + (r.c || "")).toLowerCase().indexOf(q) >= 0;
  }
  function sorted() {
    var k = state.sort, dir = state.dir;
    return ROWS.filter(visible).sort(function (a, b) {
      var x = a[k], y = b[k];
      if (x == null && y == null) return a.s - b.s;
      if (x == null) return 1;
      if (y == null) return -1;
      if (typeof x === "string") return dir * x.localeCompare(y) || a.s - b.s;
      return dir * (x - y) || a.s - b.s;
    });
  }
  function render() {
    header();
    var rows = sorted(), html = [];
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      html.push('<tr class="row' + (state.open[r.s] ? " open" : "") + '" data-seq="' + r.s + '">' +
                COLS.map(function (c) { return cell(c, r); }).join("") + "</tr>");
    }
    tbody.innerHTML = html.join("");
    rows.forEach(function (r) { if (state.open[r.s]) expand(r.s); });
    document.getElementById("shown").textContent = "showing " + rows.length + " of " + ROWS.length;
  }
  function diffHtml(text) {
    return text.split("\n").map(function (line) {
      var cls = "";
      if (/^(diff --git|index |--- |\+\+\+ )/.test(line)) cls = "file";
      else if (line.charAt(0) === "+") cls = "add";
      else if (line.charAt(0) === "-") cls = "del";
      else if (line.indexOf("@@") === 0) cls = "hunk";
      return cls ? '<span class="' + cls + '">' + esc(line) + "</span>" : esc(line) + "\n";
    }).join("");
  }
  function detailHtml(r) {
    var parts = [];
    var meta = ["seq " + r.s, r.st + (r.r ? " (" + r.r + ")" : "")];
    if (r.c) meta.push("commit " + r.c.slice(0, 12) + " on parent " + (r.pa || "").slice(0, 12));
    meta.push("ref refs/autoresearch/" + M.tag + "/" + r.s);
    if (r.p) meta.push("proposer " + r.p);
    if (r.ps != null) meta.push("proposed in " + num(r.ps, 1) + " s");
    if (r.rs != null) meta.push("ran " + num(r.rs, 1) + " s");
    if (r.ti != null || r.to != null) meta.push("tokens " + (r.ti || 0) + " in / " + (r.to || 0) + " out");
    if (r["$"] != null) meta.push("$" + num(r["$"], 4));
    if (r.ld != null) meta.push("lines " + (r.ld >= 0 ? "+" : "") + r.ld);
    parts.push('<div class="meta">' + esc(meta.join(" · ")) + "</div>");
    parts.push('<div class="descfull"><b>' + esc(r.ds) + "</b></div>");
    var keys = Object.keys(r.mx || {});
    if (keys.length) parts.push("<h4>metrics</h4><div class=\"kv\">" + keys.map(function (k) {
      return "<span>" + esc(k) + ": <b>" + esc(r.mx[k]) + "</b></span>"; }).join("") + "</div>");
    var diff = D.diffs[String(r.s)];
    parts.push("<h4>diff against its parent</h4>");
    if (diff) parts.push('<pre class="diff">' + diffHtml(diff) + "</pre>");
    else parts.push('<div class="muted nodiff">' + (r.c ? "no change against its parent (a baseline)" :
                    "never committed: the change was refused before it ran") + "</div>");
    var log = D.logs[String(r.s)];
    if (log) parts.push("<h4>log tail" + (r.lp ? " (" + esc(r.lp) + ")" : "") + '</h4><pre class="log">' + esc(log) + "</pre>");
    if (r.dt && r.dt !== "{}") parts.push('<h4>verdict details</h4><pre class="details">' + esc(r.dt) + "</pre>");
    return parts.join("");
  }
  function rowEl(seq) { return tbody.querySelector('tr.row[data-seq="' + seq + '"]'); }
  function expand(seq) {
    var tr = rowEl(seq);
    if (!tr || (tr.nextSibling && tr.nextSibling.className === "detail")) return tr;
    var d = document.createElement("tr");
    d.className = "detail"; d.setAttribute("data-seq", seq);
    d.innerHTML = '<td colspan="' + COLS.length + '">' + detailHtml(BY[seq]) + "</td>";
    tr.parentNode.insertBefore(d, tr.nextSibling);
    tr.classList.add("open");
    state.open[seq] = true;
    return tr;
  }
  function collapse(seq) {
    var tr = rowEl(seq);
    delete state.open[seq];
    if (!tr) return;
    tr.classList.remove("open");
    if (tr.nextSibling && tr.nextSibling.className === "detail") tr.parentNode.removeChild(tr.nextSibling);
  }
  tbody.addEventListener("click", function (ev) {
    var tr = ev.target.closest("tr.row"); if (!tr) return;
    var seq = +tr.getAttribute("data-seq");
    if (state.open[seq]) collapse(seq); else expand(seq);
  });
  table.tHead.addEventListener("click", function (ev) {
    var th = ev.target.closest("th"); if (!th) return;
    var k = th.getAttribute("data-k");
    if (state.sort === k) state.dir = -state.dir; else { state.sort = k; state.dir = 1; }
    render();
  });
  var q = document.getElementById("q"), timer = null;
  q.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () { state.q = q.value.trim(); render(); }, 120);
  });
  var boxes = document.getElementById("statuses");
  boxes.innerHTML = STATUSES.map(function (s) {
    var n = ROWS.filter(function (r) { return r.st === s; }).length;
    return n ? '<label class="st-' + s + '"><input type="checkbox" data-st="' + s + '" checked> ' + s + " (" + n + ")</label>" : "";
  }).join(" ");
  boxes.addEventListener("change", function (ev) {
    var s = ev.target.getAttribute("data-st"); if (!s) return;
    state.show[s] = ev.target.checked; render();
  });

  function fromHash() {
    var m = /open=([\d,]+)/.exec(location.hash || "");
    if (!m) return;
    var first = null;
    m[1].split(",").forEach(function (x) {
      var seq = +x; if (!BY[seq]) return;
      if (!visible(BY[seq])) {
        state.q = ""; q.value = ""; state.show[BY[seq].st] = true;
        var cb = boxes.querySelector('input[data-st="' + BY[seq].st + '"]'); if (cb) cb.checked = true;
        render();
      }
      var tr = expand(seq); if (tr && first === null) first = tr;
    });
    if (first) first.scrollIntoView({block: "center"});
  }
  window.addEventListener("hashchange", fromHash);

  drawChart();
  render();
  fromHash();
  document.body.setAttribute("data-ready", "1");
  document.body.setAttribute("data-render-ms", String(Math.round(performance.now())));
})();
"""


__all__ = ["build_report", "write_report"]
