"""The journal's records: an experiment (one row of `experiments`) and a noise measurement, and
how an experiment becomes a row and back (finite numbers only, no secret in any text).
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from autoresearch.redact import scrub

STATUSES = ("keep", "discard", "crash", "rejected")


@dataclass
class Experiment:
    """One row of the experiments table."""

    seq: int
    tag: str
    status: str
    started_at: float
    reason: str = ""
    commit_sha: str = ""
    parent: str = ""
    description: str = ""
    proposer: str = ""
    metric: float | None = None
    best_before: float | None = None
    holdout: float | None = None
    resource: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    log_path: str = ""
    log_tail: str = ""
    program_hash: str = ""
    is_baseline: bool = False
    slot: int = 0
    finished_at: float | None = None
    propose_seconds: float | None = None
    run_seconds: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    lines_delta: int | None = None
    pid: int | None = None

    @property
    def short_commit(self) -> str:
        return self.commit_sha[:7]

    def delta(self) -> float | None:
        if self.metric is None or self.best_before is None:
            return None
        return self.metric - self.best_before

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["delta"] = self.delta()
        return data


@dataclass
class NoiseRecord:
    tag: str
    commit_sha: str
    n: int
    mean: float
    median: float
    std: float
    mad: float
    min: float
    max: float
    suggested_min_delta: float
    values: list[float]
    created_at: float = 0.0


COLUMNS = [
    "seq", "tag", "status", "reason", "commit_sha", "parent", "description", "proposer", "metric",
    "best_before", "holdout", "resource", "metrics_json", "details_json", "log_path", "log_tail",
    "program_hash", "is_baseline", "slot", "started_at", "finished_at", "propose_seconds",
    "run_seconds", "tokens_in", "tokens_out", "cost_usd", "lines_delta", "pid",
]


def fixed(value: float, places: int = 6, sign: str = "") -> str:
    """VALUE in fixed point (the seed's format), in exponent form beyond 1e15, where fixed point
    would print up to 300 digits: every number autoresearch prints goes through here."""
    return f"{value:{sign}.{places}f}" if abs(value) < 1e15 or not math.isfinite(value) else f"{value:{sign}.{places}e}"


def finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    return value if math.isfinite(value) else None


def row_to_experiment(row: sqlite3.Row) -> Experiment:
    data = dict(row)
    data["metrics"] = json.loads(data.pop("metrics_json") or "{}")
    data["details"] = json.loads(data.pop("details_json") or "{}")
    data["is_baseline"] = bool(data["is_baseline"])
    return Experiment(**data)


def experiment_values(exp: Experiment) -> list[Any]:
    """The row of EXP, in COLUMNS order."""
    # shallow, not asdict: asdict deep-copies details and metrics, which become JSON just below
    data = {f.name: getattr(exp, f.name) for f in fields(exp)}
    data["metrics_json"] = json.dumps({k: v for k, v in exp.metrics.items() if math.isfinite(v)})
    data["details_json"] = scrub(json.dumps(exp.details, default=str))
    for key in ("description", "log_tail", "reason"):  # no secret value is ever recorded
        data[key] = scrub(data[key])
    data["is_baseline"] = int(exp.is_baseline)
    for key in ("metric", "best_before", "holdout", "resource"):
        data[key] = finite_or_none(data[key])
    return [data[c] for c in COLUMNS]
