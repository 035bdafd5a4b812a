"""`autoresearch transfer`: do the session's gains carry over to another configuration?

The gains of a night were measured at one setting of the task's knobs and one budget. Before
using them elsewhere (karpathy checked by hand that the changes kept at depth 12 held at depth
24), this re-measures the epoch's baseline and its best, or with `each` every keep in order, at
another setting: knobs set with `--set NAME=VALUE` (the knobs `tune` sees: proposers.knobs) and
or another `--budget`. Every run happens in a fresh export of its commit with the new values
written into it (proposers.knobs_write), under the task's run contract (trial.measure): the
run branch, the task folder and the best are never touched, and the runs are not the best's
runs (they live in this check's record, never in the runs table that the reference and the
drift rule read). Each step of the chain is judged from paired runs (verdict.transfer), and the
check is recorded in the journal (meta `transfers:<tag>`), which `status`, the report and the
CLI's table read (report.transfer).
"""

from __future__ import annotations

import ast
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from autoresearch.config.task import TaskConfig, with_overrides
from autoresearch.errors import ConfigError, StateError
from autoresearch.git.workspace import clear_dir
from autoresearch.journal.records import Experiment
from autoresearch.journal.transfers import add_transfer, transfers
from autoresearch.proposers.knobs import Knob, KnobError, list_knobs
from autoresearch.proposers.knobs_write import set_knobs
from autoresearch.trial.environment import current_id
from autoresearch.trial.measure import measure
from autoresearch.trial.session import Session
from autoresearch.verdict.paired import pair_differences
from autoresearch.verdict.stats import improvement
from autoresearch.verdict.transfer import carried, round_order

SEED_BASE = 30_000_000  # transfer runs' seeds (noise: 10M, references: 20M)


