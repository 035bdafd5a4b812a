"""How much a session gained, told honestly when the machine changed under it.

Every keep is decided against the bar of its time (`Experiment.best_before`): the best's own
measurement, or its re-measurement when the loop suspected drift (reference.py) or `autoresearch
noise` ran. The usual headline, best vs baseline, subtracts two numbers measured at different
times. When the bar was re-measured in between and moved (the machine got slower or faster), that
difference mixes the machine's change into the research's: in tests/trial/test_reference.py the raw figure
reads "baseline 10.01 -> best 14.02", 40 % worse, while the session's one real keep gained 0.99.

`session_gain` sums the chain of keeps instead: each keep's metric against the bar it beat, in
the goal's direction. Without a re-measurement the chain telescopes (each bar is the previous
keep's recorded metric), so it equals best - baseline and every headline reads as before; the
headline then shows the raw figure itself, so its digits do not change. A keep's metric is the
recorded one: for a keep confirmed by paired re-runs, the median of its screening run and its
confirmation runs (verdict/flow.py), which is also the bar the next candidate had to beat, so
confirmed keeps telescope the same way. Whatever moved the bar between two keeps (a
re-measurement, or a new epoch's baseline after the harness changed) is the keep's `shift`: raw =
chain + the shifts, exactly.

The text helpers here are shared by every place that states the gain (review, report.html,
progress.png's title, status, the live view, quickstart), so they say the same thing, and a loss
reads "worse by 4.01 (-40.06%)", never "-40.06% better".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from autoresearch.config.task import VerdictSection
from autoresearch.journal.records import Experiment, NoiseRecord
from autoresearch.verdict.estimate import Estimate, decision_estimate, paired_estimate, sum_estimates
from autoresearch.verdict.noise import advise, spread
from autoresearch.verdict.stats import improvement


def baseline_of(experiments: Iterable[Experiment]) -> Experiment | None:
    """The run's reference point: its first kept baseline (else the first measured experiment)."""
    experiments = list(experiments)
    for exp in experiments:
        if exp.is_baseline and exp.status == "keep" and exp.metric is not None:
            return exp
    for exp in experiments:
        if exp.status in ("keep", "discard") and exp.metric is not None:
            return exp
    return None


def best_of(experiments: Iterable[Experiment]) -> Experiment | None:
    """The last keep: keeps only ever improve, so it is the branch tip's record."""
    keeps = [e for e in experiments if e.status == "keep" and e.metric is not None]
    return keeps[-1] if keeps else None


@dataclass(frozen=True)
class Step:
    """One keep after the baseline: how far it beat its bar, and how far the bar had moved."""

    seq: int
    bar: float | None  # what it was compared with (None: a new epoch's baseline, compared with nothing)
    metric: float
    gain: float  # metric vs bar in the goal's direction (positive is better); 0 for an epoch's baseline
    shift: float  # bar vs the previous keep's own metric, in the goal's direction (0: nothing moved it)
    confirmed: bool  # its metric includes paired confirmation runs


@dataclass(frozen=True)
class SessionGain:
    """The session's gain, both ways. `remeasured`: the raw comparison spans a move of the bar."""

    baseline: float | None
    baseline_seq: int | None
    best: float | None
    best_seq: int | None
    chain: float | None  # the keeps' gains, summed (positive is better)
    chain_pct: float | None  # chain relative to the baseline's metric, in percent
    raw: float | None  # best vs baseline as measured (positive is better)
    raw_pct: float | None
    remeasured: bool
    shift: float = 0.0  # raw - chain: how far the bar moved, in the goal's direction
    steps: list[Step] = field(default_factory=list)

    @property
    def headline(self) -> float | None:
        """The figure to lead with: the chain when the bar moved, else the raw figure (equal)."""
        return self.chain if self.remeasured else self.raw

    @property
    def headline_pct(self) -> float | None:
        return self.chain_pct if self.remeasured else self.raw_pct

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["headline"], data["headline_pct"] = self.headline, self.headline_pct
        return data


def _moved(a: float, b: float) -> bool:
    """Whether two numbers differ beyond the last bits a database round trip could change."""
    return abs(a - b) > 1e-12 * max(1.0, abs(a), abs(b))


