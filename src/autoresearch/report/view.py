"""What the view of a running loop shows and how it looks: `ViewState` (filled by phase events in
this process, or from the journal for a loop in another), its rich panel (`render_state`) and
the plain line of one verdict (`verdict_line`).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from autoresearch.journal.records import Experiment, fixed
from autoresearch.report.gains import SessionGain, estimate_words, keep_estimate, pct_words, session_gain, stated_gain
from autoresearch.report.review import DONE, fmt_delta, fmt_num
from autoresearch.trial.session import Session

RECENT = 6  # verdicts shown under the current experiment
FAILURE_CHARS = 240  # a failed proposal's message, cut to this in the views
STATUS_STYLE = {"keep": "bold green", "discard": "dim", "crash": "bold red", "rejected": "bold magenta",
                "running": "yellow"}
PHASE_STYLE = {"proposing": "cyan", "guarding": "blue", "running": "yellow", "evaluating": "magenta",
               "confirming": "bright_blue", "idle": "dim"}


@dataclass
class ViewState:
    """What the view shows; filled by phase events (LiveView) or from the journal (watch)."""

    metric: str = ""
    tag: str = ""
    seq: int | None = None
    phase: str = "idle"
    label: str = ""
    description: str = ""
    agent: str = ""
    budget: float | None = None
    phase_started: float | None = None
    best: float | None = None
    best_seq: int | None = None
    baseline: float | None = None
    maximize: bool | None = None
    counts: dict[str, int] = field(default_factory=lambda: {s: 0 for s in DONE})
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    began: float = field(default_factory=time.time)
    finished: int = 0  # verdicts seen since the view began (for the rate)
    keeps: list = field(default_factory=list)  # the kept experiments, baseline first (for the gain)
    confirm: dict = field(default_factory=dict)  # the last confirmation run's progress (verdict.flow._progress)

    def record(self, exp: Experiment) -> None:
        """Take in one finished experiment."""
        if exp.status in self.counts:
            self.counts[exp.status] += 1
        if not self.metric and exp.metric is not None:
            # Without a config, the metric's name is the printed metric whose value is the metric.
            self.metric = next((k for k, v in exp.metrics.items() if v == exp.metric), "")
        if exp.status == "keep" and exp.metric is not None:
            self.keeps.append(exp)
            if exp.is_baseline and self.baseline is None:
                self.baseline = exp.metric
            if self.best is not None and exp.metric != self.best and self.maximize is None:
                self.maximize = exp.metric > self.best
            self.best, self.best_seq = exp.metric, exp.seq
        self.recent.append(exp)

    def gain(self) -> SessionGain | None:
        """The session's gain as every other view states it (gains.py): best vs baseline, or the
        keeps' own gains summed when the bar was re-measured in between."""
        if self.best is None or not self.baseline or self.maximize is None:
            return None
        return session_gain(self.keeps, self.maximize)

    def improvement_pct(self) -> float | None:
        g = self.gain()
        return g.headline_pct if g is not None else None


def failure_message(exp: Experiment, limit: int = FAILURE_CHARS) -> str:
    """Why a proposal failed, in one line (the proposer's own message), or "" for other verdicts.

    A failed proposal's description only names the reason (`(tune failed: agent-error)`); the
    message says what to do about it (`tune: no knobs found ...`), so the views show it."""
    message = exp.details.get("message") if exp.status == "crash" and isinstance(exp.details, dict) else None
    if not message:
        return ""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def verdict_line(exp: Experiment, metric: str = "", best: float | None = None, maximize: bool | None = None) -> str:
    """One plain line for a finished experiment. A confirmed keep states its gain from its
    confirmation's evidence (with MAXIMIZE known), never its metric against a bar that may be stale."""
    stamp = time.strftime("%H:%M:%S", time.localtime(exp.finished_at or time.time()))
    name = metric or "metric"
    est = keep_estimate(exp, maximize) if exp.status == "keep" and maximize is not None else None
    if est is not None and est.how != "screen" and exp.metric is not None:
        what = f"{name} {exp.metric:.6f}, {estimate_words(est)}"
        if exp.reason and exp.reason not in ("improved", "not-better"):
            what += f" [{exp.reason}]"
    elif exp.status in ("keep", "discard") and exp.metric is not None:
        delta = exp.delta()
        what = f"{name} {fixed(exp.metric)}" + ("" if delta is None else f" ({fixed(delta, 6, '+')})")
        if exp.reason and exp.reason not in ("improved", "not-better"):
            what += f" [{exp.reason}]"
    else:
        what = exp.reason or "-"
        message = failure_message(exp)
        if message:
            what += f" ({message})"
    best_text = f" | best {fixed(best)}" if best is not None else ""
    return f"{stamp} seq {exp.seq} {exp.status}: {what}{best_text} | {exp.description}"


