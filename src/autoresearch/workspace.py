"""Every git operation lives here: branches, snapshots, commits, resets, refs and worktrees.

The working tree is read through a temporary index (``GIT_INDEX_FILE``), so whatever the agent
did (edited files, made its own commits, reset, switched branches) the change under test is
simply "the tree on disk versus best", and the commit that records it is always a child of best.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

BRANCH_PREFIX = "autoresearch/"
REF_PREFIX = "refs/autoresearch/"
FALLBACK_IDENTITY = ["-c", "user.name=autoresearch", "-c", "user.email=autoresearch@localhost"]


class GitError(RuntimeError):
    pass


@dataclass(frozen=True)
class Change:
    """One path that differs between two trees."""

    status: str  # A added, M modified, D deleted, T type changed (e.g. a file became a symlink)
    path: str
    new_mode: str = ""

    @property
    def is_symlink(self) -> bool:
        return self.new_mode == "120000"


def branch_name(tag: str) -> str:
    return BRANCH_PREFIX + tag


def experiment_ref(tag: str, seq: int) -> str:
    return f"{REF_PREFIX}{tag}/{seq}"


def matches_any(path: str, patterns: list[str]) -> bool:
    """Glob match of a repository path against the config's patterns (`**` spans folders)."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(path, pattern):
            return True
        if "**/" in pattern and fnmatch.fnmatchcase(path, pattern.replace("**/", "")):
            return True
    return False


