"""The run's environment is an allowlist: API keys and tokens in the parent never reach a run
unless `[task] env` names them. Checked with real subprocesses, with and without bubblewrap."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoresearch.config.task import ConfigError, load_config
from autoresearch.harness.env import task_env
from autoresearch.harness.process import run_command
from autoresearch.harness.sandbox import SandboxSpec, bwrap_works

KEY = "sk-test-4f9a8b7c6d5e"
# The run prints its environment with each value in base64: the log is redacted (a listed key
# reaches the run, but never a log in clear), and the test must still read what the run saw.
DUMP = (f"{sys.executable} -c 'import base64, json, os; "
        "print(json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in os.environ.items()}))'")


@pytest.fixture
def parent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_abcdefghijkl")
    monkeypatch.setenv("WANDB_PROJECT", "proj")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("AUTORESEARCH_SEQ", "3")


def _env_of_run(env: dict[str, str], tmp_path: Path, sandbox: SandboxSpec | None = None) -> dict[str, str]:
    log = tmp_path / "run.log"
    result = run_command(DUMP, cwd=tmp_path, env=env, timeout=60, log_path=log, sandbox=sandbox)
    assert result.exit_code == 0, log.read_text()
    return {k: base64.b64decode(v).decode() for k, v in json.loads(log.read_text().splitlines()[-1]).items()}


def test_a_key_in_the_parent_does_not_reach_the_run(parent, tmp_path: Path) -> None:
    env = task_env({"AUTORESEARCH_PHASE": "run"}, [], home=tmp_path / "home",
                   pycache_prefix=tmp_path / "tmp" / "pycache")
    seen = _env_of_run(env, tmp_path)
    assert "OPENAI_API_KEY" not in seen and "GITHUB_TOKEN" not in seen and "WANDB_PROJECT" not in seen
    assert KEY not in (tmp_path / "run.log").read_text()
    assert "PYTHONPATH" not in seen
    # What a run does need is there.
    assert seen["HOME"] == str(tmp_path / "home")
    assert seen["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert seen["CUDA_VISIBLE_DEVICES"] == "1" and seen["LC_ALL"] == "C.UTF-8"
    assert seen["AUTORESEARCH_SEQ"] == "3" and seen["AUTORESEARCH_PHASE"] == "run"
    assert seen["PYTHONDONTWRITEBYTECODE"] == "1" and seen["PYTHONNOUSERSITE"] == "1"
    assert seen["PYTHONPYCACHEPREFIX"].startswith(str(tmp_path / "tmp"))
    assert "AUTORESEARCH_CACHE" in seen


def test_listed_names_do_reach_the_run(parent, tmp_path: Path) -> None:
    env = task_env({}, ["OPENAI_API_KEY", "WANDB_PROJECT", "NOT_SET_ANYWHERE"], home=tmp_path / "home",
                   pycache_prefix=tmp_path / "tmp" / "pycache")
    seen = _env_of_run(env, tmp_path)
    assert seen["OPENAI_API_KEY"] == KEY and seen["WANDB_PROJECT"] == "proj"
    assert "GITHUB_TOKEN" not in seen and "NOT_SET_ANYWHERE" not in seen


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is not usable here")
def test_the_allowlist_holds_inside_the_sandbox(parent, tmp_path: Path) -> None:
    """bwrap passes the caller's environment through: task_env is what keeps the key out."""
    env = task_env({}, [], home=tmp_path / "home", pycache_prefix=tmp_path / "tmp" / "pycache")
    seen = _env_of_run(env, tmp_path, SandboxSpec(writable=[tmp_path / "out"]))
    assert "OPENAI_API_KEY" not in seen and seen["HOME"] == "/tmp/home"


def test_extra_wins_and_an_explicit_environ_is_used(tmp_path: Path) -> None:
    env = task_env({"HOME": "/x", "AUTORESEARCH_OUT": "/o"}, ["A_B"], home=tmp_path, pycache_prefix=None,
                   environ={"PATH": "/usr/bin", "A_B": "1", "SECRET_KEY": "zzzzzzzz", "LANG": "de_DE.UTF-8"})
    assert env["HOME"] == "/x" and env["AUTORESEARCH_OUT"] == "/o" and env["A_B"] == "1"
    assert env["LANG"] == "de_DE.UTF-8" and "SECRET_KEY" not in env
    assert env["PATH"].endswith(os.pathsep + "/usr/bin")
    assert "PYTHONPYCACHEPREFIX" not in env and env["PYTHONDONTWRITEBYTECODE"] == "1"


def _task(tmp_path: Path, env_line: str) -> Path:
    (tmp_path / "train.py").write_text("print('m: 1')\n")
    (tmp_path / "autoresearch.toml").write_text(
        f'[task]\nname = "t"\neditable = ["train.py"]\nrun = "python train.py"\n{env_line}\n\n'
        '[metric]\nname = "m"\n')
    return tmp_path


def test_task_env_is_read_from_the_config(tmp_path: Path) -> None:
    config = load_config(_task(tmp_path, 'env = ["WANDB_API_KEY", "HF_HOME"]'))
    assert config.task.env == ["WANDB_API_KEY", "HF_HOME"]
    (tmp_path / "plain").mkdir()
    assert load_config(_task(tmp_path / "plain", "")).task.env == []


@pytest.mark.parametrize("line, expected", [
    ('env = "WANDB_API_KEY"', r"\[task\] env: expected a list of strings"),
    ('env = ["WANDB_API_KEY=abc"]', r"\[task\] env\[0\]: 'WANDB_API_KEY=abc' is not an environment variable name.*name only"),
    ('env = ["OK", "1BAD"]', r"\[task\] env\[1\]: '1BAD' is not an environment variable name"),
    ('env = ["HF_*"]', r"\[task\] env\[0\]: 'HF_\*'"),
])
def test_a_bad_task_env_names_the_file_and_key(tmp_path: Path, line: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as err:
        load_config(_task(tmp_path, line))
    assert str(tmp_path / "autoresearch.toml") in str(err.value)


def test_a_bad_task_env_is_a_clear_cli_error(tmp_path: Path) -> None:
    """Through the real CLI: one line naming file and key, no traceback."""
    _task(tmp_path, 'env = ["A=B"]')
    proc = subprocess.run([sys.executable, "-m", "autoresearch", "status"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    assert "[task] env[0]" in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
