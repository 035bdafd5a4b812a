"""The research log in the brief: a bounded digest of the whole session, not just the last rows.

Experiments are grouped by what they changed (`changes.py`): a knob moved up, a knob moved down
(or set to a value, when it is not a number), a code region edited. An experiment that did
several things counts in each of its groups. Per group: how often it was tried and with what
verdicts, and its effect sizes, the improvement over the best of the time (positive is better,
whatever the metric's direction): the best one, and the mean with its standard error. Each
group is one line, in one of three sections (so an idea tried three times shows once):

- live leads: groups whose latest try was a keep, or that came within the noise of a keep;
- dead ends: groups tried at least twice, never kept, no improvement beyond the noise;
- everything else tried, the most tried first;
- near-duplicates: a knob set to two values within NEAR (relative) whose results were within
  the noise of each other: values close to a measured one need not be tried again;
- repeats: proposals whose tree had been measured already (`duplicate`, no run spent);
- the current best's lineage: the keeps that led to it.

Every part has a cap (groups, values per group, lines, characters), so the digest's size does
not grow with the history: `benchmarks/brief.py` measures it at 10, 100 and 1,000 experiments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from autoresearch.journal.records import Experiment

MAX_GROUPS = 20  # rows of the table (the most tried first)
MAX_VALUES = 8  # values shown per knob group (the latest)
MAX_LIST = 6  # dead ends, leads, near-duplicates, repeats each
MAX_LINEAGE = 10  # keeps shown in the best's lineage (the latest)
LINE_MAX_CHARS = 200
DIGEST_MAX_CHARS = 7_000  # about 1,750 tokens: the whole digest, however long the session
NEAR = 0.10  # relative distance under which two values of one knob are near-duplicates
NOT_TRIED = {"no-change", "agent-error", "agent-timeout", "not-installed", "no-knobs", "bad-edit", "interrupted"}


@dataclass
class Group:
    key: str
    tries: list[Experiment] = field(default_factory=list)
    effects: list[tuple[float, int]] = field(default_factory=list)  # (improvement, seq) of measured tries
    values: list[tuple[Any, str, int]] = field(default_factory=list)  # knob groups: (new value, mark, seq)

    def count(self, status: str) -> int:
        return sum(1 for e in self.tries if e.status == status and e.reason != "duplicate")

    @property
    def repeats(self) -> int:
        return sum(1 for e in self.tries if e.reason == "duplicate")

    def mean_se(self) -> tuple[float, float] | None:
        values = [v for v, _ in self.effects]
        if not values:
            return None
        mean = sum(values) / len(values)
        if len(values) < 2:
            return mean, math.nan
        var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
        return mean, math.sqrt(var / len(values))

    def best(self) -> tuple[float, int] | None:
        return max(self.effects) if self.effects else None


def improvement(exp: Experiment, maximize: bool) -> float | None:
    """EXP's gain over the best of its time (positive: better), when it was measured."""
    if exp.status not in ("keep", "discard") or exp.metric is None or exp.best_before is None \
            or exp.reason == "duplicate" or exp.is_baseline:
        return None
    delta = exp.metric - exp.best_before
    return delta if maximize else -delta


def _mark(exp: Experiment) -> str:
    if exp.reason == "duplicate":
        return "(repeat)"
    return {"keep": "✓", "discard": "✗", "crash": "(crash)", "rejected": "(rejected)"}.get(exp.status, "?")


def _knob_keys(name: str, old: Any, new: Any) -> str:
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new))
    if numbers:
        return f"{name} {'up' if new > old else 'down'}"
    if old is None:
        return f"{name} (added)"
    if new is None:
        return f"{name} (removed)"
    return f"{name} = {new!r}"