def parse_sets(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`NAME=VALUE` arguments as a mapping; a malformed one is a ConfigError naming it."""
    sets: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"--set {pair!r}: expected NAME=VALUE, e.g. --set DEPTH=8 (`autoresearch knobs` lists "
                              "the names)")
        sets[name.strip()] = value.strip()
    return sets


def parse_value(text: str, knob: Knob) -> Any:
    """TEXT as a value for KNOB: a Python literal (8, 0.5, "L", (1, 2), True), else the string
    itself; an int where the knob holds a float becomes that float."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if isinstance(knob.value, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if knob.value is not None and value is not None and type(value) is not type(knob.value) \
            and not (isinstance(knob.value, str) and isinstance(value, str)):
        raise ConfigError(f"--set {knob.qualname}={text}: {knob.qualname} holds a {type(knob.value).__name__} "
                          f"({knob.path}:{knob.line}: {knob.source}), not a {type(value).__name__}")
    return value


@dataclass
class _Runs:
    """What trial.measure needs of a session, with the check's own config and run folder."""

    config: TaskConfig
    root: Path
    state_dir: Path
    folder: Path

    def run_dir(self, seq: int) -> Path:
        return self.folder


def chain(session: Session, tag: str, each: bool) -> list[Experiment]:
    """The keeps of TAG's current epoch to compare, in order: the baseline and the best, or
    every keep (EACH)."""
    start = int(session.journal.get_meta(f"epoch_start:{tag}", "0") or 0)
    keeps = [e for e in session.journal.experiments(tag) if e.status == "keep" and e.seq > start and e.commit_sha]
    if len(keeps) < 2:
        raise StateError("no keep beyond the baseline in this epoch yet: there is no gain to transfer "
                         "(`autoresearch status` shows the best)")
    return keeps if each else [keeps[0], keeps[-1]]


def budget_config(config: TaskConfig, budget: float | None) -> TaskConfig:
    """CONFIG with another budget; the hard timeout grows with it (never shrinks)."""
    if budget is None:
        return config
    if budget <= 0:
        raise ConfigError(f"--budget {budget:g}: must be more than 0 seconds")
    b = config.budget
    scale = max(1.0, budget / b.seconds)
    return with_overrides(config, "budget", seconds=budget, timeout=b.timeout * scale if b.timeout > 0 else None)


def knob_edits(config: TaskConfig, tree: Path, sets: dict[str, str], seq: int) -> dict[str, tuple[list[Knob], dict]]:
    """For the export TREE (of experiment SEQ): file -> (its knobs, {qualname: value}) for the --set
    names; a name that is no knob there is a ConfigError naming the knobs there are."""
    listing = list_knobs(config, tree)
    by_name = {k.qualname: k for k in listing.knobs}
    out: dict[str, tuple[list[Knob], dict]] = {}
    for name, text in sets.items():
        knob = by_name.get(name)
        if knob is None:
            known = ", ".join(sorted(by_name)[:12]) or "none"
            raise ConfigError(f"--set {name}: no such knob in {', '.join(listing.files) or 'the editable files'} at "
                              f"seq {seq} (knobs: {known}; `autoresearch knobs` lists them)")
        knobs, values = out.setdefault(knob.path, ([k for k in listing.knobs if k.path == knob.path], {}))
        values[name] = parse_value(text, knob)
    return out


def _prepare(session: Session, config: TaskConfig, commit: str, tree: Path, sets: dict[str, str], seq: int) -> None:
    """A fresh export of COMMIT in TREE with the --set values written into it."""
    clear_dir(tree)
    session.ws.export(commit, tree)
    for path, (knobs, values) in knob_edits(config, tree, sets, seq).items():
        file = tree / path
        try:
            file.write_text(set_knobs(file.read_text(encoding="utf-8"), knobs, values), encoding="utf-8")
        except (KnobError, ValueError) as exc:
            raise ConfigError(f"--set: {exc}") from None


def transfer(session: Session, sets: dict[str, str], *, budget: float | None = None, runs: int = 4,
             each: bool = False, stop: threading.Event | None = None,
             on_run: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Re-measure the chain of keeps with SETS (knob name -> value text) and/or BUDGET seconds,
    RUNS times each, and return the check as recorded in the journal."""
    s = session
    if not sets and budget is None:
        raise ConfigError("transfer: nothing to change: give --set NAME=VALUE (a knob) and/or --budget SECONDS")
    if runs < 1:
        raise ConfigError(f"-n {runs}: at least one run per commit")
    tag = s.require_tag()
    config = budget_config(s.config, budget)
    keeps = chain(s, tag, each)
    s.acquire("transfer")
    number = len(transfers(s.journal, tag)) + 1  # for the seeds: each check gets fresh ones
    folder = s.state_dir / "transfer" / f"{tag}-{int(time.time())}"
    tree = folder / "tree"
    for exp in keeps:  # every --set is checked against every commit before a run is spent
        _prepare(s, config, exp.commit_sha, tree, sets, exp.seq)
    target = _Runs(config, s.root, s.state_dir, folder)
    measurements: list[dict[str, Any]] = []
    metrics: dict[int, list[float | None]] = {e.seq: [] for e in keeps}
    for r, order in enumerate(round_order(len(keeps), runs)):
        seed = SEED_BASE + number * 1000 + r  # one seed per round, shared by every commit
        for i in order:
            exp = keeps[i]
            _prepare(s, config, exp.commit_sha, tree, sets, exp.seq)
            label = f"seq{exp.seq}-round{r}"
            m = measure(target, tree, 0, seed, label, stop=stop)
            clear_dir(folder / f"out-{label}")  # the log stays; a model's weights need not
            if m.interrupted:
                raise KeyboardInterrupt
            record = {"seq": exp.seq, "round": r, "seed": seed, "ok": m.ok, "reason": m.reason,
                      "metric": m.metric if m.ok else None, "seconds": round(m.seconds, 3),
                      "log": str(m.log_path or "")}
            measurements.append(record)
            metrics[exp.seq].append(m.metric if m.ok else None)
            if on_run is not None:
                on_run(record)
    clear_dir(tree)
    steps = [(keeps[i], keeps[i + 1]) for i in range(len(keeps) - 1)]
    if len(steps) > 1:
        steps.append((keeps[0], keeps[-1]))  # the whole session's gain, last
    rows = [_row(a, b, metrics, s.config, overall=(a, b) == (keeps[0], keeps[-1])) for a, b in steps]
    check = {"at": time.time(), "tag": tag, "sets": sets, "budget": budget,
             "session_budget": s.config.budget.seconds, "runs": runs, "each": each,
             "env": current_id(s.journal, tag), "metric": s.config.metric.name,
             "commits": [{"seq": e.seq, "commit": e.commit_sha, "description": e.description} for e in keeps],
             "measurements": measurements, "rows": rows}
    check["number"] = add_transfer(s.journal, tag, check)
    return check


def _row(a: Experiment, b: Experiment, metrics: dict[int, list[float | None]], config: TaskConfig, *,
         overall: bool) -> dict[str, Any]:
    """The step from keep A to keep B: its recorded gain and its gain at the new configuration."""
    pairs = [(x, y) for x, y in zip(metrics[a.seq], metrics[b.seq]) if x is not None and y is not None]
    diffs = pair_differences([x for x, _ in pairs], [y for _, y in pairs], config.maximize)
    verdict = carried(diffs, config.verdict.confidence)
    recorded = improvement(b.metric, a.metric, config.maximize) if a.metric is not None and b.metric is not None \
        else None
    return {"from_seq": a.seq, "to_seq": b.seq, "description": b.description, "overall": overall,
            "recorded": recorded, "gain": verdict.gain, "se": verdict.se, "pairs": verdict.pairs,
            "bf": min(verdict.bf, 1e12),
            "verdict": verdict.verdict}

