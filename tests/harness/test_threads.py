"""A run's thread pools fit the cores it gets: the harness sizes OpenMP/BLAS/torch pools to the
run's core set and makes OpenMP wait passively, unless the user's environment says otherwise;
the value reaches a real run, pinned to one core."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from autoresearch.harness.env import task_env, thread_env
from autoresearch.harness.process import run_command


def test_pools_follow_the_cores_and_waits_are_passive() -> None:
    cores = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(cores)})
        env = thread_env({})
    finally:
        os.sched_setaffinity(0, cores)
    assert env["AUTORESEARCH_CPUS"] == "1" and env["OMP_NUM_THREADS"] == "1" and env["MKL_NUM_THREADS"] == "1"
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"


def test_the_users_own_settings_win() -> None:
    env = thread_env({"OMP_NUM_THREADS": "7", "OMP_WAIT_POLICY": "ACTIVE"})
    assert "OMP_NUM_THREADS" not in env and "OMP_WAIT_POLICY" not in env
    assert env["AUTORESEARCH_CPUS"] == str(len(os.sched_getaffinity(0)))


def test_a_pinned_run_sees_its_own_core_count(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    cores = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {max(cores)})  # as the local executor pins a slot's thread
        env = task_env({}, [], home=tmp_path / "home", pycache_prefix=None)
        env.update(thread_env(env))
        code = "import os; print('omp:', os.environ['OMP_NUM_THREADS']); print('mask:', len(os.sched_getaffinity(0)))"
        result = run_command(f"{sys.executable} -c \"{code}\"", cwd=tmp_path, env=env, timeout=30,
                             log_path=tmp_path / "run.log")
    finally:
        os.sched_setaffinity(0, cores)
    assert result.ok and result.metrics == {"omp": 1.0, "mask": 1.0}
    assert "OMP_WAIT_POLICY" in env and env["OMP_WAIT_POLICY"] == "PASSIVE"
