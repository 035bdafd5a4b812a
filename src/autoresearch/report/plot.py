"""progress.png: every experiment of a run on one chart, in the spirit of the original's notebook.

Discarded experiments are faint dots, kept ones green and labelled with what they tried, the
running best is a step line, crashes and rejections sit as marks along the bottom axis, and the
y-range is focused between the best and the baseline (points far outside are pinned to the top
edge as small triangles) so the improvements are readable rather than squashed. Re-measurements
of the best's reference (report/references.py) are orange diamonds between the experiments
they followed, with a dashed step for the bar they set: they explain a run of losses on a
machine that got slower, and the y-range includes them for that reason.

Matplotlib is used through its object API with the Agg canvas: no pyplot, no global backend.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from autoresearch.journal.records import Experiment
from autoresearch.journal.store import Journal
from autoresearch.report.gains import baseline_of, pct_words
from autoresearch.report.references import ReferenceEvent, reference_events
from autoresearch.report.review import summarize
from autoresearch.trial.session import Session

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIGSIZE = (16, 8)  # inches
DPI = 100  # so progress.png is 1600 x 800 pixels
LABEL_CHARS = 42  # kept experiments' descriptions are cut to this
MAX_LABELS = 25  # beyond this many keeps only the biggest steps are labelled

KEEP_COLOR = "#2ca02c"
DISCARD_COLOR = "#9a9a9a"
CRASH_COLOR = "#d62728"
REJECT_COLOR = "#9467bd"
BEST_COLOR = "#1f77b4"
REF_COLOR = "#ff7f0e"


def shorten(text: str, width: int = LABEL_CHARS) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def focus_range(experiments: list[Experiment], maximize: bool,
                also: Iterable[float] = ()) -> tuple[float, float] | None:
    """The y-range between the best and the baseline, with a margin; None with nothing measured.

    ALSO are levels that must be in view too: the best's re-measured references, which are
    measurements of a kept commit (not outliers) and show where the machine has moved."""
    measured = [e.metric for e in experiments if e.status in ("keep", "discard") and e.metric is not None]
    if not measured:
        return None
    base = baseline_of(experiments)
    keeps = [e.metric for e in experiments if e.status == "keep" and e.metric is not None]
    ref = base.metric if base is not None and base.metric is not None else measured[0]
    best = (max(keeps) if maximize else min(keeps)) if keeps else (max(measured) if maximize else min(measured))
    levels = [ref, best, *also]
    lo, hi = min(levels), max(levels)
    span = hi - lo
    if span <= 0:
        # One level only (a baseline-only run): show the spread of what was measured around it.
        spread = max(measured) - min(measured)
        span = spread if spread > 0 else max(abs(ref) * 0.05, 1e-6)
        lo, hi = min(lo, min(measured)), max(hi, max(measured))
    margin = 0.15 * span
    return lo - margin, hi + margin


def _title(experiments: list[Experiment], metric_name: str, maximize: bool, tag: str) -> str:
    s = summarize(experiments, maximize)
    c = s["counts"]
    head = f"autoresearch/{tag}: " if tag else ""
    text = (f"{head}{s['experiments']} experiments, {c['keep']} kept, {c['discard']} discarded, "
            f"{c['crash']} crashed, {c['rejected']} rejected")
    if s["best"] is not None and s["baseline"] is not None:
        pct = "" if s["improvement_pct"] is None else f" ({pct_words(s['improvement_pct'])})"
        if s["gain_evidence"] is not None:  # the gain from the evidence (gains.stated_gain), not the two numbers
            pct = f" (as measured)\ngain: {s['gain_lines'][0]}"
        elif s["remeasured"]:  # best vs baseline spans a re-measured bar: say what the keeps gained
            pct = (f" (not like-for-like)\nthe bar was re-measured: keeps gained {s['improvement']:.6g}{pct} "
                   "against the bar of their time")
        text += f"\n{metric_name}: baseline {s['baseline']:.6g} → best {s['best']:.6g}{pct}"
    return text


def ref_x(event: ReferenceEvent, first_seq: int) -> float:
    """Where a re-measurement sits on the seq axis: half way after the experiment it followed."""
    return (event.after_seq if event.after_seq is not None else first_seq - 1) + 0.5


def ref_steps(events: list[ReferenceEvent], keep_seqs: list[int], last_seq: int,
              first_seq: int) -> list[tuple[float, float]]:
    """For each event, the x-span over which its value was the bar: until the next keep (a new
    best has its own number), the next re-measurement, or the last experiment."""
    spans = []
    for i, ev in enumerate(events):
        x = ref_x(ev, first_seq)
        ends = [float(s) for s in keep_seqs if s > x] + [float(last_seq)]
        if i + 1 < len(events):
            ends.append(ref_x(events[i + 1], first_seq))
        spans.append((x, max(x, min(ends))))
    return spans


def _draw_references(ax: "Axes", events: list[ReferenceEvent], keeps: list[Experiment], seqs: list[int],
                     pin_to: tuple[float, float]) -> None:
    """Each re-measurement: its runs (hollow), its median (a diamond) and the bar it set (dashed)."""
    lo, hi = pin_to
    spans = ref_steps(events, [e.seq for e in keeps], max(seqs), min(seqs))
    for ev, (x, end) in zip(events, spans):
        runs = [min(max(v, lo), hi) for v in ev.runs if v is not None]
        if runs:
            ax.scatter([x] * len(runs), runs, s=22, facecolors="none", edgecolors=REF_COLOR, linewidths=1.0,
                       zorder=4, clip_on=False)
        ys = ([ev.old] if ev.old is not None else []) + [ev.new, ev.new]
        xs = ([x] if ev.old is not None else []) + [x, end]
        ax.plot(xs, ys, color=REF_COLOR, linestyle="--", linewidth=1.3, alpha=0.9, zorder=3)
        ax.scatter([x], [ev.new], s=70, marker="D", color=REF_COLOR, edgecolors="black", linewidths=0.6, zorder=5)


def render_figure(experiments: list[Experiment], metric_name: str = "metric", maximize: bool = False,
                  tag: str = "", references: list[ReferenceEvent] | None = None) -> Figure:
    """The progress chart as a matplotlib Figure (not attached to any GUI backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    from matplotlib.transforms import blended_transform_factory

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    title = _title(experiments, metric_name, maximize, tag)
    # a third title line (the re-measured bar's note) needs room above the axes
    fig.subplots_adjust(left=0.07, right=0.98, top=0.9 - 0.03 * max(0, title.count("\n") - 1), bottom=0.09)
    ax.set_title(title, fontsize=12)
    ax.set_xlabel("experiment (seq)")
    ax.set_ylabel(f"{metric_name} ({'higher' if maximize else 'lower'} is better)")
    ax.grid(True, alpha=0.25)
    experiments = [e for e in experiments if e.status != "running"]
    if not experiments:
        ax.text(0.5, 0.5, "no experiments yet", transform=ax.transAxes, ha="center", va="center",
                fontsize=16, color="#777777")
        ax.set_xticks([])
        ax.set_yticks([])
        return fig

    seqs = [e.seq for e in experiments]
    ax.set_xlim(min(seqs) - 1, max(seqs) + 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    references = references or []
    yr = focus_range(experiments, maximize, also=[ev.new for ev in references])
    if yr is not None:
        ax.set_ylim(*yr)
    lo, hi = ax.get_ylim()

    def pin(values: list[float]) -> tuple[list[float], list[bool]]:
        """Points outside the focused range are pinned to its edge (and drawn as such)."""
        return [min(max(v, lo), hi) for v in values], [lo <= v <= hi for v in values]

    discards = [e for e in experiments if e.status == "discard" and e.metric is not None]
    if discards:
        ys, inside = pin([e.metric for e in discards])  # type: ignore[misc]
        xs = [e.seq for e in discards]
        ax.scatter([x for x, i in zip(xs, inside) if i], [y for y, i in zip(ys, inside) if i], s=18,
                   color=DISCARD_COLOR, alpha=0.45, zorder=2, linewidths=0)
        out_x = [x for x, i in zip(xs, inside) if not i]
        out_y = [y for y, i in zip(ys, inside) if not i]
        if out_x:
            edge_marker = "^" if all(y >= hi for y in out_y) else "o"
            ax.scatter(out_x, out_y, s=40, marker=edge_marker, color=DISCARD_COLOR, alpha=0.8, zorder=2,
                       linewidths=0, clip_on=False)

    keeps = [e for e in experiments if e.status == "keep" and e.metric is not None]
    if keeps:
        # The running best: flat until the next keep, then a step to it, out to the last experiment.
        xs = [e.seq for e in keeps] + [max(seqs)]
        ys = [float(e.metric or 0.0) for e in keeps] + [float(keeps[-1].metric or 0.0)]
        ax.step(xs, ys, where="post", color=BEST_COLOR, linewidth=1.6, alpha=0.8, zorder=3)
        ax.scatter([e.seq for e in keeps], ys[:-1], s=60, color=KEEP_COLOR,
                   edgecolors="black", linewidths=0.6, zorder=4)
        labelled = keeps
        if len(keeps) > MAX_LABELS:
            steps = sorted(keeps[1:], key=lambda e: abs(e.delta() or 0.0), reverse=True)[:MAX_LABELS - 1]
            labelled = [keeps[0], *sorted(steps, key=lambda e: e.seq)]
        for i, e in enumerate(labelled):
            ax.annotate(shorten(e.description), (e.seq, e.metric), xytext=(6, 6 if i % 2 == 0 else -12),
                        textcoords="offset points", fontsize=8, color="#1a661a", rotation=25,
                        rotation_mode="anchor", annotation_clip=True, zorder=5)
    if references:
        _draw_references(ax, references, keeps, seqs, (lo, hi))

    axis = blended_transform_factory(ax.transData, ax.transAxes)
    crashes = [e.seq for e in experiments if e.status == "crash"]
    rejected = [e.seq for e in experiments if e.status == "rejected"]
    if crashes:
        ax.scatter(crashes, [0.02] * len(crashes), transform=axis, marker="x", s=30, color=CRASH_COLOR,
                   zorder=4, clip_on=False)
    if rejected:
        ax.scatter(rejected, [0.05] * len(rejected), transform=axis, marker="v", s=30, color=REJECT_COLOR,
                   zorder=4, clip_on=False)

    legend = [
        Line2D([], [], marker="o", linestyle="", color=KEEP_COLOR, markeredgecolor="black", label="kept"),
        Line2D([], [], marker="o", linestyle="", color=DISCARD_COLOR, alpha=0.6, label="discarded"),
        Line2D([], [], color=BEST_COLOR, label="running best"),
        Line2D([], [], marker="x", linestyle="", color=CRASH_COLOR, label="crashed"),
        Line2D([], [], marker="v", linestyle="", color=REJECT_COLOR, label="rejected"),
    ]
    if references:
        legend += [
            Line2D([], [], marker="D", linestyle="", color=REF_COLOR, markeredgecolor="black",
                   label="reference re-measured"),
            Line2D([], [], color=REF_COLOR, linestyle="--", label="the best's reference"),
        ]
    ax.legend(handles=legend, loc="upper right" if not maximize else "lower right", fontsize=9, framealpha=0.85)
    return fig


def render_png(experiments: list[Experiment], metric_name: str = "metric", maximize: bool = False,
               tag: str = "", references: list[ReferenceEvent] | None = None) -> bytes:
    """The chart as PNG bytes (the report embeds these)."""
    fig = render_figure(experiments, metric_name, maximize, tag, references)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _source(source: Session | Journal, tag: str | None, metric_name: str | None,
            maximize: bool | None) -> tuple[list[Experiment], str, str, bool, list[ReferenceEvent]]:
    if isinstance(source, Journal):
        journal = source
        tag = tag or (journal.tags() or [""])[-1]
        name, goal_max = metric_name or "metric", bool(maximize)
    else:
        journal = source.journal
        tag = tag or source.tag or (journal.tags() or [""])[-1]
        name = metric_name or source.config.metric.name
        goal_max = source.config.maximize if maximize is None else maximize
    experiments = journal.experiments(tag) if tag else []
    references = reference_events(journal, tag, experiments) if tag else []
    return experiments, tag, name, goal_max, references


def write_plot(source: Session | Journal, path: Path | str, *, tag: str | None = None,
               metric_name: str | None = None, maximize: bool | None = None) -> Path:
    """Write progress.png for one tag (the session's current one by default) and return its path.

    SOURCE is a Session (metric name and goal come from its config) or a bare Journal (pass
    metric_name and maximize, else "metric" and minimize)."""
    experiments, tag, name, goal_max, references = _source(source, tag, metric_name, maximize)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(render_png(experiments, name, goal_max, tag, references))
    tmp.replace(path)  # a reader never sees half a PNG
    return path


__all__ = ["DPI", "FIGSIZE", "focus_range", "ref_steps", "ref_x", "render_figure", "render_png", "shorten",
           "write_plot"]
