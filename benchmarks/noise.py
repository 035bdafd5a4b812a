"""How noisy tinylm's metric is on each budget clock, idle and beside a one-core CPU hog.

Runs the tinylm baseline N times per cell through the real harness (`trial.measure.measure`:
a fresh export, the sandbox, the run phase on the task's clock, the evaluate phase), in these
cells, one after another in one process:

  wall / idle      clock = "wall", nothing else started
  wall / hog       clock = "wall", one single-threaded busy loop beside it (a neighbour)
  cpu / idle       clock = "cpu": the budget is the run's own CPU seconds (its cgroup)
  cpu / hog        clock = "cpu" beside the hog
  cpu / hog, spin  the same, without the harness's thread sizing (no OMP_NUM_THREADS, no
                   OMP_WAIT_POLICY=PASSIVE): what a run did before the threads were sized

Printed per cell: val_bpb median and sd as a % of it, tokens/s (training, wall) median and
range, the run's wall and CPU seconds. The hog is a `python -c "while True: pass"` pinned to
nowhere in particular: the scheduler shares the cores between it and the run.

The figures also depend on everything else the machine runs: note `uptime` beside them.

Run: .venv/bin/python benchmarks/noise.py                # N=3, budget 20 s: about 12 minutes on 2 cores
     .venv/bin/python benchmarks/noise.py -n 5 --budget 60  # the template's own budget (long)
     .venv/bin/python benchmarks/noise.py --cells cpu/hog    # one cell
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from autoresearch.config.task import load_config  # noqa: E402
from autoresearch.trial import measure as measure_module  # noqa: E402

CELLS = ("wall/idle", "wall/hog", "cpu/idle", "cpu/hog", "cpu/hog-spin")
HOG = "while True: pass"


@dataclasses.dataclass
class Bench:
    """What `measure` needs of a session: config, root, state_dir and run_dir(seq)."""

    config: object
    root: Path
    state_dir: Path

    def run_dir(self, seq: int) -> Path:
        return self.state_dir / "runs" / str(seq)


def make_task(folder: Path) -> Path:
    root = folder / "tinylm"
    subprocess.run([sys.executable, "-m", "autoresearch", "init", str(root), "--template", "tinylm"],
                   check=True, capture_output=True)
    print("preparing the data (once) ...", flush=True)
    subprocess.run([sys.executable, "prepare.py"], cwd=root, check=True, capture_output=True)
    return root


def export(root: Path, tree: Path) -> None:
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=root, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)


def run_cell(root: Path, cell: str, n: int, budget: float, index: int) -> list[dict]:
    clock, load = cell.split("/")
    config = load_config(root)
    config = dataclasses.replace(config, budget=dataclasses.replace(config.budget, seconds=budget, clock=clock,
                                                                    grace=budget, timeout=8 * budget + 120))
    bench = Bench(config, root, root / ".autoresearch")
    tree = bench.state_dir / "bench-tree"
    export(root, tree)
    hog = subprocess.Popen([sys.executable, "-c", HOG]) if load.startswith("hog") else None
    original = measure_module.thread_env
    if load == "hog-spin":
        measure_module.thread_env = lambda env: {}  # type: ignore[assignment]
    rows = []
    try:
        for i in range(n):
            m = measure_module.measure(bench, tree, 1000 + 100 * index + i, i, f"bench-{i}")
            cpu = m.flags.get("cpu_seconds")
            rows.append({"ok": m.ok, "reason": m.reason, "metric": m.metric, "tps": m.metrics.get("tokens_per_sec"),
                         "wall": m.seconds, "cpu": cpu})
            print(f"  {cell} run {i + 1}/{n}: val_bpb {m.metric if m.ok else m.reason} "
                  f"tokens/s {m.metrics.get('tokens_per_sec', 0):.0f} wall {m.seconds:.1f}s"
                  + (f" cpu {cpu:.1f}s" if cpu else ""), flush=True)
    finally:
        measure_module.thread_env = original  # type: ignore[assignment]
        if hog is not None:
            hog.kill()
            hog.wait()
    return rows


def summary(cell: str, rows: list[dict]) -> str:
    good = [r for r in rows if r["ok"]]
    if len(good) < 2:
        return f"| {cell} | {len(good)}/{len(rows)} ok | | | |"
    vals = [r["metric"] for r in good]
    tps = [r["tps"] or 0 for r in good]
    med = statistics.median(vals)
    sd = statistics.stdev(vals)
    walls = statistics.median(r["wall"] for r in good)
    return (f"| {cell} | {med:.3f} | {100 * sd / med:.2f} % | {statistics.median(tps):,.0f} "
            f"({min(tps):,.0f}-{max(tps):,.0f}) | {walls:.0f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=3, help="runs per cell")
    parser.add_argument("--budget", type=float, default=20.0, help="[budget] seconds of every run")
    parser.add_argument("--cells", default=",".join(CELLS), help="comma-separated, from " + ", ".join(CELLS))
    parser.add_argument("--keep", action="store_true", help="keep the task folder")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="noise-bench-"))
    os.environ.setdefault("AUTORESEARCH_CACHE", str(folder / "cache"))
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min load average), {os.cpu_count()} cores", flush=True)
    try:
        root = make_task(folder)
        results = {}
        for index, cell in enumerate(args.cells.split(",")):
            results[cell] = run_cell(root, cell, args.n, args.budget, index)
        print(f"\nbudget {args.budget:g} s, N={args.n}, load after: {os.getloadavg()[0]:.2f}")
        print("| cell | val_bpb median | sd % of it | tokens/s median (range) | wall per run |")
        print("|---|---|---|---|---|")
        for cell, rows in results.items():
            print(summary(cell, rows))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"task folder: {folder}")


if __name__ == "__main__":
    start = time.monotonic()
    main()
    print(f"({time.monotonic() - start:.0f} s)")
