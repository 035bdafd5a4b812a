"""Experiments per hour with 1, 2 and 4 slots, on local slots and on Ray.

The task's run sleeps a fixed time, so the machine's cores are not what limits throughput:
what is measured is the loop itself (proposal in a scratch copy, guard, commit, export of the
commit or tree shipping, sandbox start, verdict, journal). Efficiency is the measured rate against the ideal
`slots x 3600 / seconds per run`; the goal is at least 90 % at 4 slots on both executors.

    python benchmarks/scaling.py                      # 1, 2, 4 slots; local and ray; 4 s runs
    python benchmarks/scaling.py --seconds 2 --rounds 2 --executors local
    python benchmarks/scaling.py --address HOST:PORT  # 2, 4 slots; local and that Ray cluster

With --address the Ray rows run on an existing cluster (the driver connects to it and ships
autoresearch to its workers, as `[executor] address` does) and say on how many nodes the runs
landed. To measure a real two-node cluster on one machine, let the test's driver start one in a
loopback-only namespace (each node 2 CPUs, so 4 slots fit) and run this script on it:

    bwrap --dev-bind / / --unshare-net --unshare-pid --die-with-parent --proc /proc \
        python tests/ray_cluster_driver.py --cpus 2 -- python benchmarks/scaling.py --address {address}

Every experiment is a real one (a proposer edits train.py, the driver commits it, the harness
runs it, the verdict is recorded); the proposer here is instant, so a model's thinking time is
left out. The rate counts all experiments except the baseline, over the time they were in
flight (`journal.throughput`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from autoresearch.config.task import LoopSection
from autoresearch.executors.local import LocalExecutor
from autoresearch.git.workspace import Workspace
from autoresearch.journal.results import throughput
from autoresearch.loop.driver import run_loop
from autoresearch.proposers import Proposal, ProposeContext
from autoresearch.scaffold import init_from_template
from autoresearch.trial.branch import start
from autoresearch.trial.session import Session

SLEEPY_TRAIN = '''"""Benchmark task: the run sleeps a fixed time; the knob changes nothing measurable."""
import time

X = 0  # edited by the benchmark's proposer, so every experiment is a real change
SECONDS = {seconds}

time.sleep(SECONDS)
print("val_loss: 1.000000")
'''


class Bump:
    """An instant proposer: X = seq. Every candidate ties with the best, so it is discarded
    (no keeps, hence no replays: the benchmark measures plain throughput)."""

    name = "bump"

    def propose(self, ctx: ProposeContext) -> Proposal:
        path = ctx.workspace.root / "train.py"
        lines = [f"X = {ctx.seq}" if line.startswith("X = ") else line for line in path.read_text().splitlines()]
        path.write_text("\n".join(lines) + "\n")
        return Proposal(f"X = {ctx.seq}", model_driven=False)


def make_task(root: Path, seconds: float) -> None:
    init_from_template(root, "example")
    (root / "train.py").write_text(SLEEPY_TRAIN.format(seconds=seconds))
    # The run prints the metric itself: the template's evaluate phase (which reads weights) goes.
    config = root / "autoresearch.toml"
    config.write_text(config.read_text().replace('evaluate = "python evaluate.py"\n', ""))
    Workspace(root).commit_paths(["train.py", "autoresearch.toml"], "benchmark: a run that sleeps")


def measure(kind: str, slots: int, seconds: float, rounds: int, base: Path, address: str = "") -> dict:
    root = base / f"{kind}-{slots}"
    make_task(root, seconds)
    if kind == "local":
        executor = LocalExecutor(slots)
    else:
        from autoresearch.executors.ray import RayExecutor

        executor = RayExecutor(slots, address=address, num_cpus=1)
    with Session.open(root) as session:
        start(session, "bench")
        began = time.monotonic()
        run_loop(session, lambda slot: Bump(), LoopSection(max_experiments=rounds * slots), executor)
        wall = time.monotonic() - began
        stats = throughput(session.journal, "bench")
        nodes = {e.details["worker"].get("node") or e.details["worker"].get("host")
                 for e in session.journal.experiments("bench") if "worker" in e.details}
    ideal = slots * 3600.0 / seconds
    return {"kind": kind, "slots": slots, "experiments": stats["experiments"], "per_hour": stats["per_hour"],
            "per_slot_per_hour": stats["per_slot_per_hour"], "ideal": ideal, "efficiency": stats["per_hour"] / ideal,
            "concurrency": stats["concurrency"], "wall": wall,
            "nodes": len(nodes) if kind != "local" else 1}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="how long each run sleeps")
    parser.add_argument("--rounds", type=int, default=3, help="experiments per slot")
    parser.add_argument("--slots", help="slot counts to try, comma-separated (default 1,2,4; 2,4 with --address)")
    parser.add_argument("--executors", default="local,ray", help="local, ray or both")
    parser.add_argument("--address", default="", help="run the Ray rows on this existing cluster (HOST:PORT)")
    args = parser.parse_args()
    args.slots = args.slots or ("2,4" if args.address else "1,2,4")
    slot_counts = [int(n) for n in args.slots.split(",")]
    kinds = [k.strip() for k in args.executors.split(",") if k.strip()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="autoresearch-scaling-") as tmp:
        os.environ.setdefault("AUTORESEARCH_CACHE", str(Path(tmp) / "cache"))
        for kind in kinds:
            if kind == "ray":
                try:
                    import ray
                except ImportError:
                    print("ray is not installed (pip install 'autoresearch[ray]'): skipping it", file=sys.stderr)
                    continue
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            if kind == "ray" and not args.address:  # with --address the executor connects by itself
                ray.init(num_cpus=max(slot_counts), _node_ip_address="127.0.0.1", include_dashboard=False,
                         log_to_driver=False)
            try:
                for slots in slot_counts:
                    row = measure(kind, slots, args.seconds, args.rounds, Path(tmp), args.address)
                    if kind == "ray" and args.address:
                        row["kind"] = "cluster"
                    rows.append(row)
                    print(f"{row['kind']:7s} {slots} slot(s): {row['per_hour']:7.0f} experiments/h "
                          f"({row['per_slot_per_hour']:.0f} per slot), ideal {row['ideal']:.0f}, "
                          f"efficiency {100 * row['efficiency']:.1f}%", file=sys.stderr, flush=True)
            finally:
                if kind == "ray" and not args.address:
                    ray.shutdown()
    print(f"\nruns sleep {args.seconds:g} s; {args.rounds} experiments per slot; ideal = slots x 3600 / {args.seconds:g}")
    if args.address:
        print(f"cluster: the Ray cluster at {args.address}")
    print(f"{'executor':8s} {'slots':>5s} {'exps':>5s} {'exp/h':>8s} {'exp/h/slot':>10s} {'ideal':>7s} "
          f"{'efficiency':>10s} {'in flight':>9s} {'wall s':>7s} {'nodes':>5s}")
    for r in rows:
        print(f"{r['kind']:8s} {r['slots']:5d} {r['experiments']:5d} {r['per_hour']:8.0f} {r['per_slot_per_hour']:10.0f} "
              f"{r['ideal']:7.0f} {100 * r['efficiency']:9.1f}% {r['concurrency']:9.2f} {r['wall']:7.1f} {r['nodes']:5d}")
    at4 = [r for r in rows if r["slots"] == 4]
    if at4:
        ok = all(r["efficiency"] >= 0.9 for r in at4)
        detail = ", ".join(f"{r['kind']} {100 * r['efficiency']:.1f}%" for r in at4)
        print(f"\ngoal (>= 90% at 4 slots): {'met' if ok else 'NOT met'} ({detail})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
