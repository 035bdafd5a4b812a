"""Views of the journal: results.tsv (the seed's five columns) and throughput.

results.tsv is never the record, only a view: it is appended after each settled experiment and
regenerated from the journal whenever its content hash is not the one autoresearch last wrote
(an edit, a row lost to a kill, a rebuilt journal). Throughput is experiments per hour over the
time experiments were in flight.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterator

from autoresearch.journal.records import Experiment, fixed
from autoresearch.journal.store import Journal

# -- results.tsv -------------------------------------------------------------------------------

def tsv_header(metric_name: str) -> str:
    return f"commit\t{metric_name}\tmemory_gb\tstatus\tdescription\n"


def tsv_row(exp: Experiment, resource_scale: float) -> str:
    """One line in the seed's format: 7-char commit, %.6f metric, %.1f memory, 0s for crashes.
    A duplicate (a tree measured before: no run of its own) is a `discard` (a `crash` when the
    measurement it reuses crashed) with that measurement's numbers, its description starting
    `(duplicate of #SEQ)`: the status column keeps the seed's three values (and `rejected`)."""
    ok = exp.status in ("keep", "discard") and exp.metric is not None
    metric = exp.metric if ok and exp.metric is not None else 0.0
    memory = (exp.resource or 0.0) * resource_scale if ok else 0.0
    description = " ".join((exp.description or "").split())  # no tabs or newlines in a TSV cell
    if exp.reason == "duplicate":  # the seed's statuses only: which run it reused goes in the text
        description = f"(duplicate of #{exp.details.get('duplicate_of', '?')}) {description}"
    return f"{exp.short_commit}\t{fixed(metric, 6)}\t{fixed(memory, 1)}\t{exp.status}\t{description}\n"




def append_tsv(path: Path, metric_name: str, exp: Experiment, resource_scale: float) -> str:
    """Add one row (header first if the file is new). The file is rewritten beside itself and
    renamed over, never appended in place: on a full disk a half-written row would stay in the
    file; this way the old file stays whole and the next command regenerates it."""
    try:
        old = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        old = ""
    return _replace(path, (old or tsv_header(metric_name)) + tsv_row(exp, resource_scale))


def render_tsv(experiments: Iterator[Experiment] | list[Experiment], metric_name: str, resource_scale: float) -> str:
    """results.tsv as the journal says it should be: one row per finished experiment, in the order
    they finished (the order rows are appended in, with several slots not the seq order), so a
    regenerated file reads like the one it replaces."""
    settled = [e for e in experiments if e.status != "running"]
    settled.sort(key=lambda e: (e.finished_at is None, e.finished_at or 0.0, e.seq))
    return tsv_header(metric_name) + "".join(tsv_row(e, resource_scale) for e in settled)


def write_tsv(path: Path, experiments: list[Experiment], metric_name: str, resource_scale: float) -> str:
    """Regenerate results.tsv from the journal (atomic rename, so a reader never sees half a file).
    Returns the new content's hash."""
    return _replace(path, render_tsv(experiments, metric_name, resource_scale))


def _replace(path: Path, text: str) -> str:
    """PATH holds TEXT, or (a full disk, a kill) its old content: written to a temporary file,
    flushed to disk, renamed over. A temporary file that could not be finished is removed."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return hashlib.sha256(text.encode("utf-8")).hexdigest()  # what _content_hash now reads


def _content_hash(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return "missing"


def sync_tsv(journal: Journal, path: Path, tag: str, metric_name: str, resource_scale: float,
             finished: Experiment | None = None) -> bool:
    """Bring results.tsv in line with the journal after FINISHED settled (or at repair).

    The file's content hash after our own last write is kept in the journal; it is cleared in
    the transaction that settles an experiment. If the file still has that hash, FINISHED's row
    is appended; otherwise (edited by someone, a row lost to a kill, a new journal) the whole
    file is regenerated from the journal. Returns True when it was regenerated."""
    recorded = journal.get_meta(f"tsv:{tag}")
    current = _content_hash(path)
    regenerated = False
    if finished is not None and recorded == f"pending:{finished.seq}" \
            and journal.get_meta(f"tsv-before:{tag}") == current:
        new_hash = append_tsv(path, metric_name, finished, resource_scale)
    elif recorded != current:
        new_hash = write_tsv(path, journal.experiments(tag), metric_name, resource_scale)
        regenerated = True
    else:
        return False
    journal.set_metas({f"tsv:{tag}": new_hash, f"tsv-before:{tag}": new_hash})
    return regenerated


# -- throughput -------------------------------------------------------------------------------

def throughput(journal: Journal, tag: str) -> dict[str, Any]:
    """Experiments per hour, in total and per slot, over the time experiments were in flight.

    Counts every finished experiment of the tag except the baseline; the clock is the union of
    the experiments' [started_at, finished_at] intervals, so pauses between runs of the loop do
    not count. `concurrency` is the mean number of experiments in flight over that time.
    """
    exps = [e for e in journal.experiments(tag)
            if e.status != "running" and not e.is_baseline and e.finished_at and e.finished_at >= e.started_at]
    if not exps:
        return {"experiments": 0, "slots": 0, "active_hours": 0.0, "per_hour": 0.0, "per_slot_per_hour": 0.0,
                "concurrency": 0.0, "by_slot": {}}
    intervals = sorted((e.started_at, float(e.finished_at)) for e in exps)  # type: ignore[arg-type]
    active = 0.0
    start, end = intervals[0]
    for lo, hi in intervals[1:]:
        if lo > end:
            active += end - start
            start, end = lo, hi
        else:
            end = max(end, hi)
    active += end - start
    busy = sum(hi - lo for lo, hi in intervals)
    hours = active / 3600.0
    by_slot: dict[int, dict[str, float]] = {}
    for e in exps:
        entry = by_slot.setdefault(e.slot, {"experiments": 0, "per_hour": 0.0, "busy_hours": 0.0})
        entry["experiments"] += 1
        entry["busy_hours"] += (float(e.finished_at) - e.started_at) / 3600.0  # type: ignore[arg-type]
    for entry in by_slot.values():
        entry["per_hour"] = entry["experiments"] / hours if hours > 0 else 0.0
    per_hour = len(exps) / hours if hours > 0 else 0.0
    return {"experiments": len(exps), "slots": len(by_slot), "active_hours": hours, "per_hour": per_hour,
            "per_slot_per_hour": per_hour / len(by_slot), "concurrency": busy / active if active > 0 else 0.0,
            "by_slot": dict(sorted(by_slot.items()))}


