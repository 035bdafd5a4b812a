"""Every git process starts here: branches, snapshots, commits, resets, refs and exports.

The working tree is read through a temporary index (``GIT_INDEX_FILE``), so whatever the agent
did (edited files, made its own commits, reset, switched branches) the change under test is
simply "the tree on disk versus best", and the commit that records it is always a child of
best. Git writes every object, ref and index; this module only runs it and reads what it prints
(_parse.py). Lookups that several steps need are batched into one process (`resolve`).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from autoresearch.errors import AutoresearchError, disk_full_message
from autoresearch.git._parse import Change, patch_lines_delta, raw_changes

BRANCH_PREFIX = "autoresearch/"
REF_PREFIX = "refs/autoresearch/"
LOCK_REF = "refs/autoresearch-lock"  # the lock's text; outside REF_PREFIX: a tag may be called "lock"
NOTES_REF = "refs/notes/autoresearch"
STATE_FOLDER = ".autoresearch"  # config.STATE_DIR too: config and git are sibling layers
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
        self._trees: dict[str, str] = {}  # commit sha -> its tree (a commit's tree never changes)

    # -- plumbing ----------------------------------------------------------------------------

    def git(self, *args: str, check: bool = True, env: dict[str, str] | None = None, input: str | None = None) -> str:
        if args and args[0] not in READ_ONLY_COMMANDS and not (env and "GIT_INDEX_FILE" in env):
            self.forget()  # anything that may move HEAD or a ref (a temporary index moves neither)
        needs_identity = bool(args) and args[0] in IDENTITY_COMMANDS
        identity = self._identity or (["-c", "user.useConfigOnly=true"] if needs_identity else [])
        proc = subprocess.run(["git", "-C", str(self.root), *identity, *args], input=input, capture_output=True,
                              text=True, errors="replace", env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})})
        if needs_identity and not self._identity and proc.returncode != 0 and _no_identity(proc.stderr):
            # No user.email/name configured: git would refuse (or guess from the host name). The
            # user's identity is used wherever there is one; this one only where there is none.
            self._identity = FALLBACK_IDENTITY
            return self.git(*args, check=check, env=env, input=input)
        if check and proc.returncode != 0:
            if "No space left on device" in proc.stderr:  # the way out, not git's words alone
                raise GitError(disk_full_message(self.root, f"git: {' '.join(proc.stderr.split())}"))
            raise GitError(f"git {' '.join(args)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

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
        if len(todo) < 2:  # one name: `rev` or `tree_of` asks for it as cheaply
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
            branch = self.git("symbolic-ref", "-q", "--short", "HEAD", check=False).strip()
            self._branch = branch  # set after the call: git() forgets the cache before each command
        return self._branch or None

    def branch_exists(self, name: str) -> bool:
        return self.rev(f"refs/heads/{name}") is not None

    def index_lock(self) -> Path | None:
        """The index's lock file when one is there (a git at work, or one killed mid-write)."""
        dot_git = self.root / ".git"
        if dot_git.is_dir():
            path = dot_git / "index.lock"
        else:  # a linked worktree: its index lives in its own git dir
            found = Path(self.git("rev-parse", "--git-path", "index.lock", check=False).strip() or "index.lock")
            path = found if found.is_absolute() else self.root / found
        return path if path.exists() else None

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
        if commit not in self._trees:
            tree = self.git("rev-parse", f"{commit}^{{tree}}").strip()
            if len(commit) < 40:  # a name that may move: not cached
                return tree
            self._trees[commit] = tree
        return self._trees[commit]

    # -- snapshot, diff, commit --------------------------------------------------------------

    def snapshot(self, base: str, exclude: list[str] | None = None) -> str:
        """The tree of the working directory (ignored files left out), as a tree object, read
        through a temporary index seeded from BASE: the real index and HEAD are untouched.
        Paths in EXCLUDE (untracked files that were there before the run started) are left out,
        and so is autoresearch's own folder, whatever .gitignore says: committed, the journal
        would be in git's history; as an added path it would be moved aside at the next reset."""
        fd, index = tempfile.mkstemp(prefix="autoresearch-index-")
        os.close(fd)
        os.unlink(index)  # git writes it (a name only, never read empty)
        env = {"GIT_INDEX_FILE": index}
        try:
            self.git("read-tree", base, env=env)
            self.git("add", "-A", "--", ".", env=env)
            left_out = [*(exclude or []), STATE_FOLDER]
            self.git("rm", "-r", "-q", "--cached", "--ignore-unmatch", "--pathspec-from-file=-",
                     "--pathspec-file-nul", env=env, input="\0".join(left_out))
            return self.git("write-tree", env=env).strip()
        finally:
            for leftover in (index, index + ".lock"):
                if os.path.exists(leftover):
                    os.unlink(leftover)

    def changes(self, old_tree: str, new_tree: str) -> list[Change]:
        out = self.git("diff-tree", "-r", "--no-renames", "-z", "--raw", old_tree, new_tree)
        return raw_changes(out.split("\0"))[0]

    def changes_and_lines(self, old_tree: str, new_tree: str) -> tuple[list[Change], int]:
        """The changed paths and the non-blank lines added minus removed over them (the
        simplicity rule's measure), from one git process: the raw listing and a patch without
        context. Every file is diffed as text (--text: a NUL byte, a `-diff` or `binary`
        attribute cannot make a file's lines vanish from the count), without textconv or an
        external diff; submodules count no lines. Lines are what git splits on (newlines)."""
        out = self.git("diff-tree", "-r", "--no-renames", "-z", "--raw", "-p", "-U0", "--inter-hunk-context=0",
                       "--text", "--no-color", "--no-ext-diff", "--no-textconv", old_tree, new_tree)
        changes, patch = raw_changes(out.split("\0"))
        return changes, patch_lines_delta("\0".join(patch))

    def commit_tree(self, tree: str, parent: str, message: str) -> str:
        commit = self.git("commit-tree", tree, "-p", parent, "-m", message).strip()
        self._trees[commit] = tree  # git just wrote it so
        return commit

    def untracked(self) -> list[str]:
        """Untracked files git would add. Never autoresearch's own folder: whatever .gitignore
        says, its journal and logs are not work to commit, move aside or quarantine."""
        out = self.git("ls-files", "-z", "--others", "--exclude-standard")
        return [p for p in out.split("\0") if p and p.split("/", 1)[0] != STATE_FOLDER]

    def tracked(self, paths: list[str]) -> set[str]:
        """Which of PATHS (relative to the root) git tracks."""
        if not paths:
            return set()
        out = self.git("ls-files", "-z", "--", *paths)
        return {p for p in out.split("\0") if p}

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
        Not `git archive`: it would apply the tree's own `export-ignore` / `export-subst`
        attributes and so not give the tree exactly.
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

    def anchor(self, ref: str, text: str) -> None:
        """Keep TEXT as a blob named by REF (the lock's text, say)."""
        blob = self.git("hash-object", "-w", "--stdin", input=text).strip()
        self.git("update-ref", ref, blob)

    def anchored(self, ref: str) -> str | None:
        """The text REF names (see `anchor`); None when there is none."""
        return self.read_texts([ref]).get(ref)

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
