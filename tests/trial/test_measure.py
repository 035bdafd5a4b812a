"""Clean exports: a run sees exactly the commit under test, nothing the task folder has beside it.

Real git, real files, real Python imports: an ignored file, an untracked file and a planted
bytecode cache in the task folder must not reach the export; committed symlinks stay symlinks;
harness files come from their locked content, never through a link on disk.
"""

from __future__ import annotations

import os
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git

from autoresearch.git.workspace import GitError, Workspace
from autoresearch.harness.env import task_env

REAL = "print('helper: real')\n"
FAKE = "print('helper: FAKE')\n"  # same length: the planted cache must look valid for the real source


@pytest.fixture
def repo(tmp_path: Path) -> Workspace:
    root = tmp_path / "task"
    root.mkdir()
    git(root, "init", "-q")
    (root / "train.py").write_text("import helper\nprint('val_loss: 1.0')\n")
    (root / "helper.py").write_text(REAL)
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "run.sh").chmod(0o755)
    (root / "sub").mkdir()
    (root / "sub" / "data.txt").write_text("rows\n")
    (root / "link.py").symlink_to("helper.py")
    (root / "outside").symlink_to("/etc/hostname")
    (root / ".gitignore").write_text("*.log\n__pycache__/\ncache/\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "task")
    return Workspace(root)


def _plant(root: Path) -> None:
    """What an agent might leave behind: ignored and untracked files and a bytecode cache of a
    read-only module, compiled from a fake source with the real source's size and mtime."""
    (root / "run.log").write_text("ignored\n")
    (root / "cache").mkdir()
    (root / "cache" / "weights.bin").write_bytes(b"\0" * 16)
    (root / "notes.txt").write_text("untracked\n")
    fake = root / "cache" / "helper.py"
    fake.write_text(FAKE)
    stat = (root / "helper.py").stat()
    os.utime(fake, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    cache = root / "__pycache__" / f"helper.{sys.implementation.cache_tag}.pyc"  # where a plain import looks
    py_compile.compile(str(fake), cfile=str(cache), doraise=True)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir() or p.is_symlink()}


def test_the_planted_cache_is_a_real_attack(repo: Workspace) -> None:
    """Control: in the task folder, with an ordinary environment, Python loads the fake cache."""
    _plant(repo.root)
    out = subprocess.run([sys.executable, "train.py"], cwd=repo.root, capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}).stdout
    assert "helper: FAKE" in out


def test_export_holds_exactly_the_commit(repo: Workspace, tmp_path: Path) -> None:
    _plant(repo.root)
    dest = tmp_path / "export"
    repo.export("HEAD", dest)
    committed = set(git(repo.root, "ls-files").split())
    assert _files(dest) == committed
    assert not (dest / ".git").exists() and not (dest / "__pycache__").exists()
    assert (dest / "link.py").is_symlink() and os.readlink(dest / "link.py") == "helper.py"
    assert (dest / "outside").is_symlink() and os.readlink(dest / "outside") == "/etc/hostname"
    assert os.access(dest / "run.sh", os.X_OK) and not os.access(dest / "helper.py", os.X_OK)
    assert (dest / "sub" / "data.txt").read_text() == "rows\n"


def test_a_run_from_the_export_loads_the_real_source(repo: Workspace, tmp_path: Path) -> None:
    _plant(repo.root)
    dest = tmp_path / "export"
    repo.export("HEAD", dest)
    env = task_env({}, [], home=tmp_path / "home", pycache_prefix=None)  # the export alone is enough
    out = subprocess.run([sys.executable, "train.py"], cwd=dest, capture_output=True, text=True, env=env)
    assert "helper: real" in out.stdout, out.stderr
    assert not (dest / "__pycache__").exists()  # nothing written next to the sources either


def test_task_env_ignores_a_cache_even_in_the_task_folder(repo: Workspace, tmp_path: Path) -> None:
    """PYTHONPYCACHEPREFIX points the interpreter at a private cache tree, so the planted
    `__pycache__/` is never read, even where the export is not used."""
    _plant(repo.root)
    env = task_env({}, [], home=tmp_path / "home", pycache_prefix=tmp_path / "tmp" / "pycache")
    out = subprocess.run([sys.executable, "train.py"], cwd=repo.root, capture_output=True, text=True, env=env)
    assert "helper: real" in out.stdout, out.stderr


def test_export_of_an_older_commit_ignores_the_working_tree(repo: Workspace, tmp_path: Path) -> None:
    first = repo.head()
    (repo.root / "helper.py").write_text("print('helper: v2')\n")
    git(repo.root, "commit", "-qam", "v2")
    (repo.root / "helper.py").write_text("print('helper: uncommitted')\n")
    repo.export(first, tmp_path / "old")
    repo.export("HEAD", tmp_path / "new")
    assert (tmp_path / "old" / "helper.py").read_text() == REAL
    assert (tmp_path / "new" / "helper.py").read_text() == "print('helper: v2')\n"


def test_export_inside_the_state_folder_leaves_the_task_untouched(repo: Workspace) -> None:
    """Where the lead will put run folders: under the task's ignored `.autoresearch/`. The
    task's own index, HEAD and status are as before."""
    (repo.root / ".gitignore").write_text("*.log\n__pycache__/\ncache/\n.autoresearch/\n")
    git(repo.root, "commit", "-qam", "ignore state")
    (repo.root / "helper.py").write_text("print('dirty')\n")
    index = (repo.root / ".git" / "index").read_bytes()
    status, head = git(repo.root, "status", "--porcelain"), repo.head()
    dest = repo.root / ".autoresearch" / "runs" / "1" / "work"
    repo.export("HEAD", dest)
    assert (dest / "helper.py").read_text() == REAL
    assert (repo.root / ".git" / "index").read_bytes() == index
    assert git(repo.root, "status", "--porcelain") == status and repo.head() == head
    assert (repo.root / "helper.py").read_text() == "print('dirty')\n"


def test_export_refuses_a_folder_that_is_not_empty(repo: Workspace, tmp_path: Path) -> None:
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "stale.py").write_text("x")
    with pytest.raises(GitError, match="not empty"):
        repo.export("HEAD", dest)


def test_export_is_exact_where_git_archive_is_not(repo: Workspace, tmp_path: Path) -> None:
    """A tree may mark files `export-ignore` (or `export-subst`): git archive obeys, a run
    must still get every committed file, unchanged."""
    (repo.root / ".gitattributes").write_text("sub/data.txt export-ignore\nhelper.py export-subst\n")
    (repo.root / "helper.py").write_text("print('$Format:%H$')\n")
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "attributes")
    repo.export("HEAD", tmp_path / "a")
    (tmp_path / "b").mkdir()
    subprocess.run(f"git archive HEAD | tar -x -C {tmp_path / 'b'}", shell=True, cwd=repo.root, check=True)
    assert _files(tmp_path / "a") == set(git(repo.root, "ls-files").split())
    assert (tmp_path / "a" / "sub" / "data.txt").exists() and not (tmp_path / "b" / "sub" / "data.txt").exists()
    assert (tmp_path / "a" / "helper.py").read_text() == "print('$Format:%H$')\n"
    assert (tmp_path / "b" / "helper.py").read_text() != "print('$Format:%H$')\n"


def test_export_runs_no_hook(repo: Workspace, tmp_path: Path) -> None:
    hook = repo.root / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {tmp_path / 'hook-ran'}\n")
    hook.chmod(0o755)
    repo.export("HEAD", tmp_path / "export")
    assert (tmp_path / "export" / "helper.py").exists() and not (tmp_path / "hook-ran").exists()


