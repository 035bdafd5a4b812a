"""The task folder read as a candidate by the native `experiment`: new files over the size cap
moved to the quarantine before the snapshot (so they never enter `.git`), and a HEAD or branch
the agent moved noticed (recorded, never followed: the candidate is the tree on disk)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from autoresearch.git.workspace import STATE_FOLDER, branch_name
from autoresearch.trial.session import Session


def head_moved(session: Session, best: str, tag: str) -> dict:
    """Where the folder's branch and HEAD stand when they are not the run branch at best."""
    ws = session.ws
    head, branch = ws.head(), ws.current_branch()
    moved = {}
    if branch != branch_name(tag):
        moved["branch"] = branch or "(detached)"
    if head != best:
        moved["head"] = head or ""
    return moved


def quarantine_oversized(session: Session) -> list[str]:
    """New untracked files bigger than the cap go to quarantine before the snapshot, so they
    never enter `.git` (a 300 MB file the agent wrote would otherwise land there twice)."""
    cap = session.config.budget.max_new_file_bytes
    moved: list[str] = []
    if not _may_hold_files_over(session.root, cap):  # as a rule: then git need not list the untracked files
        return moved
    for path in session.ws.untracked():
        if path in session.state.preexisting:
            continue
        src = session.root / path
        try:
            big = src.is_file() and not src.is_symlink() and src.stat().st_size > cap
        except OSError:
            continue
        if big:
            dest = session.state_dir / "quarantine" / "oversized" / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), str(dest))
            moved.append(path)
    return moved


# A walk of the task folder that finds no file over the size cap stops being cheaper than asking
# git for the untracked files past this many entries.
WALK_LIMIT = 5000


def _may_hold_files_over(root: Path, cap: int) -> bool:
    """Whether any file of the task may be bigger than CAP bytes: False only when a walk of at
    most WALK_LIMIT entries found none, so that no untracked one can be (then git need not list
    them: one process fewer per experiment). Links are not followed. Left out: .git, and the
    state folder, which no snapshot takes and `untracked` never lists (so the walk does not
    grow with the experiments' run folders)."""
    seen = 0
    todo = [str(root)]
    while todo:
        folder = todo.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    seen += 1
                    if seen > WALK_LIMIT:
                        return True
                    if entry.is_dir(follow_symlinks=False):
                        if folder != str(root) or entry.name not in (".git", STATE_FOLDER):
                            todo.append(entry.path)
                    elif entry.stat(follow_symlinks=False).st_size > cap:
                        return True
        except OSError:  # unreadable: git knows what it can add
            return True
    return False


