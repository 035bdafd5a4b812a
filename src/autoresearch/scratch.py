"""The agent's copy of the task: made from a commit, and what comes back from it.

In the loop the agent never touches the task folder. Each proposal gets a fresh scratch folder
holding exactly one commit's tree (the best, or the crashed experiment it is asked to fix),
with a private git repository of its own for agents that expect one. Afterwards only the
contents of files matching `editable` come back, as a candidate tree on top of the best:
new editable files included, symlinks and special files refused (a violation, so the attempt
is rejected). Whatever else the agent wrote or deleted is copied to the experiment's
quarantine for review and never applied.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .workspace import FALLBACK_IDENTITY, Workspace, clear_dir, matches_any

SKIP = {".git"}  # the scratch's own repository: the agent's business


@dataclass
class Scratch:
    root: Path
    files: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # path -> (size, mtime_ns, mode)


@dataclass
class Collected:
    tree: str
    violations: list[str]
    quarantined: list[str]


def _walk(root: Path) -> dict[str, tuple[int, int, int]]:
    found: dict[str, tuple[int, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in SKIP]
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            found[rel.replace(os.sep, "/")] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return found


def make(ws: Workspace, commit: str, dest: Path, with_git: bool = True) -> Scratch:
    """DEST emptied and filled with COMMIT's tree; a private repository with one commit when
    WITH_GIT (coding agents read `git diff` and `git log` there; nothing flows back from it)."""
    clear_dir(dest)
    ws.export(commit, dest)
    if with_git:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        for args in (["init", "-q"], ["add", "-A"], [*FALLBACK_IDENTITY, "commit", "-q", "--no-verify", "-m", "best"]):
            subprocess.run(["git", *args], cwd=dest, env=env, capture_output=True, check=False)
    return Scratch(dest, _walk(dest))


def collect(ws: Workspace, scratch: Scratch, base: str, editable: list[str], quarantine: Path,
            max_bytes: int) -> Collected:
    """The candidate tree: BASE plus the scratch's editable files; everything else the agent
    changed goes to QUARANTINE."""
    now = _walk(scratch.root)
    violations: list[str] = []
    quarantined: list[str] = []
    take: list[str] = []
    deleted: list[str] = []
    for path in sorted(set(now) | set(scratch.files)):
        before, after = scratch.files.get(path), now.get(path)
        changed = before != after
        if matches_any(path, editable):
            if after is None:
                deleted.append(path)
            elif not stat.S_ISREG(after[2]):
                violations.append(f"{path}: not a regular file (refused)")
                if changed:
                    _keep(scratch.root, path, quarantine, quarantined)
            elif after[0] > max_bytes:
                violations.append(f"{path}: over the size cap of {max_bytes} bytes (quarantined)")
                _keep(scratch.root, path, quarantine, quarantined)
            else:
                take.append(path)
        elif changed:
            if after is None:
                quarantined.append(f"{path} (deleted; not applied)")
            else:
                _keep(scratch.root, path, quarantine, quarantined)
    entries: dict[str, tuple[str, str] | None] = {p: None for p in deleted}
    shas = ws.hash_files([scratch.root / p for p in take])
    for path, sha in zip(take, shas):
        mode = "100755" if now[path][2] & 0o111 else "100644"
        entries[path] = (mode, sha)
    return Collected(ws.tree_with(base, entries), violations, quarantined)


def _keep(root: Path, path: str, quarantine: Path, kept: list[str]) -> None:
    src = root / path
    dest = quarantine / path
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        if src.is_symlink():
            dest.write_text(f"symlink to {os.readlink(src)}\n")
        elif src.is_file():
            shutil.copy2(src, dest)
        else:
            dest.write_text("a special file (not copied)\n")
    except OSError:
        return
    kept.append(path)
