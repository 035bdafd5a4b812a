"""The git access layer against real git on a repository built to be awkward: names that sort
differently as files and folders, an executable, symlinks (one pointing outside), a submodule
entry, a file with a NUL byte, CRLF lines.

Every tree, diff and export is git's own; what is attacked here is what reaches a candidate: a
file swapped after the snapshot, autoresearch's own folder, a line count gamed by attributes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import git, git_env

from autoresearch.config import STATE_DIR
from autoresearch.git import STATE_FOLDER
from autoresearch.git.workspace import Workspace
from autoresearch.trial.measure import _planted_bytecode

SUBMODULE = "1234567890abcdef1234567890abcdef12345678"


def awkward_repo(root: Path) -> Path:
    """A committed repository whose tree has every shape a tree entry can have."""
    root.mkdir()
    git(root, "init", "-q")
    files = {
        "a.b": "dot\n", "a-b": "dash\n", "a0": "zero\n", "a/b": "in a folder\n", "a/b.c/d": "deep\n",
        "z z/sp ace.txt": "space\n", "ünï.txt": "unicode\n", "crlf.txt": "one\r\ntwo\r\n\r\n",
        "bin.dat": "x\0y\nz\n", "empty": "", "train.py": "X = 0\nprint('val_loss: 1.0')\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(text.encode())
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "run.sh").chmod(0o755)
    (root / "link").symlink_to("a.b")
    (root / "outside").symlink_to("/etc/hostname")
    git(root, "add", "-A")
    git(root, "update-index", "--add", "--cacheinfo", f"160000,{SUBMODULE},vendor/sub")
    (root / "vendor" / "sub").mkdir(parents=True)  # a submodule not checked out: an empty folder
    git(root, "commit", "-qm", "awkward")
    return root


def index_of(root: Path, name: str, *, version: int | None = None) -> Path:
    """A fresh index of HEAD plus the work tree (read-tree, add -A), as a snapshot builds it."""
    index = root.parent / name
    env = {**git_env(), "GIT_INDEX_FILE": str(index)}
    subprocess.run(["git", "read-tree", "HEAD"], cwd=root, env=env, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, env=env, check=True)
    if version:
        subprocess.run(["git", "update-index", "--index-version", str(version)], cwd=root, env=env, check=True)
    return index


def git_write_tree(root: Path, index: Path) -> str:
    return subprocess.run(["git", "write-tree"], cwd=root, env={**git_env(), "GIT_INDEX_FILE": str(index)},
                          capture_output=True, text=True, check=True).stdout.strip()


def exported(folder: Path) -> dict[str, tuple]:
    """Everything an export holds: per path, its kind, mode bits and content or target."""
    found: dict[str, tuple] = {}
    for dirpath, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(dirpath) / name
            rel = str(path.relative_to(folder))
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = ("dir", any(path.iterdir()))
            elif not path.is_file():  # a FIFO, say: named, never read
                found[rel] = ("special",)
            else:
                found[rel] = ("file", path.stat().st_mode & 0o111 != 0, path.read_bytes())
    return found


def test_a_file_changed_after_the_snapshot_never_reaches_the_export(tmp_path: Path) -> None:
    """The attack: the snapshot is taken, then the file on disk changes (or becomes a link to a
    file outside, or a FIFO) before the export is written. The export is the commit, byte for
    byte, and never waits on the FIFO."""
    root = awkward_repo(tmp_path / "repo")
    ws = Workspace(root)
    head = git(root, "rev-parse", "HEAD").strip()
    (root / "train.py").write_text("X = 1\nprint('val_loss: 1.0')\n")
    tree = ws.snapshot(head)
    commit = ws.commit_tree(tree, head, "candidate")
    for i, tamper in enumerate((lambda: (root / "train.py").write_text("print('val_loss: 0.0')  # swapped\n"),
                                lambda: ((root / "train.py").unlink(), (root / "train.py").symlink_to("/etc/hostname")),
                                lambda: ((root / "train.py").unlink(), os.mkfifo(root / "train.py")))):
        tamper()
        dest = tmp_path / f"export{i}"
        ws.export(commit, dest)
        assert (dest / "train.py").read_text() == "X = 1\nprint('val_loss: 1.0')\n"
        assert not (dest / "train.py").is_symlink()
        assert exported(dest).keys() == {p for p in exported(root) if p != ".git" and not p.startswith(".git/")}


def test_the_snapshot_is_the_tree_git_writes_without_the_state_folder(tmp_path: Path) -> None:
    """Workspace.snapshot is `add -A` + `write-tree` on a private index: the tree git writes from
    the same folder, the user's index untouched, and autoresearch's own folder never in it, even
    when .gitignore stops ignoring it (the journal would otherwise be committed)."""
    root = awkward_repo(tmp_path / "repo")
    (root / ".autoresearch").mkdir()
    (root / ".autoresearch" / "journal.db").write_text("not a candidate\n")
    (root / ".gitignore").write_text(".autoresearch/\n")
    ws = Workspace(root)
    head = git(root, "rev-parse", "HEAD").strip()
    index_before = (root / ".git" / "index").read_bytes()
    for step in range(3):
        (root / "a" / f"f{step}.txt").write_text(f"{step}\n")
        tree = ws.snapshot(head)
        assert tree == git_write_tree(root, index_of(root, f"check{step}.index"))
    (root / ".gitignore").write_text("")  # the agent un-ignores the state folder
    tree = ws.snapshot(head)
    listed = git(root, "ls-tree", "-r", "--name-only", tree).split("\n")
    assert not [p for p in listed if p.startswith(".autoresearch")]
    assert (root / ".git" / "index").read_bytes() == index_before
    assert ws.snapshot(head, exclude=["a/f0.txt"]) != tree  # a path that was there before the run: left out
    subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=root, check=True, capture_output=True)


def test_the_lines_delta_cannot_be_gamed_and_counts_what_git_splits(tmp_path: Path) -> None:
    """Non-blank lines added minus removed, from one `diff-tree`: a NUL byte or a `-diff`
    attribute must not make a file's lines vanish (a "simpler" keep for free); a removed line
    reading `--- x` is a line, not a header; a submodule counts nothing."""
    root = awkward_repo(tmp_path / "repo")
    ws = Workspace(root)
    head = git(root, "rev-parse", "HEAD").strip()
    base = ws.tree_of(head)

    def delta_after(edit) -> int:
        edit()
        git(root, "add", "-A")
        git(root, "update-index", "--add", "--cacheinfo", f"160000,{'ab' * 20},vendor/sub")
        tree = git(root, "write-tree").strip()
        git(root, "reset", "-q", "--hard", head)
        return ws.changes_and_lines(base, tree)[1]

    train = (root / "train.py").read_text()
    assert delta_after(lambda: (root / "train.py").write_text(train + "\n\nY = 1\n")) == 1
    assert delta_after(lambda: (root / "train.py").write_text("\0" + train)) == 0  # binary now: still 2 lines
    assert delta_after(lambda: (root / ".gitattributes").write_text("train.py -diff binary\n")) == 1
    assert delta_after(lambda: (root / "train.py").write_text("--- a\n-- b\n+++ c\n")) == 1
    assert delta_after(lambda: (root / "crlf.txt").write_text("one\r\n")) == -1
    assert delta_after(lambda: (root / "bin.dat").write_bytes(b"x\0y")) == -1
    assert delta_after(lambda: (root / "train.py").write_text(train.rstrip("\n"))) == 0  # no newline at end


def test_a_planted_bytecode_cache_is_found_and_removed_in_one_pass(tmp_path: Path) -> None:
    tree = tmp_path / "export"
    for path in ("__pycache__/a.cpython-311.pyc", "pkg/__pycache__/b.pyc", "pkg/c.pyc", "d.pyc", "pkg/keep.py"):
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_bytes(b"x")
    found = _planted_bytecode(tree)
    assert sorted(found) == ["__pycache__", "d.pyc", "pkg/__pycache__", "pkg/c.pyc"]
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*")) == ["pkg", "pkg/keep.py"]


def test_the_state_folder_is_one_name_in_both_sibling_layers() -> None:
    """config and git may not import each other, so each names the state folder: the snapshot
    leaves out exactly the folder the session writes its journal into."""
    assert STATE_DIR == STATE_FOLDER
