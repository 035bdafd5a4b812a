"""What an attempt changed that was never applied, and what it was proposed against.

An agent's change to a file outside the editable surface (the harness, above all) is copied
into the experiment's ``quarantine/`` folder and never committed, so the experiment's own diff
is empty. `show`, `diff` and the report print this diff instead, marked as quarantined, and
name the parent by its experiment (seq and status) rather than by a guess.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from autoresearch.git.workspace import Workspace
from autoresearch.journal.records import Experiment

HEADER = "# quarantined, not applied: the agent's edit of {files}\n"


def quarantine_diff(ws: Workspace, exp: Experiment, run_dir: Path) -> str:
    """The quarantined files of EXP (under RUN_DIR/quarantine) as a unified diff against its
    parent, with a header line saying they were not applied; '' when nothing was kept."""
    kept = [p for p in ((exp.details.get("quarantine") or {}).get("kept") or []) if isinstance(p, str)]
    parts: list[str] = []
    shown: list[str] = []
    for path in kept:
        copy = run_dir / "quarantine" / path
        if not copy.is_file():
            continue
        old = (ws.show_file(exp.parent, path) or "") if exp.parent else ""
        new = copy.read_text(encoding="utf-8", errors="replace")
        parts += difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                      f"a/{path}", f"b/{path} (quarantined)")
        shown.append(path)
    if not shown:
        return ""
    text = "".join(line if line.endswith("\n") else line + "\n" for line in parts)
    return HEADER.format(files=", ".join(shown)) + text


def parent_label(experiments: list[Experiment], exp: Experiment) -> str:
    """` (seq 3, keep)`: the experiment whose commit EXP was proposed against; '' if none is."""
    for other in experiments:
        if other.commit_sha and other.commit_sha == exp.parent and other.seq != exp.seq:
            return f" (seq {other.seq}, {other.status}{', the baseline' if other.is_baseline else ''})"
    return ""
