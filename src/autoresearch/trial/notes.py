"""The record beside each commit (a git note), and the journal rebuilt from those notes.

Every settled experiment's record is stored beside its commit as a note
(`refs/notes/autoresearch`, written by `trial.settle`), and every attempt has its ref
`refs/autoresearch/<tag>/<seq>`. From those, `rebuild` restores the journal's rows, the best
pointer of each tag (its last keep) and the seq floor, so numbering never restarts.
"""

from __future__ import annotations

import json
from typing import Any

from autoresearch.git.workspace import REF_PREFIX
from autoresearch.journal.records import Experiment
from autoresearch.trial.session import Session

NOTE_FIELDS = ("seq", "tag", "status", "reason", "parent", "description", "proposer", "metric", "best_before",
               "holdout", "resource", "metrics", "is_baseline", "slot", "started_at", "finished_at",
               "propose_seconds", "run_seconds", "tokens_in", "tokens_out", "cost_usd", "lines_delta",
               "program_hash")


def note_text(exp: Experiment) -> str:
    """The record kept beside the commit: enough to rebuild the journal's row."""
    data: dict[str, Any] = {k: getattr(exp, k) for k in NOTE_FIELDS}
    data["details"] = {k: v for k, v in exp.details.items() if k in ("files", "violations", "confirm", "repeats",
                                                                      "fix_of", "replay_of", "epoch", "tree",
                                                                      "duplicate_of")}
    return json.dumps(data, sort_keys=True, default=str) + "\n"


def rebuild(session: Session) -> int:
    """Add the records the journal lacks; returns how many were added."""
    s = session
    notes = s.ws.notes()
    refs = s.ws.refs(REF_PREFIX)
    known = {e.seq for e in s.journal.experiments()}
    added = 0
    top = 0
    best_by_tag: dict[str, tuple[int, str]] = {}
    for ref, commit in refs.items():
        rest = ref[len(REF_PREFIX):]
        tag, _, last = rest.rpartition("/")
        if not last.isdigit() or "/rescue" in tag or not tag:
            continue
        seq = int(last)
        top = max(top, seq)
        text = notes.get(commit)
        if seq in known:
            continue
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        if data is None:  # an attempt whose record was never settled: it was interrupted
            data = {"seq": seq, "tag": tag, "status": "crash", "reason": "interrupted", "started_at": 0.0}
        fields = {k: v for k, v in data.items() if k in Experiment.__dataclass_fields__}
        exp = Experiment(**{"started_at": 0.0, **fields, "seq": seq, "tag": tag, "commit_sha": commit})
        s.journal.insert(exp)
        added += 1
        if exp.status == "keep" and seq > best_by_tag.get(tag, (0, ""))[0]:
            best_by_tag[tag] = (seq, commit)
    for tag, (_, commit) in best_by_tag.items():
        last_keep = s.journal.best(tag)
        if last_keep is None or last_keep.commit_sha == commit:
            s.set_best(tag, commit)
    floor = int(s.journal.get_meta("seq_floor", "0") or 0)
    s.journal.set_meta("seq_floor", str(max(floor, top)))
    return added
