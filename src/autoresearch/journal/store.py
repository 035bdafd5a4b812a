"""The SQLite journal (`.autoresearch/journal.db`): the record of every experiment.

Only this package writes it. It holds every experiment's full record and every individual run
(baseline, candidate, confirmation, noise and reference runs), the best pointer of each tag and
the meta that repair needs. The file and its schema: `schema`; the records: `records`; its views
(results.tsv, throughput): `results`.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from autoresearch.journal.records import (
    COLUMNS,
    STATUSES,
    Experiment,
    NoiseRecord,
    experiment_values,
    finite_or_none,
    row_to_experiment,
)
from autoresearch.journal.schema import open_db, transaction

RUN_COLUMNS = ("id", "seq", "tag", "role", "commit_sha", "seed", "status", "reason", "metric", "metrics_json",
               "seconds", "log_path", "created_at")
NOISE_COLUMNS = ("id", "tag", "commit_sha", "n", "mean", "median", "std", "mad", "min", "max",
                 "suggested_min_delta", "values_json", "created_at")


class Journal:
    """The experiment journal of one task. Cheap to open; every write is its own transaction."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.state_dir / "journal.db"
        self.db = open_db(self.path)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- experiments -------------------------------------------------------------------------

    def next_seq(self) -> int:
        """Never a number used before: past every row, and past every seq that refs name (the
        floor is set when a journal is rebuilt or recreated next to existing refs)."""
        row = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM experiments").fetchone()
        floor = int(self.get_meta("seq_floor", "0") or 0)
        return max(int(row[0]), floor) + 1

    def noted(self, seq: int) -> None:
        owed = json.loads(self.get_meta("unnoted", "[]") or "[]")
        self.set_meta("unnoted", json.dumps([s for s in owed if s != seq]))

    def unnoted(self) -> list[int]:
        return list(json.loads(self.get_meta("unnoted", "[]") or "[]"))

    def set_reference(self, tag: str, commit: str, value: float, why: str, from_run: int = 0) -> None:
        """The best's metric as re-measured now (by `noise`, or on suspected drift): candidates
        are compared with it instead of the best's own, older measurement. FROM_RUN: the id of
        the first run of that re-measurement (older runs of the commit no longer count)."""
        events = json.loads(self.get_meta(f"references:{tag}", "[]") or "[]")
        events.append({"commit": commit, "value": value, "why": why, "at": time.time(), "from_run": from_run})
        self.set_meta(f"references:{tag}", json.dumps(events[-50:]))

    def _latest_reference(self, tag: str, commit: str) -> dict | None:
        events = json.loads(self.get_meta(f"references:{tag}", "[]") or "[]")
        return next((e for e in reversed(events) if e["commit"] == commit), None)

    def reference(self, tag: str, commit: str, default: float | None) -> float | None:
        latest = self._latest_reference(tag, commit)
        return float(latest["value"]) if latest else default

    def reference_runs(self, tag: str, commit: str, limit: int = 64) -> list[float]:
        """The metrics of COMMIT's successful runs since its reference was last measured (all of
        them when never re-measured), newest LIMIT: what `confirm = "reference"` compares with."""
        latest = self._latest_reference(tag, commit)
        since = int(latest.get("from_run", 0)) if latest else 0
        rows = self.db.execute(
            "SELECT metric FROM runs WHERE tag = ? AND commit_sha = ? AND status = 'ok' AND metric IS NOT NULL "
            "AND id >= ? ORDER BY id DESC LIMIT ?", (tag, commit, since, limit)).fetchall()
        return [float(r[0]) for r in reversed(rows)]

    def references(self, tag: str) -> list[dict]:
        return list(json.loads(self.get_meta(f"references:{tag}", "[]") or "[]"))

    def add_comparison(self, tag: str, record: dict[str, Any]) -> None:
        """A side-by-side paired measurement of two commits (`autoresearch compare`): RECORD
        holds the commits (a, b), their runs and the estimate; the newest 50 are kept."""
        events = self.comparisons(tag)
        events.append({**record, "at": time.time()})
        self.set_meta(f"comparisons:{tag}", json.dumps(events[-50:]))

    def comparisons(self, tag: str) -> list[dict]:
        return list(json.loads(self.get_meta(f"comparisons:{tag}", "[]") or "[]"))

    def is_empty(self) -> bool:
        return self.db.execute("SELECT 1 FROM experiments LIMIT 1").fetchone() is None

    def settle(self, exp: Experiment, best: str | None) -> None:
        """The final record and (for a keep) the new best pointer in ONE transaction, so a kill
        can never leave best on a commit whose record is not a keep. results.tsv's recorded
        hash is cleared in the same transaction: until it is written again, it is stale."""
        sets = ", ".join(f"{c} = ?" for c in COLUMNS[1:])
        with transaction(self.db):
            self.db.execute(f"UPDATE experiments SET {sets} WHERE seq = ?", [*experiment_values(exp)[1:], exp.seq])
            if best:
                self._set_meta(f"best:{exp.tag}", best)
            # One settled row may be appended to results.tsv; two (a kill in between) mean regenerate.
            pending = (self.get_meta(f"tsv:{exp.tag}") or "").startswith(("pending:", "stale"))
            self._set_meta(f"tsv:{exp.tag}", "stale" if pending else f"pending:{exp.seq}")
            # its git note is owed until `noted` says otherwise (every record has a ref to hang it on)
            owed = json.loads(self.get_meta("unnoted", "[]") or "[]")
            self._set_meta("unnoted", json.dumps(sorted(set(owed) | {exp.seq})))

    def begin(self, tag: str, description: str, proposer: str, parent: str, **extra: Any) -> Experiment:
        """Write the `running` record before anything runs; returns it with its new seq.

        The seq is allocated inside the insert's transaction, so two processes never share one.
        """
        exp = Experiment(seq=0, tag=tag, status="running", started_at=time.time(), description=description,
                         proposer=proposer, parent=parent, pid=os.getpid(), **extra)
        values = experiment_values(exp)
        placeholders = ", ".join("?" for _ in COLUMNS[1:])
        with transaction(self.db):
            exp.seq = self.next_seq()
            self.db.execute(f"INSERT INTO experiments({', '.join(COLUMNS)}) VALUES (?, {placeholders})",
                            [exp.seq, *values[1:]])
        return exp

    def insert(self, exp: Experiment) -> None:
        """A whole record with its own seq (rebuilding from git)."""
        placeholders = ", ".join("?" for _ in COLUMNS)
        self.db.execute(f"INSERT OR IGNORE INTO experiments({', '.join(COLUMNS)}) VALUES ({placeholders})",
                        experiment_values(exp))

    def update(self, exp: Experiment) -> None:
        """Write EXP's row. A settled record changed afterwards (a rescue, a replay's outcome)
        owes its git note again: `unnoted` says so in the same transaction."""
        sets = ", ".join(f"{c} = ?" for c in COLUMNS[1:])
        if exp.status == "running":
            self.db.execute(f"UPDATE experiments SET {sets} WHERE seq = ?", [*experiment_values(exp)[1:], exp.seq])
            return
        with transaction(self.db):
            self.db.execute(f"UPDATE experiments SET {sets} WHERE seq = ?", [*experiment_values(exp)[1:], exp.seq])
            owed = json.loads(self.get_meta("unnoted", "[]") or "[]")
            if exp.seq not in owed:
                self._set_meta("unnoted", json.dumps(sorted(set(owed) | {exp.seq})))

    def get(self, seq: int) -> Experiment | None:
        row = self.db.execute("SELECT * FROM experiments WHERE seq = ?", (seq,)).fetchone()
        return row_to_experiment(row) if row else None

    def experiments(self, tag: str | None = None, limit: int | None = None) -> list[Experiment]:
        """Experiments in seq order (the last `limit` of them when given)."""
        where = "WHERE tag = ?" if tag else ""
        args: list[Any] = [tag] if tag else []
        if limit is not None:
            sql = f"SELECT * FROM (SELECT * FROM experiments {where} ORDER BY seq DESC LIMIT ?) ORDER BY seq"
            args.append(limit)
        else:
            sql = f"SELECT * FROM experiments {where} ORDER BY seq"
        return [row_to_experiment(r) for r in self.db.execute(sql, args)]

    def running(self) -> list[Experiment]:
        return [row_to_experiment(r) for r in self.db.execute("SELECT * FROM experiments WHERE status = 'running' ORDER BY seq")]

    def last(self, tag: str) -> Experiment | None:
        row = self.db.execute("SELECT * FROM experiments WHERE tag = ? ORDER BY seq DESC LIMIT 1", (tag,)).fetchone()
        return row_to_experiment(row) if row else None

    def best(self, tag: str) -> Experiment | None:
        """The most recent keep of a tag in its current epoch: the best's record (keeps only
        ever improve). After a harness change (a new epoch) there is none until the best is
        re-measured, so nothing is compared across the break."""
        start = int(self.get_meta(f"epoch_start:{tag}", "0") or 0)
        row = self.db.execute(
            "SELECT * FROM experiments WHERE tag = ? AND status = 'keep' AND seq > ? ORDER BY seq DESC LIMIT 1",
            (tag, start)).fetchone()
        return row_to_experiment(row) if row else None

    def with_tree(self, tag: str, tree: str) -> list[Experiment]:
        """The settled experiments of TAG's current epoch whose candidate had TREE (recorded at
        commit as `details.tree`), oldest first: what an identical candidate may reuse."""
        start = int(self.get_meta(f"epoch_start:{tag}", "0") or 0)
        rows = self.db.execute(
            "SELECT * FROM experiments WHERE tag = ? AND seq > ? AND status != 'running' "
            "AND json_extract(details_json, '$.tree') = ? ORDER BY seq", (tag, start, tree))
        return [row_to_experiment(r) for r in rows]

    def counts(self, tag: str) -> dict[str, int]:
        rows = self.db.execute("SELECT status, COUNT(*) FROM experiments WHERE tag = ? GROUP BY status", (tag,))
        counts = {s: 0 for s in STATUSES}
        counts.update({r[0]: r[1] for r in rows})
        return counts

    def since_last_keep(self, tag: str) -> int:
        row = self.db.execute(
            "SELECT COUNT(*) FROM experiments WHERE tag = ? AND status != 'running' AND seq > "
            "COALESCE((SELECT MAX(seq) FROM experiments WHERE tag = ? AND status = 'keep'), 0)",
            (tag, tag),
        ).fetchone()
        return int(row[0])

    def flagged(self, tag: str, key: str) -> list[int]:
        """Seqs of the tag whose details carry KEY (a claim mismatch, say)."""
        rows = self.db.execute("SELECT seq FROM experiments WHERE tag = ? AND details_json LIKE ? ORDER BY seq",
                               (tag, f'%"{key}"%'))
        return [int(r[0]) for r in rows]

    def tags(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT tag FROM experiments GROUP BY tag ORDER BY MIN(seq)")]

    # -- runs and noise ----------------------------------------------------------------------

    def add_run(self, *, seq: int | None, tag: str, role: str, commit_sha: str, seed: int, status: str,
                reason: str = "", metric: float | None = None, metrics: dict[str, float] | None = None,
                seconds: float | None = None, log_path: str = "") -> int:
        metrics = {k: v for k, v in (metrics or {}).items() if math.isfinite(v)}
        cursor = self.db.execute(
            "INSERT INTO runs(seq, tag, role, commit_sha, seed, status, reason, metric, metrics_json, seconds, "
            "log_path, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, tag, role, commit_sha, seed, status, reason, finite_or_none(metric), json.dumps(metrics),
             seconds, log_path, time.time()),
        )
        return int(cursor.lastrowid or 0)

    def runs(self, seq: int | None = None, role: str | None = None) -> list[dict[str, Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if seq is not None:
            clauses.append("seq = ?")
            args.append(seq)
        if role is not None:
            clauses.append("role = ?")
            args.append(role)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return [dict(r) for r in self.db.execute(f"SELECT * FROM runs {where} ORDER BY id", args)]

    def free_runs(self, tag: str, limit: int = 64) -> list[dict[str, Any]]:
        """TAG's newest LIMIT runs that belong to no experiment (noise, reference re-measurements)."""
        rows = self.db.execute("SELECT * FROM runs WHERE tag = ? AND seq IS NULL ORDER BY id DESC LIMIT ?",
                               (tag, limit)).fetchall()
        return [dict(r) for r in reversed(rows)]

    def insert_run(self, row: dict[str, Any]) -> None:
        """A run with its own id (rebuilding from git); one already there is left alone."""
        keys = [k for k in RUN_COLUMNS if k in row]
        self.db.execute(f"INSERT OR IGNORE INTO runs({', '.join(keys)}) VALUES ({', '.join('?' for _ in keys)})",
                        [row[k] for k in keys])

    def replicates(self, tag: str, limit: int = 200, exclude: tuple[str, ...] = ()) -> list[list[float]]:
        """The metrics of TAG's last LIMIT successful runs, grouped by commit, leaving out the
        commits in EXCLUDE (a fixed window: the cost does not grow with history)."""
        groups: dict[str, list[float]] = {}
        for commit, metric in self.db.execute(
                "SELECT commit_sha, metric FROM runs WHERE tag = ? AND status = 'ok' AND metric IS NOT NULL "
                "ORDER BY id DESC LIMIT ?", (tag, limit)):
            if commit not in exclude:
                groups.setdefault(commit, []).append(metric)
        return list(groups.values())

    def count_runs(self, tag: str) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM runs WHERE tag = ?", (tag,)).fetchone()[0])

    def add_noise(self, record: NoiseRecord) -> None:
        self.db.execute(
            "INSERT INTO noise(tag, commit_sha, n, mean, median, std, mad, min, max, suggested_min_delta, "
            "values_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.tag, record.commit_sha, record.n, record.mean, record.median, record.std, record.mad,
             record.min, record.max, record.suggested_min_delta, json.dumps(record.values), time.time()),
        )

    def noise_records(self, tag: str, limit: int = 10) -> list[dict[str, Any]]:
        """TAG's newest LIMIT noise measurements, as rows (oldest first)."""
        rows = self.db.execute("SELECT * FROM noise WHERE tag = ? ORDER BY id DESC LIMIT ?", (tag, limit)).fetchall()
        return [dict(r) for r in reversed(rows)]

    def insert_noise(self, row: dict[str, Any]) -> None:
        """A noise row with its own id (rebuilding from git); one already there is left alone."""
        keys = [k for k in NOISE_COLUMNS if k in row]
        self.db.execute(f"INSERT OR IGNORE INTO noise({', '.join(keys)}) VALUES ({', '.join('?' for _ in keys)})",
                        [row[k] for k in keys])

    def latest_noise(self, tag: str | None = None) -> NoiseRecord | None:
        where, args = ("WHERE tag = ?", [tag]) if tag else ("", [])
        row = self.db.execute(f"SELECT * FROM noise {where} ORDER BY id DESC LIMIT 1", args).fetchone()
        if not row:
            return None
        data = dict(row)
        data.pop("id")
        data["values"] = json.loads(data.pop("values_json"))
        return NoiseRecord(**data)

    # -- meta --------------------------------------------------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self._set_meta(key, value)

    def set_metas(self, values: dict[str, str]) -> None:
        """Several meta keys in one transaction."""
        with transaction(self.db):
            for key, value in values.items():
                self._set_meta(key, value)

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        (key, value))