def group_experiments(experiments: list[Experiment], changes: dict[int, dict], maximize: bool) -> dict[str, Group]:
    """Key -> group over the settled experiments that changed something. CHANGES: seq -> the
    experiment's `{"knobs": {name: [old, new]}, "regions": [...]}`."""
    groups: dict[str, Group] = {}
    for exp in experiments:
        if exp.status == "running" or exp.is_baseline or exp.reason in NOT_TRIED:
            continue
        change = changes.get(exp.seq) or {}
        keys: list[tuple[str, Any]] = [(_knob_keys(name, *pair), pair[1])
                                       for name, pair in sorted((change.get("knobs") or {}).items())]
        keys += [(region, None) for region in change.get("regions") or []]
        if not keys:
            keys = [("(change not read)", None)]
        gain = improvement(exp, maximize)
        for key, value in keys:
            group = groups.setdefault(key, Group(key))
            group.tries.append(exp)
            if gain is not None:
                group.effects.append((gain, exp.seq))
            if value is not None or key.endswith("up") or key.endswith("down"):
                group.values.append((value, _mark(exp), exp.seq))
    return groups


def _fmt(value: float) -> str:
    return f"{value:+.4g}"


def _effect_text(group: Group) -> str:
    best, stats = group.best(), group.mean_se()
    if best is None or stats is None:
        return "no measured effect"
    mean, se = stats
    spread = f" ± {se:.2g}" if math.isfinite(se) else ""
    return f"best {_fmt(best[0])} (#{best[1]}), mean {_fmt(mean)}{spread} over {len(group.effects)}"


def _verdicts(group: Group) -> str:
    parts = [f"{group.count(s)} {s}" for s in ("keep", "discard", "crash", "rejected") if group.count(s)]
    if group.repeats:
        parts.append(f"{group.repeats} repeat")
    return ", ".join(parts)


def _values_text(group: Group) -> str:
    if not group.values:
        return ""
    shown = group.values[-MAX_VALUES:]
    more = len(group.values) - len(shown)
    text = " ".join(f"{v!r}{m}" for v, m, _ in shown)
    return f"; values {'… ' if more else ''}{text}"


def is_dead_end(group: Group, noise: float) -> bool:
    best = group.best()
    return len(group.tries) >= 2 and group.count("keep") == 0 and (best is None or best[0] <= noise)


def is_live_lead(group: Group, noise: float) -> bool:
    if not group.tries or is_dead_end(group, noise):
        return False
    latest = group.tries[-1]
    best = group.best()
    return latest.status == "keep" or (group.count("keep") == 0 and best is not None and best[0] > -noise)


def near_duplicates(groups: dict[str, Group], noise: float) -> list[str]:
    """Pairs of measured values of one knob within NEAR of each other, with results within NOISE."""
    by_knob: dict[str, list[tuple[float, float, int]]] = {}
    for key, group in groups.items():
        if not (key.endswith(" up") or key.endswith(" down")):
            continue
        gains = dict((seq, gain) for gain, seq in group.effects)
        for value, _, seq in group.values:
            if isinstance(value, (int, float)) and not isinstance(value, bool) and seq in gains:
                by_knob.setdefault(key.rsplit(" ", 1)[0], []).append((float(value), gains[seq], seq))
    found = []
    for knob, points in sorted(by_knob.items()):
        points.sort()
        for (v1, g1, s1), (v2, g2, s2) in zip(points, points[1:]):
            scale = max(abs(v1), abs(v2)) or 1.0
            if abs(v2 - v1) / scale <= NEAR and abs(g2 - g1) <= max(noise, 1e-12):
                found.append(f"{knob} {v1:g} (#{s1}) ≈ {v2:g} (#{s2}): the same within noise")
    return found


def lineage(experiments: list[Experiment], best: Experiment | None, metric: str) -> list[str]:
    """The keeps of the best's epoch, oldest first, each with what it changed."""
    if best is None:
        return []
    epoch = best.details.get("epoch", 0)
    keeps = [e for e in experiments if e.status == "keep" and e.details.get("epoch", 0) == epoch and e.seq <= best.seq]
    steps = []
    for e in keeps:
        value = f"{e.metric:.6g}" if e.metric is not None else "-"
        what = "baseline" if e.is_baseline else " ".join(e.description.split())[:70]
        steps.append(f"#{e.seq} {what} → {metric} {value}")
    return steps