def session_gain(experiments: Iterable[Experiment], maximize: bool) -> SessionGain:
    """The chain of keeps from the baseline to the best, each against the bar of its time.

    EXPERIMENTS: one tag's experiments in seq order (any status: only keeps count). Crashes,
    rejections and discards between keeps change nothing; keeps before the baseline are ignored.
    """
    experiments = list(experiments)
    sign = 1.0 if maximize else -1.0
    base = baseline_of(experiments)
    best = best_of(experiments)
    if base is None or base.metric is None:
        return SessionGain(None, None, best.metric if best else None, best.seq if best else None,
                           None, None, None, None, False)
    steps: list[Step] = []
    previous = base.metric
    for e in experiments:
        if e.seq <= base.seq or e.status != "keep" or e.metric is None:
            continue
        confirm = e.details.get("confirm")
        confirmed = isinstance(confirm, dict) and ("pairs" in confirm or confirm.get("test") == "reference")
        if e.is_baseline or e.best_before is None:
            # A new epoch's baseline (the harness changed): compared with nothing, it gains
            # nothing; its distance from the old best is the measurement's change.
            steps.append(Step(e.seq, None, e.metric, 0.0, sign * (e.metric - previous), confirmed))
        else:
            shift = sign * (e.best_before - previous) if _moved(e.best_before, previous) else 0.0
            steps.append(Step(e.seq, e.best_before, e.metric, sign * (e.metric - e.best_before), shift, confirmed))
        previous = e.metric
    top = best if best is not None and best.seq >= base.seq else base
    assert top.metric is not None
    raw = sign * (top.metric - base.metric)
    chain = sum(s.gain for s in steps)
    shift = sum(s.shift for s in steps)

    def pct(value: float) -> float | None:
        return 100.0 * value / abs(base.metric) if base.metric else None  # type: ignore[arg-type]

    return SessionGain(base.metric, base.seq, top.metric, top.seq, chain, pct(chain), raw, pct(raw),
                       remeasured=any(s.shift != 0.0 for s in steps), shift=shift, steps=steps)


# -- words --------------------------------------------------------------------------------------

def change_words(value: float, pct: float | None, digits: str = ".6g") -> str:
    """A gain in words: "improved by 0.99, +9.89%" or "worse by 4.01, -40.06%" (never "-40% better")."""
    tail = "" if pct is None else f", {pct:+.2f}%"
    if value > 0:
        return f"improved by {value:{digits}}{tail}"
    if value < 0:
        return f"worse by {-value:{digits}}{tail}"
    return "no change" + tail


def pct_words(pct: float) -> str:
    """A relative gain as a short phrase: "9.89% better" or "40.06% worse"."""
    return f"{pct:.2f}% better" if pct >= 0 else f"{-pct:.2f}% worse"


def raw_note(g: SessionGain, digits: str = ".6g") -> str:
    """Why the raw best-vs-baseline figure is not the gain, in one plain sentence ("" when it is)."""
    if not g.remeasured or g.raw is None or g.baseline is None or g.best is None:
        return ""
    moved = "worse" if g.shift < 0 else "better"
    # Not "the machine changed": a re-measurement within the noise moves the bar too, and this
    # sentence must be true either way.
    return (f"the best was re-measured after the baseline (the bar came out "
            f"{abs(g.shift):{digits}} {moved}): raw best vs baseline ({g.best:{digits}} vs {g.baseline:{digits}}, "
            f"{change_words(g.raw, g.raw_pct, digits)}) is not a like-for-like comparison; the gain is the sum of "
            f"each keep against the bar of its time")


# -- gains stated from the evidence -------------------------------------------------------------
#
# Every printed gain of a keep (the verdict line, review's kept table, the report's top hits,
# finalize's commit messages) and the session's headline come from here, from the evidence of the
# decision: its confirmation runs (paired, or against the best's reference runs), never its
# metric against a bar that may have been measured during a burst of load. The session's headline
# is a side-by-side `autoresearch compare` of baseline and best when one was made; else the keeps'
# own estimates summed; only a session with greedy keeps (no confirmation) falls back to the chain
# above, said to be from single runs.

def _g(value: float) -> str:
    return f"{value:.4g}"


def keep_estimate(exp: Experiment, maximize: bool) -> Estimate | None:
    """The gain EXP's decision measured: its confirmation's estimate with its interval; for a
    keep decided on its screen alone, its metric against the bar of its time (how = "screen",
    no interval: one run, and the bar may be stale). None without a metric or a bar."""
    est = decision_estimate(exp.details, maximize)
    if est is not None:
        return est
    if exp.metric is None or exp.best_before is None:
        return None
    return Estimate(improvement(exp.metric, exp.best_before, maximize), None, None, 1, "screen", exp.best_before)


SOURCE = {"paired": "runs side by side with its parent", "reference": "runs against the best's reference runs",
          "compare": "runs of baseline and best side by side, by autoresearch compare",
          "sum": "the keeps' own estimates summed"}


def estimate_words(est: Estimate) -> str:
    """A stated gain in words: "improved by 0.07 ± 0.03 (+4.51% ± 1.9%; 8 runs side by side with
    its parent)", or for a screen: "0.12 better than the bar in one run (not confirmed)"."""
    if est.how == "screen":
        pct = f" ({est.pct:+.2f}%)" if est.pct is not None else ""
        side = "better" if est.value >= 0 else "worse"
        return f"{_g(abs(est.value))}{pct} {side} than the bar of its time in one run (not confirmed)"
    verb = "improved by" if est.value >= 0 else "worse by"
    half = f" ± {est.half:.2g}" if est.half is not None else " (no interval)"
    pct = ""
    if est.pct is not None:
        pct = f"{est.pct:+.2f}%" + (f" ± {est.pct_half:.2g}%" if est.pct_half is not None else "")
    where = SOURCE.get(est.how, est.how)
    runs = f"{est.runs} " if est.how != "sum" else ""
    return f"{verb} {_g(abs(est.value))}{half} ({pct + '; ' if pct else ''}{runs}{where})"