def confirm_line(info: dict) -> str:
    """One confirmation run's progress: "run 7/20: candidate 1.49 vs best 1.61, paired diff
    -0.07 ± 0.03" (the difference is candidate - best, in the metric's units)."""
    text = f"run {info.get('run')}/{info.get('of')}"
    if info.get("candidate") is not None and info.get("best") is not None:
        text += f": candidate {info['candidate']:.6g} vs best {info['best']:.6g}"
        if info.get("diff") is not None:
            half = info.get("half")
            what = "paired diff" if info.get("paired") else "diff vs its reference runs"
            text += f", {what} {info['diff']:+.4g}" + (f" ± {half:.2g}" if half is not None else "")
    return text


def _fmt_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def render_state(state: ViewState, now: float | None = None, width: int = 40) -> RenderableType:
    """The view as a rich renderable (a panel)."""
    now = now or time.time()
    metric = state.metric or "metric"
    head = Text()
    if state.best is not None:
        head.append("best ", style="dim")
        head.append(fixed(state.best), style="bold green")
        head.append(f" {metric}" + (f" (seq {state.best_seq})" if state.best_seq is not None else ""))
        if state.baseline is not None:
            head.append(f" · baseline {fixed(state.baseline)}", style="dim")
        g = state.gain()
        evidence = stated_gain(state.keeps, state.maximize) if g is not None and state.maximize is not None else None
        if evidence is not None and evidence.pct is not None:  # the keeps' confirmation estimates, summed
            head.append(f" · {pct_words(evidence.pct)}", style="green" if evidence.pct >= 0 else "red")
            if evidence.pct_half is not None:
                head.append(f" ± {evidence.pct_half:.2g}% (the keeps' paired estimates)", style="dim")
        elif g is not None and g.headline_pct is not None:
            head.append(f" · {pct_words(g.headline_pct)}", style="green" if g.headline_pct >= 0 else "red")
            if g.remeasured:
                head.append(" (sum of keeps: the bar was re-measured, best vs baseline is not like-for-like)",
                            style="dim")
    else:
        head.append("no best yet", style="dim")

    current = Text()
    if state.seq is not None and state.phase != "idle":
        current.append(f"seq {state.seq} ", style="bold")
        label = f" ({state.label})" if state.label and state.label != "run" else ""
        current.append(f"{state.phase}{label}", style=PHASE_STYLE.get(state.phase, ""))
        what = state.description or (f"{state.agent} is proposing" if state.phase == "proposing" and state.agent else "")
        if what:
            current.append(f" · {what}")
    else:
        current.append("waiting for the next experiment", style="dim")

    bar: RenderableType = Text("")
    if state.phase != "idle" and state.phase_started is not None:
        elapsed = max(0.0, now - state.phase_started)
        grid = Table.grid(padding=(0, 1))
        if state.phase == "running" and state.budget:
            grid.add_row(ProgressBar(total=state.budget, completed=min(elapsed, state.budget), width=width),
                         Text(f"{_fmt_seconds(elapsed)} / {_fmt_seconds(state.budget)}"
                              + (" (over budget: finishing)" if elapsed > state.budget else ""), style="dim"))
        else:
            grid.add_row(Text(f"{state.phase} for {_fmt_seconds(elapsed)}", style="dim"))
        if state.confirm.get("seq") == state.seq and state.confirm.get("of"):
            # a decision that needs many runs shows how far it is (at most "of" runs)
            grid.add_row(ProgressBar(total=float(state.confirm["of"]), completed=float(state.confirm["run"]), width=width),
                         Text("confirming: " + confirm_line(state.confirm), style="bright_blue"))
        bar = grid

    c = state.counts
    total = sum(c.values())
    hours = (now - state.began) / 3600
    rate = f" · {state.finished / hours:.1f}/h" if state.finished and hours > 0 else ""
    counts = Text()
    counts.append(f"{total} done: ", style="dim")
    for i, status in enumerate(DONE):
        counts.append(f"{status} {c[status]}", style=STATUS_STYLE[status] if c[status] else "dim")
        counts.append(" · " if i < len(DONE) - 1 else "", style="dim")
    counts.append(rate, style="dim")

    parts: list[RenderableType] = [head, current, bar, counts]
    if state.recent:
        table = Table(show_header=True, header_style="dim", box=None, padding=(0, 1), expand=False)
        for col, just in (("seq", "right"), ("verdict", "left"), (metric, "right"), ("delta", "right"),
                          ("description", "left")):
            table.add_column(col, justify=just, no_wrap=col != "description")  # type: ignore[arg-type]
        for e in state.recent:
            verdict = e.status if e.status in ("keep", "discard") else f"{e.status} {e.reason}"
            table.add_row(str(e.seq), Text(verdict, style=STATUS_STYLE.get(e.status, "")), fmt_num(e.metric),
                          fmt_delta(e.delta()) if e.delta() is not None else "",
                          failure_message(e, 120) or e.description)
        parts.append(table)
    title = f"autoresearch/{state.tag}" if state.tag else "autoresearch"
    return Panel(Group(*parts), title=title, title_align="left", border_style="blue")


