"""Every keep is real, budget edition: on every shipped template a run that trains 1.3 times
its budget is rejected as over-budget, on the template's own clock, while a run that trains
its budget is not. The start-up allowance (`[budget] grace`) is declared per template; these
tests hold each declaration to that promise.

The dynamic test runs the real harness (`trial.measure.measure`: its process group, its cgroup
on the cpu clock, the over-budget rule) with the template's clock and its allowance scaled to
a short budget; a stand-in run burns CPU (cpu clock) or waits (wall clock) for the time it
'trains'."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path

import pytest

from autoresearch.config.task import load_config, with_overrides
from autoresearch.harness.env import task_env, thread_env
from autoresearch.harness.process import run_command
from autoresearch.scaffold import templates_dir
from autoresearch.trial.measure import measure

TEMPLATES = sorted(p.name for p in templates_dir().iterdir() if (p / "autoresearch.toml").exists())
SHORT_BUDGET = 4.0

# Trains for FACTOR times the budget on the clock the harness charges, then prints the metric.
STAND_IN = """import os, time
budget = float(os.environ["AUTORESEARCH_BUDGET_S"]) * {factor}
if os.environ.get("AUTORESEARCH_BUDGET_CLOCK") == "cpu":
    end = time.process_time() + budget
    while time.process_time() < end:
        pass
else:
    time.sleep(budget)
print("score: 1.0")
"""


@dataclasses.dataclass
class Bench:
    config: object
    root: Path
    state_dir: Path

    def run_dir(self, seq: int) -> Path:
        return self.state_dir / "runs" / str(seq)


def _template_config(name: str, tmp_path: Path):
    root = tmp_path / name
    shutil.copytree(templates_dir() / name, root)
    return root, load_config(root)


@pytest.mark.parametrize("name", TEMPLATES)
def test_each_template_declares_an_allowance_under_three_tenths_of_its_budget(name: str, tmp_path: Path) -> None:
    """Whatever the start-up costs, training 1.3x the budget charges more than budget + grace."""
    _, config = _template_config(name, tmp_path)
    assert config.budget.grace >= 0, f"{name}: declare [budget] grace (the start-up this task costs)"
    assert config.budget.allowance < 0.3 * config.budget.seconds, name
    assert config.budget.hard_timeout > config.budget.seconds + config.budget.allowance, name


@pytest.mark.slow
@pytest.mark.parametrize("name", TEMPLATES)
def test_a_run_training_1_3x_its_budget_is_rejected_on_each_template(name: str, tmp_path: Path) -> None:
    root, config = _template_config(name, tmp_path)
    scale = SHORT_BUDGET / config.budget.seconds
    config = with_overrides(config, "budget", seconds=SHORT_BUDGET, grace=config.budget.allowance * scale,
                            timeout=10 * SHORT_BUDGET)
    config = with_overrides(config, "task", run=f"{sys.executable} stand_in.py", evaluate="", setup="")
    config = with_overrides(config, "metric", name="score", constraints=[])
    config = with_overrides(config, "sandbox", kind="none")
    bench = Bench(config, root, root / ".autoresearch")
    outcomes = {}
    for seq, factor in enumerate((1.3, 1.0), start=1):
        tree = tmp_path / f"tree-{seq}"
        tree.mkdir()
        (tree / "stand_in.py").write_text(STAND_IN.format(factor=factor))
        outcomes[factor] = measure(bench, tree, seq, 0, "run")
    over, fits = outcomes[1.3], outcomes[1.0]
    assert over.rejected and over.reason == "over-budget", (name, over)
    assert over.flags["over_budget"]["clock"] == config.budget.clock
    assert fits.ok, (name, fits.reason, fits.log_path and fits.log_path.read_text())


@pytest.mark.parametrize("name", ["tinylm", "nanochat"])
def test_the_llm_templates_clock_is_the_harness_clock(name: str, tmp_path: Path) -> None:
    """prepare.budget_clock() on the cpu clock reads the run's cgroup: what train.py times its
    steps with is what the harness charges (threads included), within the interpreter's start."""
    pytest.importorskip("pyarrow")
    root = tmp_path / name
    shutil.copytree(templates_dir() / name, root)
    code = ("import hashlib, threading, time, prepare\n"
            "clock = prepare.budget_clock()\n"
            "start = clock()\n"
            "def burn():\n"
            "    end = time.thread_time() + 0.5\n"
            "    while time.thread_time() < end: hashlib.sha256(b'x' * 65536).digest()\n"
            "threads = [threading.Thread(target=burn) for _ in range(2)]\n"
            "[t.start() for t in threads]; [t.join() for t in threads]\n"
            "print('spent:', clock() - start)\n"
            "print('total:', clock())\n"
            "print('threads:', prepare.cpu_threads())\n")
    (root / "probe.py").write_text(code)
    env = {**task_env({"AUTORESEARCH_BUDGET_CLOCK": "cpu"}, [], home=tmp_path / "home", pycache_prefix=None)}
    env.update(thread_env(env))
    result = run_command(f"{sys.executable} probe.py", cwd=root, env=env, timeout=60, log_path=tmp_path / "run.log",
                         clock="cpu", cpu_limit=60)
    assert result.ok, (tmp_path / "run.log").read_text()
    assert result.metrics["spent"] >= 1.0  # two threads' CPU, not one
    assert result.metrics["total"] <= (result.cpu_seconds or 0) + 0.01
    assert result.metrics["threads"] == len(os.sched_getaffinity(0))
