"""Every git operation lives here: branches, snapshots, commits, resets, refs and worktrees.

The working tree is read through a temporary index (``GIT_INDEX_FILE``), so whatever the agent
did (edited files, made its own commits, reset, switched branches) the change under test is
simply "the tree on disk versus best", and the commit that records it is always a child of best.
"""

from __future__ import annotations

from . import gitdata, gitindex, spawn
from .errors import AutoresearchError, disk_full_message

import fnmatch
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

BRANCH_PREFIX = "autoresearch/"
REF_PREFIX = "refs/autoresearch/"
NOTES_REF = "refs/notes/autoresearch"
# git commands that never move HEAD (the branch cache survives them)
READ_ONLY_COMMANDS = frozenset({"rev-parse", "cat-file", "diff-tree", "ls-files", "ls-tree",
                                "for-each-ref", "show", "log", "diff", "merge-base", "status", "hash-object",
                                "write-tree", "commit-tree", "config"})
FALLBACK_IDENTITY = ["-c", "user.name=autoresearch", "-c", "user.email=autoresearch@localhost"]
# git commands that write an author or committer: they learn whether the user has an identity by
# trying (one process fewer on every experiment than asking `git config` first)
IDENTITY_COMMANDS = frozenset({"commit", "commit-tree", "notes", "merge", "stash", "tag", "revert",
                               "cherry-pick", "rebase", "am"})


class GitError(AutoresearchError):
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


def _no_identity(stderr: str) -> bool:
    text = stderr.lower()
    return "useconfigonly" in text or "tell me who you are" in text or "empty ident" in text \
        or "unable to auto-detect email" in text


def branch_name(tag: str) -> str:
    return BRANCH_PREFIX + tag


def experiment_ref(tag: str, seq: int) -> str:
    return f"{REF_PREFIX}{tag}/{seq}"


def matches_any(path: str, patterns: list[str]) -> bool:
    """Glob match of a repository path against the config's patterns (`**` spans folders)."""
    for pattern in patterns:
        if path == pattern or fnmatch.fnmatchcase(path, pattern):  # a literal name may hold [ or *
            return True
        if "**/" in pattern and fnmatch.fnmatchcase(path, pattern.replace("**/", "")):
            return True
    return False


