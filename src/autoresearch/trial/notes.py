"""The record beside each commit (a git note), and the journal rebuilt from those notes.

Every settled experiment's record is stored beside its commit as a note
(`refs/notes/autoresearch`, written by `trial.settle` and by `repair`), and every attempt has
its ref `refs/autoresearch/<tag>/<seq>` (an attempt interrupted before its candidate was
committed gets one too: a commit of its parent's tree, see `branch.close_interrupted`). A note
holds the experiment's whole journal row as the journal has it (redacted), its runs, and the
state of its tag (the start commit, the epochs, the best's re-measurements, the last noise
measurements and the runs that belong to no experiment). A new epoch's commit carries a note of
the tag's state alone. From those, `rebuild` gives back the journal: the rows, the runs with
their ids, the best pointer of each tag, the epochs, the seq floor (numbering never restarts).
What cannot come back is listed in docs/concepts/state.md.
"""

from __future__ import annotations

import json
import time
from typing import Any

from autoresearch.git.workspace import REF_PREFIX, experiment_ref
from autoresearch.journal.records import Experiment
from autoresearch.trial.session import Session

NOTE_VERSION = 2
FREE_RUNS = 64  # runs of no experiment (noise, reference re-measurements) carried in each note
NOISE_RECORDS = 10


def note_text(session: Session, exp: Experiment) -> str:
    """The record kept beside the commit: the journal's row of EXP (read back, so it is the
    redacted one), its runs and its tag's state."""
    row = session.journal.get(exp.seq) or exp
    data: dict[str, Any] = row.to_json()
    data.pop("delta", None)
    data["note_version"] = NOTE_VERSION
    data["runs"] = session.journal.runs(seq=exp.seq)
    data["tag_state"] = tag_state(session, exp.tag)
    return json.dumps(data, sort_keys=True, default=str) + "\n"


def write_note(session: Session, exp: Experiment) -> None:
    """Store EXP's record beside its commit (an attempt interrupted before its commit: beside
    the commit its ref names) and strike it from the journal's owed notes."""
    commit = exp.commit_sha or session.ws.rev(experiment_ref(exp.tag, exp.seq)) or ""
    if commit:
        session.ws.add_note(commit, note_text(session, exp))
    session.journal.noted(exp.seq)


def flush_notes(session: Session) -> None:
    """Write the notes the journal still owes (a kill between a settle and its note, a record
    changed after its settle)."""
    for seq in session.journal.unnoted():
        owed = session.journal.get(seq)
        if owed is not None and owed.status != "running":
            write_note(session, owed)
        elif owed is None:
            session.journal.noted(seq)


def tag_state(session: Session, tag: str) -> dict[str, Any]:
    j = session.journal
    return {"tag": tag, "at": time.time(), "start": j.get_meta(f"start:{tag}") or "",
            "epochs": json.loads(j.get_meta(f"epochs:{tag}", "[]") or "[]"),
            "preexisting": json.loads(j.get_meta(f"preexisting:{tag}", "[]") or "[]"),
            "env": json.loads(j.get_meta(f"env:{tag}", "null") or "null"),
            "references": j.references(tag), "free_runs": j.free_runs(tag, FREE_RUNS),
            "noise": j.noise_records(tag, NOISE_RECORDS)}


def tag_state_note(session: Session, tag: str) -> str:
    """The note of a commit that is no experiment (a new epoch's): its tag's state alone."""
    return json.dumps({"note_version": NOTE_VERSION, "kind": "tag_state", "tag_state": tag_state(session, tag)},
                      sort_keys=True, default=str) + "\n"


def experiment_refs(session: Session) -> dict[int, tuple[str, str]]:
    """seq -> (tag, commit) of every attempt's ref."""
    found: dict[int, tuple[str, str]] = {}
    for ref, commit in session.ws.refs(REF_PREFIX).items():
        tag, _, last = ref[len(REF_PREFIX):].rpartition("/")
        if last.isdigit() and tag and "/rescue" not in tag:
            found[int(last)] = (tag, commit)
    return found


def ensure_journal(session: Session) -> int:
    """A journal with no experiment next to refs of earlier ones was lost: rebuild it before
    anything else happens (never a fresh history). Returns how many records came back."""
    if not session.journal.is_empty():
        return 0
    return rebuild(session) if experiment_refs(session) else 0


