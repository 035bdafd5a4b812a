"""A real two-node Ray cluster: `autoresearch run --slots 2` against a head started with
`ray start --head`, a second node that joins it with `ray start --address`, and that second node
killed mid-run.

Everything runs in a loopback-only network and pid namespace (bubblewrap), driven by
tests/ray_cluster_driver.py: both nodes and the driver can only be 127.0.0.1, and every process
the test starts dies with the namespace. The driver kills the second node (all its processes,
SIGKILL) once its second run has started; this test then reads the journal the run left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ar
from loop.test_parallel import AGENT, all_runs, check_consistent, make_template

from autoresearch.trial.session import Session

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow

DRIVER = Path(__file__).with_name("ray_cluster_driver.py")
NAMESPACE = ["bwrap", "--dev-bind", "/", "/", "--unshare-net", "--unshare-pid", "--die-with-parent", "--proc", "/proc"]
EXPERIMENTS = 6
SLEEP_S = "2.0"  # each run; long enough that the kill lands mid-run


def _namespace_works() -> bool:
    if shutil.which("bwrap") is None:
        return False
    probe = [*NAMESPACE, sys.executable, "-c", "import socket; assert [n for _, n in socket.if_nameindex()] == ['lo']"]
    return subprocess.run(probe, capture_output=True).returncode == 0


def _ray_cli() -> bool:
    return (Path(sys.executable).parent / "ray").exists() or shutil.which("ray") is not None


@pytest.mark.skipif(not _namespace_works(), reason="needs bubblewrap with network and pid namespaces")
@pytest.mark.skipif(not _ray_cli(), reason="needs the `ray` command")
def test_two_nodes_share_the_runs_and_a_lost_node_is_worker_lost(tmp_path: Path) -> None:
    extra = '[executor]\nkind = "ray"\naddress = "127.0.0.1:6379"\nnum_cpus = 1\n'
    root = make_template(tmp_path, extra)
    ar(root, "start", "--tag", "t")
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    summary_path = tmp_path / "summary.json"
    command = [*NAMESPACE, sys.executable, str(DRIVER), "--cpus", "1", "--kill-node2-on-run", "2",
               "--summary", str(summary_path), "--",
               sys.executable, "-m", "autoresearch", "run", "--slots", "2", "-q", "-n", str(EXPERIMENTS),
               "--agent", f"command:{sys.executable} {agent} {{seq}}"]
    env = {**os.environ, "TEST_SLEEP": SLEEP_S, "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=420)
    summary = json.loads(summary_path.read_text())
    context = f"{proc.stdout}\n{proc.stderr}\n{json.dumps(summary.get('logs', {}), indent=1)}"
    assert proc.returncode == 0 and summary["returncode"] == 0, context
    assert f"stopped: {EXPERIMENTS} experiments done" in proc.stdout, context

    head, node2 = summary["nodes"]["head"], summary["nodes"]["node2"]
    assert head and node2 and head != node2
    killed = summary["killed"]
    assert killed["run_alive_at_kill"], killed  # the node went away in the middle of a run

    with Session.open(root) as s:
        exps = {e.seq: e for e in s.journal.experiments("t")}
        proposals = [e for e in exps.values() if not e.is_baseline and "replay_of" not in e.details]
        assert len(proposals) == EXPERIMENTS  # (a replay re-runs a stale winner on the new best)
        # The run on the killed node is a crash: worker-lost, from the executor, with a log that says so.
        lost = exps[int(killed["seq"])]
        assert (lost.status, lost.reason) == ("crash", "worker-lost"), (lost.status, lost.reason)
        assert "was lost" in Path(lost.log_path).read_text()
        assert [e.seq for e in exps.values() if e.status == "crash"] == [lost.seq]
        # The loop went on: later experiments ran, none of them a "fix" of the lost one.
        later = [e for e in exps.values() if e.seq > lost.seq]
        assert later and all(e.status in ("keep", "discard") for e in later)
        assert not any(e.details.get("fix_of") == lost.seq for e in exps.values())

        runs = [r for r in all_runs(root) if not exps[r["seq"]].is_baseline and r["status"] == "ok"]
        where = {r["seq"]: exps[r["seq"]].details["worker"] for r in runs}
        # Runs landed on both nodes, each at 127.0.0.1; after the kill only the head is left.
        assert {w["node"] for w in where.values()} == {head, node2}, where
        assert {w["node_ip"] for w in where.values()} == {"127.0.0.1"}
        assert all(w["node"] == head for seq, w in where.items() if seq > lost.seq + 1), where
        # Metrics and logs came back from both nodes.
        for r in runs:
            assert r["metrics"]["seen_seq"] == r["seq"] and "val_loss" in r["metrics"]
            text = Path(r["log_path"]).read_text()
            assert text.startswith("$ python train.py") and f"seen_seq: {r['seq']}" in text
        # Consistent books: no record left `running`, results.tsv matches the journal, refs agree.
        check_consistent(root, s)

    # Every process the cluster started is gone (its folder named in none of them) and so is the folder.
    leftovers = [pid for pid in os.listdir("/proc") if pid.isdigit() and summary["base"] in _cmdline(pid)]
    assert leftovers == [] and not Path(summary["base"]).exists()


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""
