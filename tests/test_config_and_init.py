"""Config validation (one test per error class) and `init` in all its forms."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from conftest import ar, git, git_env

from autoresearch.config.task import load_config


def tree_digest(root: Path) -> str:
    """A fingerprint of every file under root (to assert that nothing changed on disk)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and ".git" not in path.parts:
            digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture()
def task(tmp_path: Path) -> Path:
    root = tmp_path / "task"
    ar(tmp_path, "init", str(root), "--template", "example")
    return root


@pytest.mark.parametrize("old, new, expected", [
    ('goal = "minimize"', 'goal = "minimize"\nspeed = 3', "[metric] speed: unknown key"),
    ("seconds = 10", 'seconds = "ten"', "[budget] seconds: expected a number, got 'ten'"),
    ('name = "val_loss"\n', "", "[metric] name: missing required key"),
    ('editable = ["train.py"]', 'editable = ["nope_*.py"]', "[task] editable: 'nope_*.py' matches no file"),
    ('readonly = ["prepare.py", "evaluate.py"]', 'readonly = ["prepare.py", "evaluate.py", "train.py"]', "[task] editable: train.py is also read-only"),
    ("[budget]", "[budgett]", "[budgett]: unknown section"),
    ('goal = "minimize"', 'goal = "min"', "[metric] goal: expected 'minimize' or 'maximize', got 'min'"),
    ("[agent]", "[verdict]\nrepeats = 0\n[agent]", "[verdict] repeats: must be at least 1"),
    ("[agent]", "[metric2]\n[agent]", "[metric2]: unknown section"),
    ('kind = "tune"', 'kind = "tune"\n[metric.extra]', "[metric] extra: unknown key"),
    ("timeout = 60", "timeout = 60\n[[x", "invalid TOML"),
])
def test_config_errors_name_key_and_file(task: Path, old: str, new: str, expected: str) -> None:
    config = task / "autoresearch.toml"
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new, 1))
    before = tree_digest(task)
    out = ar(task, "status", check=False)
    assert out.returncode == 2, out.stderr
    assert str(config) in out.stderr and expected in out.stderr, out.stderr
    out = ar(task, "start", check=False)
    assert out.returncode == 2
    assert tree_digest(task) == before  # nothing changed on disk


def test_constraint_syntax_error_names_the_entry(task: Path) -> None:
    config = task / "autoresearch.toml"
    config.write_text(config.read_text().replace('goal = "minimize"', 'goal = "minimize"\nconstraints = ["mem < lots"]'))
    out = ar(task, "status", check=False)
    assert out.returncode == 2 and "[metric] constraints[0]" in out.stderr


def test_templates_lists_each_template(tmp_path: Path) -> None:
    lines = ar(tmp_path, "templates").stdout.splitlines()
    names = [line.split()[0] for line in lines]
    assert "example" in names
    assert all(len(line.split(None, 1)) == 2 for line in lines)  # a description on every line