def _parse(text: str | None) -> dict[str, Any] | None:
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def rebuild(session: Session) -> int:
    """Add the records the journal lacks; returns how many were added."""
    s = session
    j = s.journal
    notes = {commit: _parse(text) for commit, text in s.ws.notes().items()}
    attempts = experiment_refs(s)
    known = {e.seq for e in j.experiments()}
    fresh_tags = {tag for tag, _ in attempts.values()} - set(j.tags())
    added = 0
    states: dict[str, list[tuple[float, dict]]] = {}
    for data in notes.values():
        if data and data.get("kind") == "tag_state" and isinstance(data.get("tag_state"), dict):
            state = data["tag_state"]
            states.setdefault(str(state.get("tag", "")), []).append((float(state.get("at") or 0.0), state))
    best_by_tag: dict[str, tuple[int, str]] = {}
    for seq, (tag, commit) in sorted(attempts.items()):
        data = notes.get(commit)
        if data is not None and data.get("seq") not in (None, seq):
            data = None  # a note of another record
        if seq in known:
            continue
        if data is None:  # an attempt whose record was never settled: it was interrupted
            data = {"seq": seq, "tag": tag, "status": "crash", "reason": "interrupted", "started_at": 0.0}
        fields = {k: v for k, v in data.items() if k in Experiment.__dataclass_fields__}
        exp = Experiment(**{"started_at": 0.0, "commit_sha": commit, **fields, "seq": seq, "tag": tag})
        j.insert(exp)
        for run in data.get("runs") or []:
            j.insert_run(run)
        if isinstance(data.get("tag_state"), dict):
            states.setdefault(tag, []).append((float(data["tag_state"].get("at") or 0.0), data["tag_state"]))
        added += 1
        if exp.status == "keep" and exp.commit_sha and seq > best_by_tag.get(tag, (0, ""))[0]:
            best_by_tag[tag] = (seq, exp.commit_sha)
    for tag, found in states.items():
        if tag in fresh_tags:
            _restore_state(s, tag, [state for _, state in sorted(found, key=lambda p: p[0])], best_by_tag.get(tag))
    for tag in fresh_tags:
        first = next((e for e in j.experiments(tag) if e.parent), None)
        if first is not None and not j.get_meta(f"start:{tag}"):
            # notes of an older version carry no start commit: the first experiment's parent is it
            j.set_meta(f"start:{tag}", first.parent)
    for tag, (_, commit) in best_by_tag.items():
        if tag not in states or tag not in fresh_tags:
            last_keep = j.best(tag)
            if last_keep is None or last_keep.commit_sha == commit:
                s.set_best(tag, commit)
    floor = int(j.get_meta("seq_floor", "0") or 0)
    j.set_meta("seq_floor", str(max(floor, max(attempts, default=0))))
    return added


def _restore_state(session: Session, tag: str, found: list[dict], best: tuple[int, str] | None) -> None:
    """A tag's meta from its notes' states (FOUND, oldest first): the newest of each list, and
    the union of the runs and noise rows (by id)."""
    j = session.journal
    newest = found[-1]
    start = next((str(f["start"]) for f in found if f.get("start")), "")
    epochs = max((f.get("epochs") or [] for f in found), key=len)
    meta = {f"references:{tag}": json.dumps(newest.get("references") or [])}
    if start:
        meta[f"start:{tag}"] = start
    if "preexisting" in newest:
        meta[f"preexisting:{tag}"] = json.dumps(newest["preexisting"])
    if newest.get("env"):
        meta[f"env:{tag}"] = json.dumps(newest["env"], sort_keys=True)
    if epochs:
        last = epochs[-1]
        meta.update({f"epochs:{tag}": json.dumps(epochs), f"epoch:{tag}": str(last["epoch"]),
                     f"epoch_start:{tag}": str(last["after_seq"])})
    target = best[1] if best else ""
    if epochs and (best is None or best[0] <= int(epochs[-1]["after_seq"])):
        target = str(epochs[-1]["commit"])  # a relock with no keep after it: the best is its commit
    if target:
        meta[f"best:{tag}"] = target
    j.set_metas(meta)
    for f in found:
        for run in f.get("free_runs") or []:
            j.insert_run(run)
        for row in f.get("noise") or []:
            j.insert_noise(row)
