"""The agent's copy of the task: made from a commit, and what comes back from it.

In the loop the agent never touches the task folder. Each proposal gets a fresh scratch folder
holding exactly one commit's tree (the best, or the crashed experiment it is asked to fix),
with a private git repository of its own for agents that expect one. Afterwards only the
contents of files matching `editable` come back, as a candidate tree on top of the best:
new editable files included, symlinks and special files refused (a violation, so the attempt
is rejected). Whatever else the agent wrote or deleted is copied to the experiment's
quarantine for review and never applied.

The quarantine is bounded: one experiment's copies total at most `[budget] max_new_file_bytes`
(smallest files first), so an agent that writes a 300 MB file every experiment cannot fill the
disk over a night (and then break the journal). A file that does not fit is not copied; the
record lists it with its size and sha256, so nobody wonders what the agent made. Copies of old
experiments go with their run outputs (`prune_copies`, after `[budget] keep_outputs`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.git.workspace import FALLBACK_IDENTITY, Workspace, clear_dir, matches_any

SKIP = {".git"}  # the scratch's own repository: the agent's business


@dataclass
class Scratch:
    root: Path
    files: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # path -> (size, mtime_ns, mode)


@dataclass
class Collected:
    tree: str
    violations: list[str]
    quarantined: list[str]  # one line per path, for the record and `show`
    copies: list[str] = field(default_factory=list)  # what was copied into the quarantine folder
    not_kept: list[dict] = field(default_factory=list)  # {path, bytes, sha256}: over the cap, not copied

    def details(self, cap: int) -> dict:
        """The experiment's `details.quarantine`: what was kept, what was only listed."""
        return {"cap_bytes": cap, "kept": self.copies, "not_kept": self.not_kept}


HARNESS_EDIT = "harness-edit"  # the reason of an attempt that changed what measures it
OUT_OF_SCOPE_EDIT = "out-of-scope"  # ... that changed only files outside the editable surface


def harness_edits(got: Collected, harness: list[str]) -> list[str]:
    """The quarantined paths (changed by the agent, not applied) that match the HARNESS globs:
    the read-only files, the config, program.md."""
    return [p for p in quarantined_paths(got) if matches_any(p, harness)]


def quarantined_paths(got: Collected) -> list[str]:
    return sorted({entry.split(" (", 1)[0] for entry in got.quarantined})


def harness_edit_reason(paths: list[str], shown: int = 3, kind: str = HARNESS_EDIT) -> str:
    """`harness-edit bench.py` (a few names, then how many more): the outcome, named."""
    more = f" +{len(paths) - shown} more" if len(paths) > shown else ""
    return f"{kind} {', '.join(paths[:shown])}{more}"


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
        private = Workspace(dest)
        for args in (["init", "-q"], ["add", "-A"], [*FALLBACK_IDENTITY, "commit", "-q", "--no-verify", "-m", "best"]):
            private.git(*args, check=False)
    return Scratch(dest, _walk(dest))


def collect(ws: Workspace, scratch: Scratch, base: str, editable: list[str], quarantine: Path,
            max_bytes: int) -> Collected:
    """The candidate tree: BASE plus the scratch's editable files; everything else the agent
    changed goes to QUARANTINE."""
    now = _walk(scratch.root)
    violations: list[str] = []
    quarantined: list[str] = []
    wanted: list[str] = []  # changed paths to copy into the quarantine, within the cap
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
                    wanted.append(path)
            elif after[0] > max_bytes:
                violations.append(f"{path}: over the size cap of {max_bytes} bytes (not applied)")
                wanted.append(path)
            else:
                take.append(path)
        elif changed:
            if after is None:
                quarantined.append(f"{path} (deleted; not applied)")
            else:
                wanted.append(path)
    copies, not_kept = _quarantine(scratch.root, wanted, {p: now[p] for p in wanted}, quarantine, max_bytes)
    quarantined += copies + [f"{n['path']} (not kept: {n['bytes']} bytes, over the quarantine cap of "
                             f"{max_bytes}; sha256 {n['sha256']})" for n in not_kept]
    entries: dict[str, tuple[str, str] | None] = {p: None for p in deleted}
    shas = ws.hash_files([scratch.root / p for p in take])
    for path, sha in zip(take, shas):
        mode = "100755" if now[path][2] & 0o111 else "100644"
        entries[path] = (mode, sha)
    return Collected(ws.tree_with(base, entries), violations, sorted(quarantined), copies, not_kept)


def _quarantine(root: Path, paths: list[str], found: dict[str, tuple[int, int, int]], quarantine: Path,
                cap: int) -> tuple[list[str], list[dict]]:
    """Copy PATHS (under ROOT) into QUARANTINE, smallest first, while the copies total at most
    CAP bytes. Returns (copied paths, {path, bytes, sha256} of the regular files left out)."""
    copies: list[str] = []
    not_kept: list[dict] = []
    used = 0
    for path in sorted(paths, key=lambda p: (found[p][0], p)):
        size = found[path][0] if stat.S_ISREG(found[path][2]) else 0  # a symlink or device: a short note
        if used + size > cap:
            not_kept.append({"path": path, "bytes": size, "sha256": _sha256(root / path)})
            continue
        if _keep(root, path, quarantine):
            copies.append(path)
            used += size
    return sorted(copies), sorted(not_kept, key=lambda n: n["path"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return "unreadable"
    return digest.hexdigest()


def _keep(root: Path, path: str, quarantine: Path) -> bool:
    src = root / path
    dest = quarantine / path
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dest.write_text(f"symlink to {os.readlink(src)}\n")
        elif src.is_file():
            shutil.copy2(src, dest)
        else:
            dest.write_text("a special file (not copied)\n")
    except OSError:
        return False
    return True


def prune_copies(quarantine: Path, copies: list[str]) -> None:
    """Remove the agent's files that `collect` copied into QUARANTINE (an old experiment's, pruned
    like its run outputs). Only those: anything else there (a user's file moved aside when the
    folder was reset) is never deleted."""
    for path in copies:
        target = quarantine / path
        try:
            if target.is_file() or target.is_symlink():
                target.unlink()
        except OSError:
            continue
        parent = target.parent
        while parent != quarantine and quarantine in parent.parents:
            try:
                parent.rmdir()  # only when empty
            except OSError:
                break
            parent = parent.parent
    try:
        quarantine.rmdir()
    except OSError:
        pass