def test_init_into_non_empty_folder_keeps_user_files(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("my notes\n")
    ar(tmp_path, "init", str(root), "--template", "example")
    assert (root / "notes.txt").read_text() == "my notes\n"
    assert (root / "train.py").exists() and (root / ".autoresearch" / "lock.json").exists()


def test_init_conflicting_file_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    root.mkdir()
    (root / "train.py").write_text("my own train.py\n")
    out = ar(tmp_path, "init", str(root), "--template", "example", check=False)
    assert out.returncode == 1 and "train.py" in out.stderr and "nothing was written" in out.stderr
    assert sorted(p.name for p in root.iterdir()) == ["train.py"]
    assert (root / "train.py").read_text() == "my own train.py\n"


def test_init_in_existing_repository_preserves_history(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "README").write_text("hello\n")
    git(root, "add", "README")
    git(root, "commit", "-qm", "user commit")
    (root / "staged.txt").write_text("staged but not committed\n")
    git(root, "add", "staged.txt")
    ar(tmp_path, "init", str(root), "--template", "example")
    log = git(root, "log", "--format=%s").splitlines()
    assert log == ["autoresearch: add task from template example", "user commit"]
    assert "staged.txt" not in git(root, "show", "--name-only", "--format=", "HEAD")
    assert "A  staged.txt" in git(root, "status", "--porcelain")  # still staged, untouched


def test_init_from_flags_in_an_existing_project(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "solver.py").write_text("SIZE = 3\nprint(f'score: {SIZE * 2}')\n")
    (root / "data.txt").write_text("user data\n")
    git(root, "init", "-q")
    git(root, "add", "solver.py")
    git(root, "commit", "-qm", "user code")
    gitignore_before = (root / ".gitignore").exists()
    out = ar(root, "init", "--editable", "solver.py", "--run", "python solver.py", "--metric", "score",
             "--goal", "maximize", "--budget", "5")
    assert "score: 6" in out.stdout
    assert (root / "autoresearch.toml").exists() and (root / "program.md").exists()
    assert (root / ".gitignore").exists() == gitignore_before  # the user's .gitignore is left alone
    assert (root / "data.txt").read_text() == "user data\n"
    assert git(root, "log", "--format=%s").splitlines()[0] == "autoresearch: add task config"
    # the untracked data file is not mistaken for an agent's change
    ar(root, "start", "--tag", "t")
    ar(root, "baseline")
    text = (root / "solver.py").read_text().replace("SIZE = 3", "SIZE = 4")
    (root / "solver.py").write_text(text)
    out = ar(root, "experiment", "-m", "bigger")
    assert out.stdout.startswith("keep: score 8.000000")
    assert (root / "data.txt").read_text() == "user data\n"


@pytest.mark.parametrize("metric, code, flags, confirm, runs", [
    ("score", "print('score: 6')", [], "none", 2),  # the same number twice: deterministic
    ("score", "import os\nprint(f\"score: {6 + int(os.environ['AUTORESEARCH_SEED'])}\")", [], "sequential", 2),
    ("format_seconds", "print('format_seconds: 4.5')", [], "sequential", 1),  # a timing, by its name
    ("score", "print('score: 6')", ["--confirm", "reference"], "reference", 1),
])
def test_init_from_flags_picks_an_honest_policy(tmp_path: Path, metric: str, code: str, flags: list[str],
                                                confirm: str, runs: int) -> None:
    # issue 23: a timing task was set up greedy (confirm = "none") and its printed gains were noise
    root = tmp_path / "project"
    root.mkdir()
    counter = tmp_path / "runs"
    (root / "solver.py").write_text(f"open({str(counter)!r}, 'a').write('x')\n{code}\n")
    git(root, "init", "-q")
    git(root, "add", "solver.py")
    git(root, "commit", "-qm", "user code")
    out = ar(root, "init", "--editable", "solver.py", "--run", "python solver.py", "--metric", metric, *flags)
    assert f'[verdict] confirm = "{confirm}"' in out.stdout, out.stdout
    verdict = load_config(root).verdict  # "sequential" loads as paired confirmation with the sequential test
    assert (verdict.confirm, verdict.test) == (("paired", "sequential") if confirm == "sequential" else (confirm, "bootstrap"))
    assert len(counter.read_text()) == runs  # a second check run only where it decides


def test_init_from_flags_checks_the_metric_before_writing(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "solver.py").write_text("print('result = 3')\n")
    out = ar(root, "init", "--editable", "solver.py", "--run", "python solver.py", "--metric", "score", check=False)
    assert out.returncode == 1 and "did not print a line `score: <number>`" in out.stderr
    assert sorted(p.name for p in root.iterdir()) == ["solver.py", ".git"] or \
        sorted(p.name for p in root.iterdir()) == [".git", "solver.py"]
    assert not (root / "autoresearch.toml").exists()


def test_init_from_flags_requires_the_flags(tmp_path: Path) -> None:
    out = ar(tmp_path, "init", "--editable", "x.py", check=False)
    assert out.returncode == 2 and "--run" in out.stderr and "--metric" in out.stderr


def test_init_inside_another_repository_is_refused(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    out = ar(tmp_path, "init", str(tmp_path / "sub"), "--template", "example", check=False)
    assert out.returncode == 1 and "inside the git repository" in out.stderr


def test_verify_reports_changes(tmp_path: Path) -> None:
    root = tmp_path / "t"
    ar(tmp_path, "init", str(root), "--template", "example")
    assert ar(root, "verify").stdout.startswith("ok:")
    (root / "prepare.py").unlink()
    out = ar(root, "verify", check=False)
    assert out.returncode == 1 and "prepare.py: missing" in out.stdout
    subprocess.run(["git", "checkout", "prepare.py"], cwd=root, check=True, env=git_env())


def _project_with_an_untracked_bench(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "benchdata").mkdir(parents=True)
    (root / "solver.py").write_text("SIZE = 3\n")
    git(root, "init", "-q")
    git(root, "add", "solver.py")
    git(root, "commit", "-qm", "user code")
    # the harness, never committed: the check in the folder passes, every export lacks it
    (root / "bench.py").write_text("import solver\nprint(f'score: {solver.SIZE * 2 + len(open(\"benchdata/n.txt\").read())}')\n")
    (root / "benchdata" / "n.txt").write_text("xx")
    return root


def test_init_refuses_harness_files_git_does_not_track(tmp_path: Path) -> None:
    root = _project_with_an_untracked_bench(tmp_path)
    out = ar(root, "init", "--editable", "solver.py", "--readonly", "benchdata/*", "--run", "python bench.py",
             "--metric", "score", "--goal", "maximize", "--budget", "5", check=False)
    assert out.returncode != 0
    assert "git does not track bench.py, benchdata/n.txt" in out.stderr and "--commit" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not (root / "autoresearch.toml").exists() and not (root / "program.md").exists()


def test_init_commit_commits_them_and_the_baseline_runs(tmp_path: Path) -> None:
    root = _project_with_an_untracked_bench(tmp_path)
    ar(root, "init", "--editable", "solver.py", "--readonly", "benchdata/*", "--run", "python bench.py",
       "--metric", "score", "--goal", "maximize", "--budget", "5", "--commit")
    assert git(root, "ls-files", "bench.py", "benchdata/n.txt").split() == ["bench.py", "benchdata/n.txt"]
    ar(root, "start", "--tag", "t")
    out = ar(root, "baseline")
    assert "score 8.000000" in out.stdout, out.stdout


def test_a_crash_prints_the_logs_last_line(tmp_path: Path) -> None:
    """The cause of a crash is on screen beside the log's path, not only in the log."""
    root = _project_with_an_untracked_bench(tmp_path)
    ar(root, "init", "--editable", "solver.py", "--readonly", "benchdata/*", "--run", "python bench.py",
       "--metric", "score", "--goal", "maximize", "--budget", "5", "--commit")
    ar(root, "start", "--tag", "t")
    ar(root, "baseline")
    (root / "solver.py").write_text("SIZE = undefined_name\n")
    out = ar(root, "experiment", "-m", "broken", check=False)
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("crash:") and lines[1].startswith("log: ")
    assert lines[2] == "last line of the log: NameError: name 'undefined_name' is not defined", lines