def seed_from_session(state: ViewState, session: Session, history_rate: bool = False) -> None:
    """Fill the view from the journal: the tag's counts, best, baseline and last verdicts
    (and, with HISTORY_RATE, the experiments per hour over the whole tag)."""
    config = session.config
    state.metric = config.metric.name
    state.maximize = config.maximize
    state.budget = config.budget.seconds
    tag = session.tag
    state.tag = tag
    if not tag:
        return
    counts = session.journal.counts(tag)
    state.counts = {s: counts.get(s, 0) for s in DONE}
    experiments = session.journal.experiments(tag)
    done = [e for e in experiments if e.status in DONE]
    for e in done:
        if e.is_baseline and e.status == "keep" and e.metric is not None and state.baseline is None:
            state.baseline = e.metric
        if e.status == "keep" and e.metric is not None:
            state.best, state.best_seq = e.metric, e.seq
            state.keeps.append(e)
    keep = state.recent.maxlen or 0
    state.recent = deque(done[-keep:] if keep else [], maxlen=keep)
    if history_rate and experiments:
        state.began, state.finished = experiments[0].started_at, len(done)


def infer_phase(session: Session, exp: Experiment) -> tuple[str, str, float]:
    """(phase, label, since) of a running experiment, read from its run folder.

    The harness creates one log per phase (`run.log`, `run.evaluate.log`, `confirm-0-best.log`,
    ...); the newest tells the phase, and the folder's mtime (it changes when an entry is
    created in it) tells when that phase began."""
    run_dir = session.run_dir(exp.seq)
    logs = []
    if run_dir.is_dir():
        logs = [p for p in run_dir.glob("*.log") if p.name != "agent.log"]
    if not logs:
        if exp.description == "(proposing)" or not exp.commit_sha:
            phase = "proposing" if exp.description == "(proposing)" else "guarding"
            return phase, "", exp.started_at
        return "guarding", "", exp.started_at
    newest = max(logs, key=lambda p: p.stat().st_mtime)
    label = newest.name[: -len(".log")]
    try:
        since = run_dir.stat().st_mtime
    except OSError:
        since = exp.started_at
    if label.endswith(".evaluate"):
        return "evaluating", label[: -len(".evaluate")], since
    if label.startswith("confirm-"):
        return "confirming", label, since
    return "running", label, since


def state_from_journal(session: Session, recent: int = RECENT) -> ViewState:
    """The view's state for whatever the journal says now."""
    state = ViewState(recent=deque(maxlen=recent))
    seed_from_session(state, session, history_rate=True)
    running = [e for e in session.journal.running() if not state.tag or e.tag == state.tag]
    if running:
        exp = running[-1]
        phase, label, since = infer_phase(session, exp)
        state.seq, state.phase, state.label, state.phase_started = exp.seq, phase, label, since
        state.description = "" if exp.description == "(proposing)" else exp.description
        state.agent = exp.proposer
    return state
