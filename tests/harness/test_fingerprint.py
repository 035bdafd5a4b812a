"""The environment fingerprint: taken by the run command's own interpreter, changed by a package
version, not fooled by a module planted in the working folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoresearch.harness.fingerprint import (
    PROBE,
    describe_changes,
    fingerprint_id,
    probe,
    probe_command,
    read_probe,
    stat_key,
    summary,
)


def make_venv(path: Path) -> Path:
    """A real venv without pip (a third of a second): its python is the run's interpreter."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return Path(out)


def install_dist(site: Path, name: str, version: str) -> None:
    """What pip leaves for an installed distribution: its .dist-info folder with METADATA."""
    for old in site.glob(f"{name}-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nA test dist.\n")


def test_probe_command_finds_the_run_commands_python() -> None:
    code = probe_command("python train.py").split(" -c ", 1)
    assert code[0] == "python" and PROBE.strip()[:10] in code[1]
    assert probe_command("/opt/env/bin/python3.12 -u train.py").startswith("/opt/env/bin/python3.12 -c ")
    assert probe_command("uv run train.py").startswith("uv run python -c ")
    assert probe_command("uv run --frozen python -m trainer").startswith("uv run --frozen python -c ")
    assert probe_command("cd sub && OMP_NUM_THREADS=1 python3 train.py").startswith(
        "cd sub && OMP_NUM_THREADS=1 python3 -c ")
    # no python in it, or a launcher that would take `python` for a script: the PATH's python
    assert probe_command("make bench").startswith("python -c ")
    assert probe_command("torchrun --nproc_per_node=8 train.py").startswith("python -c ")
    assert probe_command("unbalanced 'quote").startswith("python -c ")


def test_a_package_version_changes_the_fingerprint(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv")
    site = site_packages(python)
    install_dist(site, "tinydist", "1.0")
    env = {"PATH": str(python.parent) + os.pathsep + os.environ["PATH"], "HOME": str(tmp_path)}
    cwd = tmp_path / "task"
    cwd.mkdir()
    # an attack: a json.py in the working folder that would answer for the probe if it were imported
    (cwd / "json.py").write_text("def dumps(*a, **k):\n    return '{\"dists\": {}, \"python\": \"forged\"}'\n")
    first = probe("python train.py", cwd=cwd, env=env, log_path=tmp_path / "probe.log")
    assert first is not None and first["dists"]["tinydist"] == "1.0"
    assert first["python"].split()[-1] == ".".join(map(str, sys.version_info[:3]))
    same = probe("python train.py", cwd=cwd, env=env, log_path=tmp_path / "probe.log")
    assert same is not None and fingerprint_id(same) == fingerprint_id(first) and not describe_changes(first, same)
    key = stat_key(first, "python train.py", env)  # what lets a later check skip the probe
    assert stat_key(same, "python train.py", env) == key and str(site) in first["sites"]
    install_dist(site, "tinydist", "2.0")
    assert stat_key(first, "python train.py", env) != key  # the upgrade is seen without a probe
    second = probe("python train.py", cwd=cwd, env=env, log_path=tmp_path / "probe.log")
    assert second is not None and fingerprint_id(second) != fingerprint_id(first)
    assert describe_changes(first, second) == ["packages: tinydist 1.0 -> 2.0"]
    assert "packages" in summary(second)


def test_the_interpreter_the_run_names_is_the_one_probed(tmp_path: Path) -> None:
    """The run names a venv's python by path: our own interpreter's packages are not its packages."""
    python = make_venv(tmp_path / "venv")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    theirs = probe(f"{python} train.py", cwd=tmp_path, env=env, log_path=tmp_path / "p.log")
    ours = probe(f"{sys.executable} train.py", cwd=tmp_path, env=env, log_path=tmp_path / "p.log")
    assert theirs is not None and ours is not None
    assert "click" in ours["dists"] and "click" not in theirs["dists"]
    assert any(c.startswith("packages: ") for c in describe_changes(ours, theirs))


def test_a_failed_probe_says_nothing(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    assert probe(f"{tmp_path}/missing/python train.py", cwd=tmp_path, env=env, log_path=tmp_path / "p.log") is None
    assert read_probe("autoresearch-env: {not json") is None
    assert read_probe("no mark here") is None


@pytest.mark.parametrize("old,new,expected", [
    ({"torch": "2.4.0", "cuda": "12.1"}, {"torch": "2.5.0", "cuda": "12.4"}, ["torch 2.4.0 -> 2.5.0", "CUDA 12.1 -> 12.4"]),
    ({"gpu": ["NVIDIA A100"]}, {"gpu": ["NVIDIA H100"]}, ["GPU NVIDIA A100 -> NVIDIA H100"]),
    ({"packages": "a", "dists": {"x": "1", "y": "1"}}, {"packages": "b", "dists": {"x": "1", "z": "2"}},
     ["packages: +z 2, -y 1"]),
])
def test_changes_are_named(old: dict, new: dict, expected: list[str]) -> None:
    assert describe_changes(old, new) == expected