def estimate_short(est: Estimate) -> str:
    """A stated gain in a table cell: "+0.07 ± 0.03" (positive is better), "+0.12 (1 run)"."""
    if est.half is None:
        return f"{est.value:+.4g} ({'1 run' if est.how == 'screen' else 'no interval'})"
    return f"{est.value:+.4g} ± {est.half:.2g}"


def compare_estimate(record: dict[str, Any], maximize: bool) -> Estimate:
    """The estimate of one `autoresearch compare` record (B against A, pair by pair)."""
    return paired_estimate([float(v) for v in record["a_runs"]], [float(v) for v in record["b_runs"]],
                           maximize, how="compare")


def stated_gain(experiments: Iterable[Experiment], maximize: bool, comparisons: Iterable[dict] = ()) -> Estimate | None:
    """The session's gain from the evidence: the newest `compare` of exactly its baseline and best
    commits; else its keeps' estimates summed, when every keep has one; else None (greedy keeps:
    the caller states the chain, as from single runs)."""
    experiments = list(experiments)
    base, best = baseline_of(experiments), best_of(experiments)
    if base is None or best is None or best.seq <= base.seq:
        return None
    for record in reversed(list(comparisons)):
        if record.get("a") == base.commit_sha and record.get("b") == best.commit_sha and record.get("a_runs"):
            return compare_estimate(record, maximize)
    keeps = [e for e in experiments if e.seq > base.seq and e.status == "keep" and not e.is_baseline]
    parts = [decision_estimate(e.details, maximize) for e in keeps]
    if not keeps or any(p is None for p in parts):
        return None
    return sum_estimates([p for p in parts if p is not None], base.metric)


def noise_advice(noise: NoiseRecord | None, policy: VerdictSection) -> str:
    """The advice of the latest `noise` record for the task's policy, in the one line `noise`
    itself ends with (verdict.advise): status and the report print this, never a stored number."""
    if noise is None or len(noise.values) < 2:
        return ""
    return advise(spread(noise.values), policy).headline


def runs_of(exp: Experiment) -> int:
    """The runs an experiment's decision took: its screening runs and its confirmation runs
    (both sides), from its record."""
    screening = len(exp.details.get("repeats") or []) or 1
    confirm = exp.details.get("confirm")
    if not isinstance(confirm, dict):
        return screening
    best = len(confirm.get("best_runs") or [])
    if confirm.get("test") == "reference":  # its candidate runs include the screening ones
        return max(screening, len(confirm.get("candidate_runs") or [])) + best
    return screening + best + len(confirm.get("candidate_runs") or [])


def runs_per_decision(experiments: Iterable[Experiment]) -> dict[str, Any] | None:
    """Runs per decided experiment (keeps and discards, the baseline aside): mean and max."""
    counts = [runs_of(e) for e in experiments if e.status in ("keep", "discard") and not e.is_baseline]
    if not counts:
        return None
    return {"mean": sum(counts) / len(counts), "max": max(counts), "decisions": len(counts)}


def headline_lines(g: SessionGain, stated: Estimate | None, label: str = "gain") -> list[str]:
    """The session's gain as status and review print it (one place, so they agree): the stated
    gain from the evidence when there is one, else the chain (single runs, not confirmed)."""
    if g.headline is None or g.best_seq == g.baseline_seq:
        return []
    pad, note = (f"{label:<8} ", f"{'note':<8} ") if label else ("", "note: ")
    if stated is not None:
        if stated.how != "sum":
            return [pad + estimate_words(stated)]
        return [pad + estimate_words(stated),
                note + "not yet measured side by side: `autoresearch compare` runs baseline and best in pairs"]
    if not g.remeasured:
        return [pad + f"{change_words(g.raw, g.raw_pct)} vs the baseline {g.baseline:.6f} (seq {g.baseline_seq}), "  # type: ignore[arg-type]
                "not measured side by side"]
    keeps = sum(1 for step in g.steps if step.bar is not None)
    return [pad + f"{change_words(g.chain, g.chain_pct)}: {keeps} keep{'s' if keeps != 1 else ''}, each against "  # type: ignore[arg-type]
            "the bar of its time", note + raw_note(g)]


__all__ = ["Estimate", "SOURCE", "compare_estimate", "estimate_short", "estimate_words", "headline_lines", "keep_estimate",
           "noise_advice", "runs_of",
           "runs_per_decision", "stated_gain"]
__all__ += ["SessionGain", "Step", "baseline_of", "best_of", "change_words", "pct_words", "raw_note", "session_gain"]
