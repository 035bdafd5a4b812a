"""git without git: what workspace.py now reads and writes itself (gitdata, gitindex, the seeded
snapshot index, the one-call lines delta) must be exactly what git would have said or written,
and must step aside (to git) wherever it cannot be sure.

Every check compares with real git on a real repository built to be awkward: names that sort
differently as files and folders, an executable, symlinks (one pointing outside), a submodule
entry, a file with a NUL byte, CRLF lines, index versions 2 to 4, packed refs and objects.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from conftest import git, git_env

from autoresearch import gitdata, gitindex
from autoresearch.workspace import Workspace

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


def record_git(ws: Workspace) -> list[tuple]:
    """Every git command WS runs from now on, as its arguments."""
    calls: list[tuple] = []
    real = ws.git

    def recording(*args: str, **kwargs: object) -> str:
        calls.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    ws.git = recording  # type: ignore[method-assign]
    return calls


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


@pytest.mark.parametrize("version", [2, 3, 4])
def test_a_tree_written_from_the_index_is_the_one_git_writes(tmp_path: Path, version: int) -> None:
    root = awkward_repo(tmp_path / "repo")
    (root / "a" / "new.py").write_text("new\n")
    (root / "a.b").write_text("changed\n")
    index = index_of(root, "snapshot.index", version=version)
    entries = gitindex.read_index(index)
    assert entries is not None and len(entries) == 16
    assert {e.mode for e in entries} == {0o100644, 0o100755, 0o120000, 0o160000}
    expected = git_write_tree(root, index)
    shutil.rmtree(root / ".git" / "objects" / expected[:2])  # the trees must really be written here
    ours = gitindex.write_tree(root / ".git", entries)
    assert ours == expected
    assert git(root, "cat-file", "-t", expected).strip() == "tree"
    subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=root, check=True, capture_output=True)


def test_random_trees_match_git(tmp_path: Path) -> None:
    rng = random.Random(7)
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "seed").write_text("0\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "seed")
    parts = ["a", "a.b", "a-b", "a_b", "b", "B", "a0", "ab", "a b", "x.y.z"]
    for round_ in range(12):
        for _ in range(rng.randint(1, 15)):
            path = root.joinpath(*rng.sample(parts, rng.randint(1, 3)))
            if any(p.is_file() for p in [*path.parents][:-1] if p != root) or path.is_dir():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{round_} {rng.random()}\n")
            if rng.random() < 0.2:
                path.chmod(0o755)
        index = index_of(root, f"r{round_}.index", version=rng.choice([2, 3, 4]))
        entries = gitindex.read_index(index)
        assert entries is not None
        assert gitindex.write_tree(root / ".git", entries) == git_write_tree(root, index), round_


def test_indexes_it_cannot_read_exactly_are_left_to_git(tmp_path: Path) -> None:
    root = awkward_repo(tmp_path / "repo")
    plain = index_of(root, "plain.index")
    env = {**git_env(), "GIT_INDEX_FILE": str(plain)}

    def variant(name: str, *args: str) -> Path:
        copy = tmp_path / name
        shutil.copyfile(plain, copy)
        subprocess.run(["git", *args], cwd=root, env={**env, "GIT_INDEX_FILE": str(copy)}, check=True,
                       capture_output=True)
        return copy

    assert gitindex.read_index(plain) is not None
    (root / "later.txt").write_text("later\n")
    refused = {
        "intent-to-add": variant("ita.index", "add", "-N", "later.txt"),
        "skip-worktree": variant("skip.index", "update-index", "--skip-worktree", "a0"),
        "split": variant("split.index", "update-index", "--split-index"),
        "conflict": variant("stage.index", "update-index", "--index-info"),
    }
    # a conflict stage, written by hand: stages 1-3 of one path
    blob = git(root, "rev-parse", "HEAD:a0").strip()
    subprocess.run(["git", "update-index", "--index-info"], cwd=root, input=f"100644 {blob} 2\ta0\n", text=True,
                   env={**env, "GIT_INDEX_FILE": str(refused["conflict"])}, check=True)
    for why, index in refused.items():
        assert gitindex.read_index(index) is None, why
    torn = tmp_path / "torn.index"
    torn.write_bytes(plain.read_bytes()[:-30])
    flipped = bytearray(plain.read_bytes())
    flipped[40] ^= 1
    (tmp_path / "flipped.index").write_bytes(bytes(flipped))
    for name in ("torn.index", "flipped.index"):
        assert gitindex.read_index(tmp_path / name) is None, name


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


def test_an_export_from_the_index_is_the_checkout_git_makes(tmp_path: Path) -> None:
    root = awkward_repo(tmp_path / "repo")
    index = index_of(root, "snapshot.index")
    entries = gitindex.read_index(index)
    assert entries is not None
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    assert gitindex.export(root, entries, ours)
    theirs.mkdir()
    Workspace(root).export(git(root, "rev-parse", "HEAD").strip(), theirs)  # git's checkout (no snapshot here)
    assert exported(ours) == exported(theirs)
    assert exported(ours)["vendor/sub"] == ("dir", False)  # a submodule: an empty folder, as git leaves it


def test_a_file_changed_after_the_snapshot_never_reaches_the_export(tmp_path: Path) -> None:
    """The attack: the snapshot is taken, then the file on disk changes (or becomes a link to a
    file outside) before the export is written. The export is the commit, byte for byte."""
    root = awkward_repo(tmp_path / "repo")
    ws = Workspace(root)
    head = git(root, "rev-parse", "HEAD").strip()
    (root / "train.py").write_text("X = 1\nprint('val_loss: 1.0')\n")
    tree = ws.snapshot(head)
    commit = ws.commit_tree(tree, head, "candidate")
    calls = record_git(ws)
    ws.export(commit, tmp_path / "untouched")
    checkouts = [args for args in calls if "checkout" in args]
    assert checkouts == [] and (tmp_path / "untouched" / "train.py").read_text().startswith("X = 1")  # no git
    for i, tamper in enumerate((lambda: (root / "train.py").write_text("print('val_loss: 0.0')  # swapped\n"),
                                lambda: ((root / "train.py").unlink(), (root / "train.py").symlink_to("/etc/hostname")),
                                lambda: ((root / "train.py").unlink(), os.mkfifo(root / "train.py")))):  # never waited on
        tamper()
        dest = tmp_path / f"export{i}"
        ws.export(commit, dest)
        assert (dest / "train.py").read_text() == "X = 1\nprint('val_loss: 1.0')\n"
        assert not (dest / "train.py").is_symlink()
        assert len([args for args in calls if "checkout" in args]) == i + 1  # git made this one
        assert exported(dest).keys() == exported(root).keys() - {".git"} - {p for p in exported(root) if p.startswith(".git/")}
    ws.drop_snapshot_index()


def test_the_snapshot_writes_no_tree_git_would_not(tmp_path: Path) -> None:
    """Through Workspace.snapshot (seeded index, tree from Python): the tree git writes from the
    same folder, and the object store passes fsck."""
    root = awkward_repo(tmp_path / "repo")
    (root / ".autoresearch").mkdir()  # where the seed index lives
    (root / ".gitignore").write_text(".autoresearch/\n")
    ws = Workspace(root)
    head = git(root, "rev-parse", "HEAD").strip()
    for step in range(3):
        (root / "a" / f"f{step}.txt").write_text(f"{step}\n")
        tree = ws.snapshot(head)
        ws.drop_snapshot_index()
        assert tree == git_write_tree(root, index_of(root, f"check{step}.index"))
        seeds = list((root / ".autoresearch").glob("snapshot-seed-*"))
        assert [s.name for s in seeds] == [f"snapshot-seed-{head}.index"]
    subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=root, check=True, capture_output=True)


def test_refs_and_trees_read_from_files_are_what_git_says(tmp_path: Path) -> None:
    root = awkward_repo(tmp_path / "repo")
    git(root, "branch", "side")
    head = git(root, "rev-parse", "HEAD").strip()
    names = ["HEAD", "refs/heads/side", head, f"{head}^{{tree}}", "HEAD^{tree}"]
    expected = {n: git(root, "rev-parse", n).strip() for n in names}
    git_dir = gitdata.plain_git_dir(root)
    assert git_dir is not None and gitdata.resolve(git_dir, names) == expected
    git(root, "pack-refs", "--all")  # refs now only in packed-refs
    assert not (root / ".git" / "refs" / "heads" / "side").exists()
    assert gitdata.resolve(git_dir, names) == expected
    git(root, "gc", "-q")  # objects packed: not read here, git is asked
    assert gitdata.resolve(git_dir, names) is None
    assert Workspace(root).rev("refs/heads/side") == head and Workspace(root).tree_of(head) == expected["HEAD^{tree}"]


def test_where_files_cannot_be_trusted_git_is_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = awkward_repo(tmp_path / "repo")
    head = git(root, "rev-parse", "HEAD").strip()
    git_dir = root / ".git"
    # a loose object whose bytes do not hash to its name (a planted or corrupt commit)
    obj = git_dir / "objects" / head[:2] / head[2:]
    original = obj.read_bytes()
    fake = zlib.compress(zlib.decompress(original).replace(b"tree ", b"tree ", 1) + b"x")
    obj.chmod(0o644)
    obj.write_bytes(fake)
    assert gitdata.commit_tree(git_dir, head) is None
    obj.write_bytes(original)
    assert gitdata.commit_tree(git_dir, head) is not None
    # replace refs change what git reads: not from files then
    git(root, "replace", head, git(root, "commit-tree", "HEAD^{tree}", "-m", "other").strip())
    assert gitdata.plain_git_dir(root) is None
    git(root, "replace", "-d", head)
    assert gitdata.plain_git_dir(root) is not None
    for name in ("GIT_DIR", "GIT_NAMESPACE", "GIT_OBJECT_DIRECTORY"):
        monkeypatch.setenv(name, str(git_dir) if name != "GIT_NAMESPACE" else "ns")
        assert gitdata.plain_git_dir(root) is None, name
        monkeypatch.delenv(name)


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
    from autoresearch.measure import _planted_bytecode

    tree = tmp_path / "export"
    for path in ("__pycache__/a.cpython-311.pyc", "pkg/__pycache__/b.pyc", "pkg/c.pyc", "d.pyc", "pkg/keep.py"):
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_bytes(b"x")
    found = _planted_bytecode(tree)
    assert sorted(found) == ["__pycache__", "d.pyc", "pkg/__pycache__", "pkg/c.pyc"]
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*")) == ["pkg", "pkg/keep.py"]


def test_the_diff_read_from_the_indexes_is_what_diff_tree_says(tmp_path: Path) -> None:
    """Random edits of every kind (text, NUL bytes, blank lines, modes, a file turned into a link
    or a folder, deletions, new folders): the snapshot's changes and lines delta, computed from
    the seed and snapshot indexes, equal `git diff-tree`'s on the same two trees."""
    root = awkward_repo(tmp_path / "repo")
    (root / ".autoresearch").mkdir()
    (root / ".gitignore").write_text(".autoresearch/\n")
    git(root, "add", ".gitignore")
    git(root, "commit", "-qm", "ignore the state folder")
    head = git(root, "rev-parse", "HEAD").strip()
    rng = random.Random(11)
    names = ["train.py", "a.b", "a/b", "crlf.txt", "bin.dat", "run.sh", "new.txt", "n/e/w.py", "empty"]
    for round_ in range(15):
        for _ in range(rng.randint(1, 4)):
            path = root / rng.choice(names)
            kind = rng.random()
            if path.is_symlink() or (path.exists() and kind < 0.15):
                path.unlink()
            elif kind < 0.25 and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.symlink_to("train.py")
            elif kind < 0.35 and path.is_file():
                path.chmod(path.stat().st_mode ^ 0o111)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                lines = [rng.choice(["x = 1", "", "   ", "\0bin", "--- h", "y\r"]) for _ in range(rng.randint(0, 6))]
                path.write_text("\n".join(lines) + rng.choice(["", "\n"]))
        ws = Workspace(root)
        tree = ws.snapshot(head)
        asked = record_git(ws)
        fast = ws.changes_and_lines(head, tree)
        assert not [args for args in asked if "diff-tree" in args], round_  # from the indexes, not from git
        ws.drop_snapshot_index()
        slow = Workspace(root).changes_and_lines(head, tree)  # a Workspace without indexes: git diffs
        assert fast == slow, round_
        git(root, "checkout", "-q", "-f", head)
        git(root, "clean", "-qfd", "-e", ".autoresearch")
