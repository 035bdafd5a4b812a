"""Parallel experiments on Ray (`[executor] kind = "ray"`), on a local cluster the tests start:
runs happen on Ray workers from the commit's tree, the logs come back to the driver, and a
worker killed mid-run is a `worker-lost` crash whose slot goes on working."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from loop.test_parallel import BySeq, all_runs, check_consistent, make_template, max_overlap, started

from autoresearch.config.task import LoopSection
from autoresearch.executors.ray import SCRATCH_PREFIX, RayExecutor
from autoresearch.journal.results import throughput
from autoresearch.loop.driver import run_loop as run_parallel

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow

def _alive(scratch: Path) -> bool:
    try:
        os.kill(int(scratch.name[len(SCRATCH_PREFIX):].split("-", 1)[0]), 0)
    except ProcessLookupError:
        return False
    except (ValueError, OSError):
        return True
    return True


SETUP = """setup = 'echo ran >> "$AUTORESEARCH_CACHE/setup-ran"'"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-CPU Ray instance on 127.0.0.1; its workers inherit this environment."""
    cache = tmp_path_factory.mktemp("ray-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        mp.setenv("AUTORESEARCH_CACHE", str(cache))
        mp.setenv("TEST_SLEEP", "1.0")
        ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
        try:
            yield cache
        finally:
            ray.shutdown()


def test_runs_happen_on_ray_workers_and_the_logs_come_back(cluster: Path, tmp_path_factory: pytest.TempPathFactory,
                                                           tmp_path: Path) -> None:
    template = make_template(tmp_path_factory.mktemp("ray-task"), task_lines=SETUP)
    with started(template, tmp_path / "task") as s:
        executor = RayExecutor(2, num_cpus=1)
        result = run_parallel(s, lambda slot: BySeq(), LoopSection(max_experiments=4), executor)
        assert result.stopped_because == "4 experiments done"
        assert ray.is_initialized()  # the executor used the test's cluster and left it running
        exps = {e.seq: e for e in s.journal.experiments("t")}
        ray_runs = [r for r in all_runs(s.root) if not exps[r["seq"]].is_baseline]
        assert ray_runs and all(r["status"] == "ok" for r in ray_runs)
        assert max_overlap([(r["metrics"]["t_start"], r["metrics"]["t_end"]) for r in ray_runs]) == 2
        for r in ray_runs:
            exp = exps[r["seq"]]
            assert r["metrics"]["seen_seq"] == r["seq"]
            assert r["metrics"]["seen_slot"] == -1  # a scratch copy of the tree, not the driver's worktree
            assert exp.details["executor"] == "ray" and exp.details["worker"]["pid"] != os.getpid()
            log = s.root / ".autoresearch" / "runs" / str(r["seq"]) / "run.log"
            assert Path(r["log_path"]) == log
            text = log.read_text()
            assert text.startswith("$ python train.py") and f"seen_seq: {r['seq']}" in text
        # The setup ran once on the driver (baseline) and before every run on a worker.
        assert (cluster / "setup-ran").read_text().count("ran") == 1 + len(ray_runs)
        check_consistent(s.root, s)
        assert throughput(s.journal, "t")["slots"] == 2


def test_a_worker_killed_mid_run_is_worker_lost_and_its_slot_goes_on(cluster: Path, tmp_path_factory: pytest.TempPathFactory,
                                                                     tmp_path: Path) -> None:
    # No sandbox: the run must see the worker's process to kill it.
    template = make_template(tmp_path_factory.mktemp("ray-kill"), '[sandbox]\nkind = "none"\n')
    with started(template, tmp_path / "task") as s:
        executor = RayExecutor(2, num_cpus=1)
        result = run_parallel(s, lambda slot: BySeq({3: {"KILL_WORKER": 1}}), LoopSection(max_experiments=4), executor)
        assert result.stopped_because == "4 experiments done"
        exps = {e.seq: e for e in s.journal.experiments("t")}
        lost = exps[3]
        assert (lost.status, lost.reason) == ("crash", "worker-lost")
        assert "was lost" in Path(lost.log_path).read_text()
        later = [e for e in exps.values() if e.slot == lost.slot and e.seq > 3]
        assert later and all(e.status in ("keep", "discard") for e in later)  # the slot was reused
        assert [e.seq for e in exps.values() if e.status == "crash"] == [3]
        check_consistent(s.root, s)
        # The dead worker's scratch copy was swept by a later task on this node.
        dead = lost.details["worker"]["pid"] if "worker" in lost.details else None
        assert dead is None  # a lost worker reports nothing back...
        leftovers = [p for p in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*") if not _alive(p)]
        assert leftovers == []  # ...but leaves no folder behind