def _row(group: Group) -> str:
    return _clip(f"- {group.key}: {len(group.tries)} tried ({_verdicts(group)}); {_effect_text(group)}"
                 f"{_values_text(group)}")


def _clip(line: str) -> str:
    return line if len(line) <= LINE_MAX_CHARS else line[: LINE_MAX_CHARS - 1] + "…"


def research_digest(experiments: list[Experiment], changes: dict[int, dict], *, metric: str, maximize: bool,
                    noise: float = 0.0, best: Experiment | None = None, title: str = "",
                    max_chars: int = DIGEST_MAX_CHARS) -> str:
    """The digest as markdown (empty before the first tried change). NOISE: the run-to-run sd (0
    when unknown), the scale below which an effect is not told apart from chance. TITLE: another
    heading (the previous run's log); MAX_CHARS: a tighter cap."""
    groups = group_experiments(experiments, changes, maximize)
    if not groups:
        return ""
    tried = sum(1 for e in experiments if not e.is_baseline and e.status != "running")
    noise_text = f"noise sd {noise:.3g}" if noise > 0 else "noise not measured yet"
    heading = title or "## Research log"
    blocks = [[f"{heading} (all {tried} experiments of this run, grouped by what they changed)"],
              [f"Effect = improvement over the best of its time in `{metric}` (positive is better; {noise_text}; "
               "± is the standard error). An experiment that changed several things counts in each group."]]
    ordered = sorted(groups.values(), key=lambda g: (-len(g.tries), -g.tries[-1].seq))
    dead = [g for g in ordered if is_dead_end(g, noise)]
    leads = sorted((g for g in ordered if is_live_lead(g, noise)), key=lambda g: -g.tries[-1].seq)[:MAX_LIST]
    shown = {g.key for g in dead} | {g.key for g in leads}
    rest = [g for g in ordered if g.key not in shown]
    if leads:
        blocks.append(["Live leads (the latest try won, or came within noise of winning):", *map(_row, leads)])
    if dead:
        more = [_clip(f"- … {len(dead) - MAX_LIST} more: " + ", ".join(g.key for g in dead[MAX_LIST:]))] \
            if len(dead) > MAX_LIST else []
        blocks.append(["Dead ends (tried again and again, never kept, never better than noise: do not try them "
                       "again):", *map(_row, dead[:MAX_LIST]), *more])
    if rest:
        more = [f"- … {len(rest) - MAX_GROUPS} more groups, {sum(len(g.tries) for g in rest[MAX_GROUPS:])} tries"] \
            if len(rest) > MAX_GROUPS else []
        blocks.append(["Everything else tried (most tried first):", *map(_row, rest[:MAX_GROUPS]), *more])
    near = near_duplicates(groups, noise)
    if near:
        blocks.append([f"Near-duplicates (values within {NEAR:.0%} of each other measured the same: a value this "
                       "close to a measured one is not a new experiment):", *(f"- {n}" for n in near[:MAX_LIST])])
    repeats = [e for e in experiments if e.reason == "duplicate"]
    if repeats:
        pairs = ", ".join(f"#{e.seq}=#{e.details.get('duplicate_of', '?')}" for e in repeats[-MAX_LIST:])
        blocks.append([_clip(f"Repeats (proposals that were exactly a tree measured before; no run spent): "
                             f"{len(repeats)}, the latest {pairs}")])
    steps = lineage(experiments, best, metric)
    if steps:
        latest = steps[-MAX_LINEAGE:]
        earlier = [f"- … {len(steps) - len(latest)} earlier keeps"] if len(steps) > len(latest) else []
        blocks.append(["The best's lineage (its keeps, oldest first):", *earlier, *(_clip(f"- {x}") for x in latest)])
    lines = [line for block in blocks for line in [*block, ""]][:-1]
    text = "\n".join(lines) + "\n"
    if len(text) > max_chars:
        text = text[: max_chars - 20].rsplit("\n", 1)[0] + "\n[research log cut]\n"
    return text
