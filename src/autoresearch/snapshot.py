"""The task folder as a tree: what a native experiment commits, read through an index of its own.

The folder is read through a temporary index seeded from the best commit, so the user's index
and HEAD are untouched and the candidate is simply "the tree on disk versus best" (the agent may
have committed, reset or switched branches). Everything git would do twice or more per
experiment on that index is done once, and as git's own (gitindex, gitdata):

- the seed: `git read-tree BASE` writes the same bytes every time, so the last one is kept in
  the state folder (which git ignores and sandboxes hide) and copied; a kept seed is used only
  when its entries hash to BASE's tree, so one edited by anyone is dropped, not trusted;
- the tree is written from the index after `git add -A` (no `write-tree`);
- the diff against BASE (changed paths and the lines delta) is read from the two indexes and
  the loose blobs `add` just wrote (no `diff-tree`);
- the export of the commit is copied from the folder, each file checked against its blob id (no
  `checkout`); a file changed since the snapshot does not match, and git exports instead;
- the second look after the run is `git add -A --dry-run` on the same index: nothing changed,
  as a rule, in one process instead of three.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from . import gitdata, gitindex
from .workspace import STATE_FOLDER

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .workspace import Change, Workspace

SEED_PREFIX = "snapshot-seed-"


class SnapshotIndex:
    """One temporary index on BASE and what it gave: the tree, its entries, BASE's entries."""

    def __init__(self, ws: "Workspace", base: str) -> None:
        self.ws, self.base = ws, base
        fd, self.path = tempfile.mkstemp(prefix="autoresearch-index-")
        os.close(fd)
        os.unlink(self.path)  # git writes it (a name only, never read empty)
        self.fresh = True
        self.tree = ""
        self.left_out: frozenset[str] = frozenset()
        self.entries: list[gitindex.Entry] | None = None  # the snapshot's, when its tree was written here
        self.base_entries: list[gitindex.Entry] | None = None

    # -- taking it ---------------------------------------------------------------------------

    def take(self, exclude: list[str]) -> str:
        """Read the folder into the index (paths in EXCLUDE left out); the tree it holds."""
        env = {"GIT_INDEX_FILE": self.path}
        if self.fresh and not self._from_seed():
            self.ws.git("read-tree", self.base, env=env)
            self.base_entries = gitindex.read_index(self.path)
            self._keep_seed()
        self.fresh = False
        self.ws.git("add", "-A", "--", ".", env=env)
        if exclude:
            self.ws.git("rm", "-q", "--cached", "--ignore-unmatch", "--pathspec-from-file=-",
                        "--pathspec-file-nul", env=env, input="\0".join(exclude))
        self.tree = self._write_tree() or self.ws.git("write-tree", env=env).strip()
        if self._holds_state_folder():
            # git no longer ignores autoresearch's own folder (an edited .gitignore): it is still
            # never part of a candidate. Committed, the journal would be in git's history; as
            # an "added" path it would be moved aside when the folder is reset.
            self.ws.git("rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", STATE_FOLDER, env=env)
            self.tree = self._write_tree() or self.ws.git("write-tree", env=env).strip()
        self.left_out = frozenset(exclude)
        return self.tree

    def _holds_state_folder(self) -> bool:
        if self.entries is not None:
            return any(e.path.split(b"/", 1)[0] == STATE_FOLDER.encode() for e in self.entries)
        return bool(self.ws.git("ls-tree", "--name-only", self.tree, "--", STATE_FOLDER).strip())

    def _write_tree(self) -> str | None:
        git_dir = self.ws.plain_git_dir()
        entries = gitindex.read_index(self.path) if git_dir and gitindex.writes_like_git(git_dir) else None
        tree = gitindex.write_tree(git_dir, entries) if git_dir and entries is not None else None
        self.entries = entries if tree else None
        return tree

    def unchanged(self) -> str | None:
        """The tree when nothing on disk changed since it was taken (besides the paths it left
        out), else None. `git add --dry-run` prints `add 'path'` / `remove 'path'` per change."""
        from .workspace import GitError

        if not self.tree:
            return None
        try:
            out = self.ws.git("add", "-A", "--dry-run", "--", ".", env={"GIT_INDEX_FILE": self.path})
        except GitError:
            return None
        for line in out.splitlines():
            verb, _, quoted = line.partition(" ")
            if verb not in ("add", "remove") or not (quoted.startswith("'") and quoted.endswith("'")) \
                    or quoted[1:-1] not in self.left_out:
                return None
        return self.tree

    def drop(self) -> None:
        for leftover in (self.path, self.path + ".lock"):
            if os.path.exists(leftover):
                os.unlink(leftover)

    # -- the seed ----------------------------------------------------------------------------

    def _seed_path(self) -> Path | None:
        state = self.ws.root / STATE_FOLDER
        return state / f"{SEED_PREFIX}{self.base}.index" if len(self.base) == 40 and state.is_dir() else None

    def _from_seed(self) -> bool:
        seed = self._seed_path()
        if seed is None:
            return False
        entries = gitindex.read_index(seed)
        if entries is None or gitindex.write_tree(None, entries) != self.ws.tree_of(self.base):
            seed.unlink(missing_ok=True)
            return False
        try:
            shutil.copyfile(seed, self.path)
        except OSError:
            return False
        self.base_entries = entries
        return True

    def _keep_seed(self) -> None:
        seed = self._seed_path()
        if seed is None:
            return
        partial = seed.with_name(seed.name + f".{os.getpid()}.tmp")
        try:
            shutil.copyfile(self.path, partial)
            os.replace(partial, seed)  # whole or not at all: a kill leaves no half index to copy
            for old in seed.parent.glob(f"{SEED_PREFIX}*"):
                if old != seed:
                    old.unlink(missing_ok=True)
        except OSError:  # a full disk, say: the next snapshot reads the tree again
            partial.unlink(missing_ok=True)

    # -- what it answers without git -----------------------------------------------------------

    def changes_and_lines(self, old: str, new: str) -> "tuple[list[Change], int] | None":
        """Workspace.changes_and_lines for OLD = the base and NEW = this tree, from the two
        indexes and the loose blobs (`add` just wrote the new ones); None when any is missing.
        The lines are the patch's count: unchanged lines cancel out of whole files just as they
        are left out of a patch."""
        from .workspace import Change

        git_dir = self.ws.plain_git_dir()
        if old != self.base or new != self.tree or self.entries is None or self.base_entries is None \
                or git_dir is None:
            return None
        changes, delta = [], 0
        for status, a, b in gitindex.diff(self.base_entries, self.entries):
            entry = b if b is not None else a
            assert entry is not None
            changes.append(Change(status=status, path=entry.path.decode("utf-8", "replace"),
                                  new_mode=f"{b.mode:06o}" if b is not None else "000000"))
            for side, sign in ((a, -1), (b, 1)):
                if side is None or side.mode == 0o160000:  # a submodule counts no lines
                    continue
                data = gitdata.loose_object(git_dir, side.sha.hex(), b"blob")
                if data is None:
                    return None  # packed, say: git diffs it
                delta += sign * gitdata.nonblank_lines(data)
        return changes, delta

    def export(self, dest: Path) -> bool:
        """This tree's files into the empty folder DEST, copied from the folder and each checked
        against its blob id; False when any does not match (DEST is then emptied again)."""
        if self.entries is None:
            return False
        if gitindex.export(self.ws.root, self.entries, dest):
            return True
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        return False
