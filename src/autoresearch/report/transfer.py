"""Transfer checks on screen and in the report: which gains carried over to another configuration.

One table per check (journal.transfers): each step of the chain (a keep against the keep before
it, and the whole session, baseline to best), its gain as recorded during the session, its gain
at the new configuration (the mean paired difference ± its standard error) and the verdict
(verdict.transfer). In the report a bar chart sets the two gains side by side.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from autoresearch.verdict.transfer import VERDICTS

RECORDED_COLOR = "#9a9a9a"
VERDICT_COLORS = {"carries": "#2ca02c", "reverses": "#d62728", "no gain": "#ff7f0e", "unclear": "#1f77b4",
                  "crashed": "#9467bd"}


def _num(value: float | None, sign: bool = True) -> str:
    if value is None:
        return "-"
    return f"{value:+.4g}" if sign else f"{value:.3g}"


def setting(check: dict[str, Any]) -> str:
    """What the check changed: `DEPTH=8, budget 30 s (session 60 s)`."""
    parts = [f"{k}={v}" for k, v in (check.get("sets") or {}).items()]
    if check.get("budget") is not None:
        parts.append(f"budget {check['budget']:g} s (session {check.get('session_budget', 0):g} s)")
    return ", ".join(parts) or "the session's own configuration"


def _label(row: dict[str, Any]) -> str:
    if row.get("overall"):
        return f"baseline {row['from_seq']} -> best {row['to_seq']}"
    return f"{row['to_seq']} (after {row['from_seq']})"


def table_lines(check: dict[str, Any]) -> list[str]:
    """The check as a plain-text table, for the terminal."""
    metric = check.get("metric", "metric")
    lines = [f"transfer check {check.get('number', '?')}: {setting(check)}; {check.get('runs')} runs per commit; "
             f"gains in {metric} (positive = better)"]
    head = f"{'step':<26} {'recorded':>10} {'there':>10} {'± se':>9} {'pairs':>5}  {'verdict':<9} change"
    lines.append(head)
    for row in check.get("rows", []):
        description = "(the whole session)" if row.get("overall") else " ".join(str(row.get("description", "")).split())
        lines.append(f"{_label(row):<26} {_num(row.get('recorded')):>10} {_num(row.get('gain')):>10} "
                     f"{_num(row.get('se'), sign=False):>9} {row.get('pairs', 0):>5}  {row.get('verdict', '?'):<9} "
                     f"{description[:60]}")
    steps = [r for r in check.get("rows", []) if not r.get("overall") or len(check.get("rows", [])) == 1]
    carried = sum(1 for r in steps if r.get("verdict") == "carries")
    lines.append(f"{carried} of {len(steps)} gain{'s' if len(steps) != 1 else ''} carried over; "
                 + "; ".join(f"{k}: {v}" for k, v in VERDICTS.items() if any(r.get('verdict') == k for r in steps)))
    return lines


def render_png(check: dict[str, Any]) -> bytes:
    """Recorded and transferred gains side by side, one pair of bars per step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = check.get("rows", [])
    fig = Figure(figsize=(9, 0.5 + 0.45 * max(2, len(rows))), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ys = list(range(len(rows)))[::-1]
    recorded = [r.get("recorded") or 0.0 for r in rows]
    there = [r.get("gain") or 0.0 for r in rows]
    errors = [r.get("se") or 0.0 for r in rows]
    ax.barh([y + 0.2 for y in ys], recorded, height=0.38, color=RECORDED_COLOR, label="recorded (session)")
    ax.barh([y - 0.2 for y in ys], there, height=0.38, xerr=errors,
            color=[VERDICT_COLORS.get(r.get("verdict", ""), "#1f77b4") for r in rows], label=setting(check))
    ax.set_yticks(ys)
    ax.set_yticklabels([_label(r) for r in rows], fontsize=8)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel(f"gain in {check.get('metric', 'metric')} (positive = better)")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def transfer_html(checks: list[dict[str, Any]]) -> str:
    """The report's section: every check, newest first, as a table and a chart (empty: none)."""
    if not checks:
        return ""
    parts = ['<section id="transfer"><h2>Transfer checks</h2>']
    for check in reversed(checks):
        head = "".join(f"<th>{h}</th>" for h in ("step", "recorded", "there", "± se", "pairs", "verdict", "change"))
        body = []
        for row in check.get("rows", []):
            description = "(the whole session)" if row.get("overall") else str(row.get("description", ""))
            cells = [_label(row), _num(row.get("recorded")), _num(row.get("gain")), _num(row.get("se"), sign=False),
                     str(row.get("pairs", 0)), str(row.get("verdict", "?")), description]
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        png = base64.b64encode(render_png(check)).decode("ascii")
        parts.append(f"<h3>check {check.get('number', '?')}: {html.escape(setting(check))}</h3>"
                     f'<p class="muted">{check.get("runs")} runs per commit, paired by round (one seed per round); '
                     f'{html.escape(table_lines(check)[-1])}</p>'
                     f'<table class="hits transfer"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
                     f'<img alt="transfer check {check.get("number", "?")}" src="data:image/png;base64,{png}">')
    parts.append("</section>\n")
    return "".join(parts)