class Workspace:
    """A git work tree (the task folder itself, or a worktree of it)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        self._identity: list[str] | None = None

    # -- plumbing ----------------------------------------------------------------------------

    def git(self, *args: str, check: bool = True, env: dict[str, str] | None = None, input: str | None = None) -> str:
        full_env = {**os.environ, **(env or {})}
        full_env.setdefault("GIT_TERMINAL_PROMPT", "0")
        proc = subprocess.run(
            ["git", *self.identity(), *args], cwd=self.root, env=full_env, input=input,
            capture_output=True, text=True, errors="replace",
        )
        if check and proc.returncode != 0:
            raise GitError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    def identity(self) -> list[str]:
        """Use the user's git identity; fall back to a neutral one where none is configured."""
        if self._identity is None:
            proc = subprocess.run(["git", "config", "user.email"], cwd=self.root, capture_output=True, text=True)
            self._identity = [] if proc.stdout.strip() else FALLBACK_IDENTITY
        return self._identity

    def is_repo(self) -> bool:
        proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=self.root, capture_output=True, text=True)
        return proc.returncode == 0 and Path(proc.stdout.strip()).resolve() == self.root

    def inside_repo(self) -> bool:
        proc = subprocess.run(["git", "rev-parse", "--git-dir"], cwd=self.root, capture_output=True, text=True)
        return proc.returncode == 0

    def init(self) -> None:
        self.git("init", "-q")

    def has_commits(self) -> bool:
        return bool(self.git("rev-parse", "-q", "--verify", "HEAD^{commit}", check=False).strip())

    def rev(self, ref: str) -> str | None:
        out = self.git("rev-parse", "-q", "--verify", f"{ref}^{{commit}}", check=False).strip()
        return out or None

    def head(self) -> str | None:
        return self.rev("HEAD")

    def current_branch(self) -> str | None:
        out = self.git("symbolic-ref", "-q", "--short", "HEAD", check=False).strip()
        return out or None

    def branch_exists(self, name: str) -> bool:
        return self.rev(f"refs/heads/{name}") is not None


    def common_dir(self) -> Path:
        path = Path(self.git("rev-parse", "--git-common-dir").strip())
        return path if path.is_absolute() else (self.root / path).resolve()

    # -- commits and branches ----------------------------------------------------------------

    def commit_paths(self, paths: list[str], message: str) -> str:
        """Commit exactly these paths (nothing else the user staged), returning the new HEAD."""
        self.git("add", "--", *paths)
        self.git("commit", "-q", "--no-verify", "-m", message, "--", *paths)
        return self.head() or ""

    def commit_all(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--no-verify", "--allow-empty", "-m", message)
        return self.head() or ""

    def create_branch(self, name: str, at: str) -> None:
        self.git("branch", name, at)

    def switch(self, name: str) -> None:
        self.git("checkout", "-q", name)

    def update_ref(self, ref: str, sha: str) -> None:
        self.git("update-ref", ref, sha)


    def tree_of(self, commit: str) -> str:
        return self.git("rev-parse", f"{commit}^{{tree}}").strip()

    # -- snapshot, diff, commit --------------------------------------------------------------

    def snapshot(self, base: str, exclude: list[str] | None = None) -> str:
        """The tree of the working directory (ignored files left out), as a tree object.

        Built in a temporary index seeded from BASE, so the real index and HEAD are untouched.
        Paths in EXCLUDE (untracked files that were there before the run started) are left out.
        """
        fd, index = tempfile.mkstemp(prefix="autoresearch-index-")
        os.close(fd)
        os.unlink(index)
        env = {"GIT_INDEX_FILE": index}
        try:
            self.git("read-tree", base, env=env)
            self.git("add", "-A", "--", ".", env=env)
            if exclude:
                self.git("rm", "-q", "--cached", "--ignore-unmatch", "--pathspec-from-file=-",
                         "--pathspec-file-nul", env=env, input="\0".join(exclude))
            return self.git("write-tree", env=env).strip()
        finally:
            if os.path.exists(index):
                os.unlink(index)

    def changes(self, old_tree: str, new_tree: str) -> list[Change]:
        out = self.git("diff-tree", "-r", "--no-renames", "-z", "--raw", old_tree, new_tree)
        parts = out.split("\0")
        changes: list[Change] = []
        i = 0
        while i + 1 < len(parts):
            meta, path = parts[i], parts[i + 1]
            i += 2
            if not meta.startswith(":"):
                continue
            fields = meta[1:].split()
            changes.append(Change(status=fields[4][0], path=path, new_mode=fields[1]))
        return changes

    def commit_tree(self, tree: str, parent: str, message: str) -> str:
        return self.git("commit-tree", tree, "-p", parent, "-m", message).strip()

    def point_branch_at(self, branch: str, commit: str, also: dict[str, str] | None = None,
                        on_branch: bool = False) -> None:
        """Make BRANCH (and the refs in ALSO) point at COMMIT in one transaction and check it out
        without touching the files on disk. Used when the working tree already holds exactly
        COMMIT's tree (a fresh snapshot); ON_BRANCH skips re-attaching HEAD."""
        updates = {f"refs/heads/{branch}": commit, **(also or {})}
        self.git("update-ref", "--stdin", input="".join(f"update {ref} {sha}\n" for ref, sha in updates.items()))
        if not on_branch:
            self.git("symbolic-ref", "HEAD", f"refs/heads/{branch}")
        self.git("reset", "-q", "--mixed", commit)

    def untracked(self) -> list[str]:
        out = self.git("ls-files", "-z", "--others", "--exclude-standard")
        return [p for p in out.split("\0") if p]

    def dirty(self) -> list[str]:
        """Tracked files that differ from HEAD (staged or not)."""
        out = self.git("status", "--porcelain", "-z", "--untracked-files=no")
        return [entry[3:] for entry in out.split("\0") if len(entry) > 3]

    def restore(self, branch: str, commit: str, keep_untracked: list[str], quarantine: Path | None) -> list[str]:
        """Put the tree back at COMMIT on BRANCH, whatever state the agent or the run left.

        Untracked files that were not there before are moved into QUARANTINE (never deleted),
        so nothing anyone made is lost. Returns the quarantined paths.
        """
        self.git("checkout", "-q", "-f", "-B", branch, commit)  # index and tracked files, all of them
        keep = set(keep_untracked)
        moved: list[str] = []
        for path in self.untracked():
            if path in keep:
                continue
            src = self.root / path
            if quarantine is None:
                if src.is_file() or src.is_symlink():
                    src.unlink()
            else:
                dest = quarantine / path
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(src), str(dest))
            moved.append(path)
        self._prune_empty_dirs(moved)
        return moved

    def _prune_empty_dirs(self, paths: list[str]) -> None:
        for path in paths:
            parent = (self.root / path).parent
            while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent

    # -- reading history ---------------------------------------------------------------------

    def diff(self, old: str, new: str, paths: list[str] | None = None) -> str:
        return self.git("diff", "--no-color", "--no-ext-diff", old, new, "--", *(paths or []))

    def show_file(self, commit: str, path: str) -> str | None:
        proc = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=self.root, capture_output=True)
        return proc.stdout.decode("utf-8", "replace") if proc.returncode == 0 else None

    def subject(self, commit: str) -> str:
        return self.git("log", "-1", "--format=%s", commit).strip()

    def refs(self, prefix: str) -> dict[str, str]:
        out = self.git("for-each-ref", "--format=%(refname) %(objectname)", prefix)
        pairs = (line.split(" ", 1) for line in out.splitlines() if line)
        return {name: sha for name, sha in pairs}



    # -- clean exports -----------------------------------------------------------------------

    def export(self, commit: str, dest: Path) -> None:
        """Write exactly COMMIT's tree into DEST (missing or empty): no untracked or ignored
        file, no bytecode cache, no `.git`; symlinks stay symlinks, modes are kept.

        One `git checkout COMMIT -- :/` with DEST as the work tree and a throwaway index, so
        the task's own index and files are untouched and the cost does not grow with history.
        Measured against `read-tree` + `checkout-index` (two calls) and `git archive | tar -x`
        in benchmarks/export.py, it is the fastest; `git archive` would also apply the tree's
        own `export-ignore` / `export-subst` attributes and so not give the tree exactly.
        Hooks are off: nothing of the user's runs on an export."""
        dest = Path(dest)
        if dest.exists() and any(dest.iterdir()):
            raise GitError(f"export of {commit[:12]} into {dest}: the folder is not empty")
        dest.mkdir(parents=True, exist_ok=True)
        fd, index = tempfile.mkstemp(prefix="autoresearch-export-index-")
        os.close(fd)
        os.unlink(index)
        try:
            self.git("-c", "core.hooksPath=/dev/null", f"--work-tree={dest.resolve()}", "checkout", "-q",
                     commit, "--", ":/", env={"GIT_INDEX_FILE": index})
        finally:
            if os.path.exists(index):
                os.unlink(index)

    def read_blobs(self, commit: str, paths: list[str]) -> dict[str, bytes]:
        """The content of PATHS as committed in COMMIT (the lock commit, say), in one git call.
        A path missing from COMMIT is left out."""
        if not paths:
            return {}
        request = "".join(f"{commit}:{path}\n" for path in paths).encode()
        proc = subprocess.run(["git", "cat-file", "--batch"], cwd=self.root, input=request, capture_output=True)
        if proc.returncode != 0:
            raise GitError(f"git cat-file --batch failed: {proc.stderr.decode(errors='replace').strip()}")
        out, pos, found = proc.stdout, 0, {}
        for path in paths:
            header_end = out.index(b"\n", pos)
            header = out[pos:header_end].split()
            pos = header_end + 1
            if len(header) < 3 or header[-1] == b"missing":
                continue
            size = int(header[2])
            found[path] = out[pos:pos + size]
            pos += size + 1  # the blob, then a newline
        return found

    def executable_paths(self, commit: str, paths: list[str]) -> set[str]:
        """Which of PATHS are committed with the executable bit (mode 100755) in COMMIT."""
        if not paths:
            return set()
        out = self.git("ls-tree", "-z", "--full-tree", commit, "--", *paths)
        entries = (entry.split("\t", 1) for entry in out.split("\0") if "\t" in entry)
        return {path for meta, path in entries if meta.split()[0] == "100755"}

    def add_worktree(self, path: Path, commit: str) -> "Workspace":
        if path.exists():
            self.git("worktree", "remove", "--force", str(path), check=False)
            if path.exists():
                shutil.rmtree(path)
        self.git("worktree", "prune")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.git("worktree", "add", "-q", "--detach", str(path), commit)
        return Workspace(path)

    def remove_worktree(self, path: Path) -> None:
        self.git("worktree", "remove", "--force", str(path), check=False)
        self.git("worktree", "prune", check=False)


def write_locked_files(dest: Path, files: dict[str, bytes], executable: set[str] | None = None) -> None:
    """Write the harness files into an export from their locked content (Workspace.read_blobs
    and executable_paths on the lock commit), so what runs is what was locked, whatever is on
    disk elsewhere. Whatever sits at a path (a file, a symlink, a folder) is replaced, never
    written through; the files are left read-only (0444, or 0555 for those in EXECUTABLE)."""
    root = Path(dest).resolve()
    for rel, data in files.items():
        target = root / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts or root not in target.parents:
            raise GitError(f"locked file {rel!r} is not a path inside the task")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(target, 0o555 if rel in (executable or set()) else 0o444)


def count_lines(text: str | None) -> int:
    """Non-blank lines: the simplicity rule's measure of code size."""
    return sum(1 for line in (text or "").splitlines() if line.strip())