class Workspace:
    """A git work tree (the task folder itself, or a worktree of it)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        self._identity: list[str] = []
        self._branch: str | None = None
        self._revs: dict[str, str | None] = {}  # name -> commit, until something may move a ref
        # the last snapshot: base, its index file, the tree it gave, the paths it left out
        self._index: tuple[str, str, str, frozenset[str]] | None = None
        self._trees: dict[str, str] = {}  # commit sha -> its tree
        self._git_exe: str | None = None  # git's path, looked up once
        # The environment git runs with, as bytes, taken once: copying os.environ (a decode and
        # an encode per variable) for each of a dozen calls was a tenth of a served experiment's
        # Python. A Workspace lives for one command (or one experiment's copy), whose
        # environment does not change under it.
        self._env: dict[bytes, bytes] | None = None
        self._git_dir: Path | None | bool = False  # gitdata.plain_git_dir, asked once
        self._writable: bool | None = None  # may objects be written here as git writes them by default
        self._snapshot_files: tuple[str, list[gitindex.Entry]] | None = None  # last tree written from an index
        self._base_files: tuple[str, list[gitindex.Entry]] | None = None  # a snapshot base's entries (its seed)

    def _plain_git_dir(self) -> Path | None:
        """.git, when its refs and objects may be read (and written) as files (gitdata)."""
        if self._git_dir is False:
            self._git_dir = gitdata.plain_git_dir(self.root)
        return self._git_dir if isinstance(self._git_dir, Path) else None

    def _write_tree(self, index: str) -> str | None:
        """The snapshot index's tree, written without git (gitindex), or None: then git writes
        it. Not where the repository asks for more than git's default way of writing loose
        objects (shared permissions, fsync, another hash): its config says so."""
        git_dir = self._plain_git_dir()
        if git_dir is None:
            return None
        if self._writable is None:
            try:
                config = (git_dir / "config").read_text(encoding="utf-8", errors="replace").lower()
            except OSError:
                config = "include"
            self._writable = not any(word in config for word in ("sharedrepository", "fsync", "include",
                                                                  "objectformat", "compression"))
        entries = gitindex.read_index(index) if self._writable else None
        tree = gitindex.write_tree(git_dir, entries) if entries is not None else None
        self._snapshot_files = (tree, entries) if tree and entries is not None else None
        return tree

    def _from_files(self, names: list[str]) -> dict[str, str] | None:
        """NAMES answered from .git's files (gitdata), or None: then git is asked."""
        git_dir = self._plain_git_dir()
        return gitdata.resolve(git_dir, names) if git_dir is not None else None

    # -- plumbing ----------------------------------------------------------------------------

    def git(self, *args: str, check: bool = True, env: dict[str, str] | None = None, input: str | None = None) -> str:
        if args and args[0] not in READ_ONLY_COMMANDS and not (env and "GIT_INDEX_FILE" in env):
            self.forget()  # anything that may move HEAD or a ref (a temporary index moves neither)
        if self._env is None:
            self._env = {b"GIT_TERMINAL_PROMPT": b"0", **os.environb}
        full_env = {**self._env, **{os.fsencode(k): os.fsencode(v) for k, v in env.items()}} if env else self._env
        needs_identity = bool(args) and args[0] in IDENTITY_COMMANDS
        identity = self._identity or (["-c", "user.useConfigOnly=true"] if needs_identity else [])
        if self._git_exe is None:
            self._git_exe = shutil.which("git") or "git"
        code, stdout, stderr = spawn.capture([self._git_exe, "-C", str(self.root), *identity, *args], full_env, input)
        if needs_identity and not self._identity and code != 0 and _no_identity(stderr):
            # No user.email/name configured: git would refuse (or guess from the host name). The
            # user's identity is used wherever there is one; this one only where there is none.
            self._identity = FALLBACK_IDENTITY
            return self.git(*args, check=check, env=env, input=input)
        if check and code != 0:
            if "No space left on device" in stderr:  # the way out, not git's words alone
                raise GitError(disk_full_message(self.root, f"git: {' '.join(stderr.split())}"))
            raise GitError(f"git {' '.join(args)} failed ({code}): {stderr.strip() or stdout.strip()}")
        return stdout

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
        """The commit REF names, or None. Cached until a git command that may move a ref runs."""
        if ref not in self._revs:
            answers = self._from_files([ref])
            if answers is not None:
                self._revs[ref] = answers[ref]
                return answers[ref]
            out = self.git("rev-parse", "-q", "--verify", f"{ref}^{{commit}}", check=False).strip()
            self._revs[ref] = out or None  # after the call: git() may clear the cache first
        return self._revs[ref]

    def forget(self) -> None:
        """Drop what was read of HEAD and the refs (trees stay: a commit's tree never changes).
        A command's caches live as long as the command; a loop forgets them per experiment, in
        case someone moved a ref by hand meanwhile."""
        self._branch = None
        self._revs.clear()

    def resolve(self, *names: str) -> None:
        """Look up several commits (`X`) and commits' trees (`X^{tree}`) in one git process;
        `rev` and `tree_of` then answer from their caches."""
        todo = [n for n in dict.fromkeys(names) if n and n not in self._revs and not
                (n.endswith("^{tree}") and n[:-7] in self._trees)]
        if not todo:
            return
        answers = self._from_files(todo)
        if answers is not None:  # all of them from .git's files: no process
            for name, sha in answers.items():
                if name.endswith("^{tree}"):
                    if len(name) - 7 >= 40:
                        self._trees[name[:-7]] = sha
                else:
                    self._revs[name] = sha
            return
        if len(todo) < 2:
            return
        asked = [n if n.endswith("^{tree}") else f"{n}^{{commit}}" for n in todo]
        out = self.git("cat-file", "--batch-check=%(objectname) %(objecttype)",
                       input="".join(f"{a}\n" for a in asked), check=False).splitlines()
        if len(out) != len(todo):
            return  # not what was asked for: `rev` and `tree_of` ask one by one
        for name, line in zip(todo, out):
            sha, _, kind = line.partition(" ")
            if name.endswith("^{tree}"):
                if kind == "tree" and len(name) - 7 >= 40:
                    self._trees[name[:-7]] = sha
            else:
                self._revs[name] = sha if kind == "commit" else None

    def head(self) -> str | None:
        return self.rev("HEAD")

    def current_branch(self) -> str | None:
        """The checked-out branch, cached until a git command that may move HEAD runs here."""
        if self._branch is None:
            branch = self._head_file()
            if branch is None:
                branch = self.git("symbolic-ref", "-q", "--short", "HEAD", check=False).strip()
            self._branch = branch  # set after the call: git() forgets the cache before each command
        return self._branch or None

    def _head_file(self) -> str | None:
        """The branch HEAD names, read from .git/HEAD ("" when detached), or None when only git
        can say (a worktree's .git file, GIT_DIR set, a symref outside refs/heads). One process
        fewer per command: HEAD is always a plain file in these forms."""
        if "GIT_DIR" in os.environ or "GIT_WORK_TREE" in os.environ:
            return None
        try:
            text = (self.root / ".git" / "HEAD").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):  # no .git folder here (a worktree, a sub-folder task)
            return None
        if text.startswith("ref: refs/heads/") and text.endswith("\n") and text.count("\n") == 1:
            return text[len("ref: refs/heads/"):-1].strip() or None
        if len(text.strip()) in (40, 64) and all(c in "0123456789abcdef" for c in text.strip()):
            return ""  # detached
        return None

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


    def is_ancestor(self, ancestor: str, commit: str) -> bool:
        proc = subprocess.run(["git", "merge-base", "--is-ancestor", ancestor, commit], cwd=self.root,
                              capture_output=True)
        return proc.returncode == 0

    def tree_of(self, commit: str) -> str:
        if commit in self._trees:  # a commit's tree never changes
            return self._trees[commit]
        answers = self._from_files([f"{commit}^{{tree}}"])
        tree = answers[f"{commit}^{{tree}}"] if answers else self.git("rev-parse", f"{commit}^{{tree}}").strip()
        if len(commit) >= 40:
            self._trees[commit] = tree
        return tree

    # -- snapshot, diff, commit --------------------------------------------------------------

    def snapshot(self, base: str, exclude: list[str] | None = None) -> str:
        """The tree of the working directory (ignored files left out), as a tree object.

        Built in a temporary index seeded from BASE, so the real index and HEAD are untouched.
        Paths in EXCLUDE (untracked files that were there before the run started) are left out.
        A second snapshot on the same BASE (the folder after the run, before it is reset) reuses
        that index: `git add -A --dry-run` against it lists what changed since (nothing, as a
        rule: one process instead of three). Call `drop_snapshot_index` when done.
        """
        if self._index is not None and self._index[0] != base:
            self.drop_snapshot_index()
        left_out = frozenset(exclude or [])
        if self._index is not None and self._index[3] == left_out:
            unchanged = self._unchanged_since_snapshot()
            if unchanged is not None:
                return unchanged
        if self._index is None:
            fd, index = tempfile.mkstemp(prefix="autoresearch-index-")
            os.close(fd)
            os.unlink(index)
            self._index = (base, index, "", left_out)
            fresh = True
        else:
            index, fresh = self._index[1], False
        env = {"GIT_INDEX_FILE": index}
        try:
            if fresh and not self._seed_index(base, index):
                self.git("read-tree", base, env=env)
                entries = gitindex.read_index(index)
                self._base_files = (base, entries) if entries is not None else None
                self._keep_seed(base, index)
            self.git("add", "-A", "--", ".", env=env)
            if exclude:
                self.git("rm", "-q", "--cached", "--ignore-unmatch", "--pathspec-from-file=-",
                         "--pathspec-file-nul", env=env, input="\0".join(exclude))
            tree = self._write_tree(index) or self.git("write-tree", env=env).strip()
        except BaseException:
            self.drop_snapshot_index()
            raise
        self._index = (base, index, tree, left_out)
        return tree

    # `git read-tree BASE` into an empty index writes the same bytes every time (entries
    # without stat data, the cache tree), so the last one is kept and copied: a snapshot on the
    # same best (every discard in a row) then starts without that git process. In the task's
    # state folder, which git ignores and sandboxes hide; named by the commit it was read from.
    SEED_PREFIX = "snapshot-seed-"

    def _seed_path(self, base: str) -> Path | None:
        state = self.root / ".autoresearch"
        return state / f"{self.SEED_PREFIX}{base}.index" if len(base) == 40 and state.is_dir() else None

    def _seed_index(self, base: str, index: str) -> bool:
        """Copy the kept seed of BASE to INDEX when its entries are exactly BASE's tree (they
        hash to it: a seed edited by anyone is not used, and goes)."""
        seed = self._seed_path(base)
        if seed is None:
            return False
        entries = gitindex.read_index(seed)
        if entries is None or gitindex.write_tree(None, entries) != self.tree_of(base):
            seed.unlink(missing_ok=True)
            return False
        try:
            shutil.copyfile(seed, index)
        except OSError:
            return False
        self._base_files = (base, entries)
        return True

    def _keep_seed(self, base: str, index: str) -> None:
        seed = self._seed_path(base)
        if seed is None:
            return
        partial = seed.with_name(seed.name + f".{os.getpid()}.tmp")
        try:
            shutil.copyfile(index, partial)
            os.replace(partial, seed)  # whole or not at all: a kill leaves no half index to copy
            for old in seed.parent.glob(f"{self.SEED_PREFIX}*"):
                if old != seed:
                    old.unlink(missing_ok=True)
        except OSError:  # a full disk, say: the next snapshot reads the tree again
            partial.unlink(missing_ok=True)

    def _unchanged_since_snapshot(self) -> str | None:
        """The last snapshot's tree when nothing on disk changed since (besides the paths it left
        out), else None. `git add --dry-run` prints `add 'path'` / `remove 'path'` per change."""
        assert self._index is not None
        _, index, tree, excluded = self._index
        if not tree:
            return None
        try:
            out = self.git("add", "-A", "--dry-run", "--", ".", env={"GIT_INDEX_FILE": index})
        except GitError:
            return None
        for line in out.splitlines():
            verb, _, quoted = line.partition(" ")
            if verb not in ("add", "remove") or not (quoted.startswith("'") and quoted.endswith("'")) \
                    or quoted[1:-1] not in excluded:
                return None
        return tree

    def drop_snapshot_index(self) -> None:
        if self._index is not None:
            path = self._index[1]
            self._index = None
            for leftover in (path, path + ".lock"):
                if os.path.exists(leftover):
                    os.unlink(leftover)

    def changes(self, old_tree: str, new_tree: str) -> list[Change]:
        out = self.git("diff-tree", "-r", "--no-renames", "-z", "--raw", old_tree, new_tree)
        return gitdata.raw_changes(out.split("\0"))[0]

    def changes_and_lines(self, old_tree: str, new_tree: str) -> tuple[list[Change], int]:
        """The changed paths and the non-blank lines added minus removed over them (the
        simplicity rule's measure), from one git process: the raw listing and a patch without
        context. Every file is diffed as text (--text: a NUL byte, a `-diff` or `binary`
        attribute cannot make a file's lines vanish from the count), without textconv or an
        external diff; submodules count no lines. Lines are what git splits on (newlines)."""
        fast = self._changes_from_files(old_tree, new_tree)
        if fast is not None:
            return fast
        out = self.git("diff-tree", "-r", "--no-renames", "-z", "--raw", "-p", "-U0", "--inter-hunk-context=0",
                       "--text", "--no-color", "--no-ext-diff", "--no-textconv", old_tree, new_tree)
        changes, patch = gitdata.raw_changes(out.split("\0"))
        return changes, gitdata.patch_lines_delta("\0".join(patch))

    def _changes_from_files(self, old: str, new: str) -> tuple[list[Change], int] | None:
        """changes_and_lines without git, for the snapshot just written against its base: both
        sides' entries are at hand (the seed, the snapshot index) and the changed blobs are loose
        objects (`add` just wrote the new ones). The lines are the same count as the patch's:
        unchanged lines cancel out of whole files just as they are left out of a patch."""
        base, files, git_dir = self._base_files, self._snapshot_files, self._plain_git_dir()
        if base is None or files is None or base[0] != old or files[0] != new or git_dir is None:
            return None
        changes, delta = [], 0
        for status, a, b in gitindex.diff(base[1], files[1]):
            entry = b if b is not None else a
            assert entry is not None
            changes.append(Change(status=status, path=entry.path.decode("utf-8", "replace"),
                                  new_mode=f"{b.mode:06o}" if b is not None else "000000"))
            for side, sign in ((a, -1), (b, 1)):
                if side is None or side.mode == 0o160000:  # a submodule counts no lines
                    continue
                data = gitindex.read_blob(git_dir, side.sha)
                if data is None:
                    return None  # packed, say: git diffs it
                delta += sign * gitindex.nonblank_lines(data)
        return changes, delta

    def commit_tree(self, tree: str, parent: str, message: str) -> str:
        commit = self.git("commit-tree", tree, "-p", parent, "-m", message).strip()
        self._trees[commit] = tree  # git just wrote it so
        return commit

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

    def restore(self, branch: str, commit: str, keep_untracked: list[str], quarantine: Path | None,
                untracked: list[str] | None = None) -> list[str]:
        """Put the tree back at COMMIT on BRANCH, whatever state the agent or the run left.

        Untracked files that were not there before are moved into QUARANTINE (never deleted),
        so nothing anyone made is lost. Returns the quarantined paths. UNTRACKED: what those
        files will be, when the caller knows (the folder held a tree whose difference from
        COMMIT it has); else git lists them."""
        self.git("checkout", "-q", "-f", "-B", branch, commit)  # index and tracked files, all of them
        keep = set(keep_untracked)
        moved: list[str] = []
        for path in self.untracked() if untracked is None else untracked:
            if not os.path.lexists(self.root / path):
                continue
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
        files = self._snapshot_files
        if files is not None and self._trees.get(commit) == files[0]:
            # COMMIT is the snapshot just written: its files are the ones `add` just read here,
            # copied and checked blob by blob (gitindex.export); any doubt, and git does it
            if gitindex.export(self.root, files[1], dest):
                return
            clear_dir(dest)
            dest.mkdir(parents=True)
        fd, index = tempfile.mkstemp(prefix="autoresearch-export-index-")
        os.close(fd)
        os.unlink(index)
        try:
            self.git("-c", "core.hooksPath=/dev/null", f"--work-tree={dest.resolve()}", "checkout", "-q",
                     commit, "--", ":/", env={"GIT_INDEX_FILE": index})
        finally:
            if os.path.exists(index):
                os.unlink(index)

    # -- rescue, notes, blobs ------------------------------------------------------------------

    def rescue(self, tag: str, tree: str, parent: str, why: str) -> str:
        """Keep TREE (what was on disk, uncommitted) as a commit under
        refs/autoresearch/<tag>/rescue/<n>, before anything resets the folder. Returns the ref."""
        taken = self.refs(f"{REF_PREFIX}{tag}/rescue/")
        n = 1 + max((int(r.rsplit("/", 1)[1]) for r in taken if r.rsplit("/", 1)[1].isdigit()), default=0)
        ref = f"{REF_PREFIX}{tag}/rescue/{n}"
        commit = self.commit_tree(tree, parent, f"autoresearch rescue: {why}\n")
        self.git("update-ref", ref, commit)
        return ref

    def add_note(self, commit: str, text: str) -> None:
        """Store TEXT beside COMMIT (refs/notes/autoresearch): the record survives a lost journal."""
        self.git("notes", "--ref", NOTES_REF, "add", "-f", "-F", "-", commit, input=text)

    def notes(self) -> dict[str, str]:
        """Every note: commit -> text."""
        listing = self.git("notes", "--ref", NOTES_REF, "list", check=False).split()
        pairs = list(zip(listing[0::2], listing[1::2]))
        if not pairs:
            return {}
        texts = self.read_texts([note for note, _ in pairs])
        return {commit: texts.get(note) or "" for note, commit in pairs}

    def read_texts(self, names: list[str]) -> dict[str, str | None]:
        """Many `<rev>:<path>` (or blob ids) in one git process; None where missing."""
        if not names:
            return {}
        proc = subprocess.run(["git", "cat-file", "--batch"], cwd=self.root, input="\n".join(names).encode() + b"\n",
                              capture_output=True)
        out, pos = proc.stdout, 0
        result: dict[str, str | None] = {}
        for name in names:
            end = out.index(b"\n", pos)
            header = out[pos:end].decode("utf-8", "replace")
            pos = end + 1
            if header.endswith("missing") or header.endswith("ambiguous"):
                result[name] = None
                continue
            size = int(header.split()[-1])
            result[name] = out[pos:pos + size].decode("utf-8", "replace")
            pos += size + 1
        return result

    def hash_files(self, paths: list[Path]) -> list[str]:
        """Write these files into the object store (one git process); their blob ids."""
        if not paths:
            return []
        out = self.git("hash-object", "-w", "--no-filters", "--stdin-paths", input="\n".join(str(p) for p in paths))
        return out.split()

    def tree_with(self, base: str, entries: dict[str, tuple[str, str] | None]) -> str:
        """BASE's tree with ENTRIES applied: path -> (mode, blob id), or None to delete."""
        fd, index = tempfile.mkstemp(prefix="autoresearch-index-")
        os.close(fd)
        os.unlink(index)
        env = {"GIT_INDEX_FILE": index}
        zero = "0" * 40
        lines = "".join(f"{mode} {sha}\t{path}\n" if spec else f"0 {zero}\t{path}\n"
                        for path, spec in entries.items() for mode, sha in [spec or ("0", zero)])
        try:
            self.git("read-tree", base, env=env)
            if lines:
                self.git("update-index", "--index-info", env=env, input=lines)
            return self.git("write-tree", env=env).strip()
        finally:
            if os.path.exists(index):
                os.unlink(index)

    def sync_branch(self, branch: str, commit: str) -> None:
        """BRANCH at COMMIT, checked out, index at COMMIT; the files on disk are not touched."""
        self.git("update-ref", f"refs/heads/{branch}", commit)
        if self.current_branch() != branch:
            self.git("symbolic-ref", "HEAD", f"refs/heads/{branch}")
        self.git("read-tree", commit)


def clear_dir(path: Path) -> None:
    """Remove PATH (an export or a scratch copy) even where a run made it read-only."""
    if path.exists() or path.is_symlink():
        if path.is_dir() and not path.is_symlink():
            _make_writable(path)
            shutil.rmtree(path)
        else:
            path.unlink()


def _make_writable(path: Path) -> None:
    """A run without the sandbox may chmod its export read-only; removing it must still work."""
    for root, dirs, _ in os.walk(path):
        for d in dirs:
            try:
                os.chmod(os.path.join(root, d), 0o755)
            except OSError:
                pass
