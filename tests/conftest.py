"""Shared fixtures: real task folders made by the real CLI, and a helper to drive it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

AUTORESEARCH = [sys.executable, "-m", "autoresearch"]


def git_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"})
    return env


def ar(cwd: Path, *args: str, check: bool = True, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in CWD."""
    proc = subprocess.run([*AUTORESEARCH, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"autoresearch {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, env=git_env()).stdout


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Templates keep data under $AUTORESEARCH_CACHE; tests never touch the user's cache."""
    if "AUTORESEARCH_CACHE" not in os.environ:
        monkeypatch.setenv("AUTORESEARCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True, scope="session")
def _steady_machine(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The machine the tests share is visibly busy at times, and a reference is never made of
    runs under load (harness/load.py): the runs of a test see CPU readings that never change (no
    load) unless the test scripts its own (tests/trial/test_reference.py) or reads the real ones.
    Session-wide, so module-scoped fixtures that run sessions see it too."""
    stat = tmp_path_factory.getbasetemp() / "steady-proc-stat"
    if not stat.exists():
        stat.write_text("cpu  100 0 100 1000 0 0 0 0 0 0\n")
    os.environ["AUTORESEARCH_PROC_STAT"] = str(stat)


def make_task(tmp_path: Path, *, config_edits: dict[str, str] | None = None, start: bool = True,
              baseline: bool = True, name: str = "task", harness_owned: bool = False) -> Path:
    """An `example` task via the CLI; CONFIG_EDITS replace lines of autoresearch.toml before lock.

    The template's metric comes from its read-only evaluate phase (HARNESS_OWNED). Most tests
    swap train.py for a script of their own that prints the metric, so by default the
    evaluate phase is dropped and train.py's own line counts, as in a task without one."""
    root = tmp_path / name
    ar(tmp_path, "init", str(root), "--template", "example")
    if not harness_owned:
        config_edits = {'evaluate = "python evaluate.py"\n': "", **(config_edits or {})}
    if config_edits:
        path = root / "autoresearch.toml"
        text = path.read_text()
        for old, new in config_edits.items():
            assert old in text, old
            text = text.replace(old, new)
        path.write_text(text)
        git(root, "commit", "-qam", "test config")
        ar(root, "lock")
    if start:
        ar(root, "start", "--tag", "t")
        if baseline:
            ar(root, "baseline")
    return root


def set_knob(root: Path, name: str, value: str) -> None:
    path = root / "train.py"
    lines = path.read_text().splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith(f"{name} = "):
            rest = line.split("#", 1)
            comment = f"  #{rest[1]}" if len(rest) > 1 else "\n"
            lines[i] = f"{name} = {value}{comment}"
    path.write_text("".join(lines))


def processes_with(token: str) -> list[int]:
    """Host pids of live processes whose command line carries TOKEN (zombies do not count)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                    if state not in ("Z", "X"):
                        found.append(int(entry.name))
            except OSError:
                continue
    return found
