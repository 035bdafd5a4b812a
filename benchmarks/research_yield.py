"""Research yield: what a night of `tune` on tinylm finds, per clock, idle and beside a hog.

The headline figure later work is judged by (issue 23). Per cell, a fresh tinylm task folder,
then the real CLI as a user runs it:

  autoresearch run --agent tune -n N -q     N experiments after the baseline
  autoresearch review --json                runs per decision, keeps, the gain the session claims
  autoresearch compare -n P --json          baseline and best side by side, P pairs (no hog):
                                            the gain re-measured, the claim's check

Cells: "cpu/idle", "cpu/hog", "wall/idle", "wall/hog" ([budget] clock, and whether a
single-threaded busy loop runs beside the session, as a neighbour would). Printed per cell:
experiments per hour (all experiments, the baseline's included, over the `run` command's wall
time), runs per decision (mean, max: screening and confirmation runs, both sides), keeps, the
claimed gain with its interval, the re-measured gain with its interval, and the load average.

The budget defaults to 20 s per run (the quickstart's), not the template's 60, so a cell takes
about a quarter of an hour idle; `--budget 60` for the template's own. tune's proposals are
deterministic given the results, so the cells differ by their measurements, not their luck.

Run: .venv/bin/python benchmarks/research_yield.py                       # all four cells, N=10
     .venv/bin/python benchmarks/research_yield.py --cells cpu/idle -n 12 # one cell
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from autoresearch.git.workspace import Workspace  # noqa: E402
from autoresearch.scaffold import init_from_template  # noqa: E402

CELLS = ("cpu/idle", "cpu/hog", "wall/idle", "wall/hog")
HOG = "while True: pass"
CLI = [sys.executable, "-m", "autoresearch"]


def make_task(folder: Path, clock: str, budget: float, confirm: str = "") -> None:
    """tinylm with the cell's clock and budget (and confirmation policy, when given), committed
    as the harness (a user's own edit)."""
    init_from_template(folder, "tinylm")
    config = folder / "autoresearch.toml"
    text = config.read_text()
    text = re.sub(r"(?m)^seconds = .*$", f"seconds = {budget:g}", text, count=1)
    text = re.sub(r'(?m)^clock = .*$', f'clock = "{clock}"', text, count=1)
    if confirm:
        text = re.sub(r'(?m)^confirm = .*$', f'confirm = "{confirm}"', text, count=1)
    config.write_text(text)
    Workspace(folder).commit_paths(["autoresearch.toml"], f"benchmark: {budget:g} s on the {clock} clock")


def cli(folder: Path, *args: str, log: Path | None = None) -> str:
    out = subprocess.run([*CLI, *args], cwd=folder, capture_output=True, text=True, check=False)
    if log is not None:
        with log.open("a") as f:
            f.write(f"$ autoresearch {' '.join(args)}  (rc {out.returncode})\n{out.stdout}{out.stderr}\n")
    if out.returncode not in (0, 1):  # 1: the loop ended on a stop rule that says so
        raise SystemExit(f"autoresearch {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return out.stdout


def load() -> float:
    return os.getloadavg()[0]


def run_cell(cell: str, n: int, budget: float, pairs: int, base: Path, confirm: str = "") -> dict:
    clock, neighbour = cell.split("/")
    folder = base / (cell.replace("/", "-") + (f"-{confirm}" if confirm else ""))
    make_task(folder, clock, budget, confirm)
    log = base / f"{folder.name}.log"
    hog = subprocess.Popen([sys.executable, "-c", HOG]) if neighbour == "hog" else None
    loads = [load()]
    started = time.monotonic()
    try:
        cli(folder, "run", "--agent", "tune", "-n", str(n), "-q", log=log)  # the baseline is not counted
    finally:
        elapsed = time.monotonic() - started
        loads.append(load())
        if hog is not None:
            hog.kill()
            hog.wait()
    review = json.loads(cli(folder, "review", "--json", log=log))
    summary = review.get("summary", review)
    claimed = summary.get("gain_evidence")
    compared = None
    if summary.get("best_seq") is not None and summary.get("best_seq") != summary.get("baseline_seq"):
        cli(folder, "compare", "-n", str(pairs), "--json", log=log)
        after = json.loads(cli(folder, "review", "--json", log=log))
        compared = after.get("summary", after).get("gain_evidence")
    return {"cell": cell + (f" ({confirm})" if confirm else ""), "experiments": summary.get("experiments"), "counts": summary.get("counts"),
            "seconds": elapsed, "per_hour": 3600 * (summary.get("experiments") or 0) / elapsed,
            "runs_per_decision": summary.get("runs_per_decision"), "claimed": claimed, "compared": compared,
            "baseline": summary.get("baseline"), "best": summary.get("best"), "load": loads, "log": str(log)}


def gain_text(est: dict | None) -> str:
    if not est:
        return "-"
    pct, half = est.get("pct"), est.get("pct_half")
    if pct is None:
        return f"{est['value']:+.4f}"
    return f"{pct:+.2f} %" + (f" ± {half:.2f}" if half is not None else "") + f" ({est.get('runs')} runs)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10, help="experiments after the baseline, per cell")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per run on the cell's clock")
    parser.add_argument("--pairs", type=int, default=3, help="pairs of the closing `compare`")
    parser.add_argument("--cells", default=",".join(CELLS), help="comma-separated: " + ", ".join(CELLS))
    parser.add_argument("--confirm", default="", help='[verdict] confirm for every cell (default: the template\'s, '
                        '"sequential"; "reference" tests candidates against the best\'s stored runs)')
    parser.add_argument("--keep", action="store_true", help="keep the task folders (printed)")
    args = parser.parse_args()
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    for c in cells:
        if c not in CELLS:
            raise SystemExit(f"--cells: unknown cell {c!r} (one of {', '.join(CELLS)})")
    base = Path(tempfile.mkdtemp(prefix="yield-", dir=os.environ.get("AUTORESEARCH_BENCH_DIR")))
    print(f"folders and logs under {base}; load average {load():.2f}", flush=True)
    rows = []
    for cell in cells:
        row = run_cell(cell, args.n, args.budget, args.pairs, base, args.confirm)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n-n {args.n} --budget {args.budget:g} --pairs {args.pairs}" + (f" --confirm {args.confirm}" if args.confirm else "") + "\n")
    print("| cell | experiments/hour | runs per decision: mean, max (decisions) | keeps | claimed gain | "
          "re-measured (compare) | load avg (start, end) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        rpd = r["runs_per_decision"] or {}
        counts = r["counts"] or {}
        print(f"| {r['cell']} | {r['per_hour']:.1f} ({r['experiments']} in {r['seconds'] / 60:.1f} min) | "
              f"{rpd.get('mean', 0):.1f}, {rpd.get('max', '-')} ({rpd.get('decisions', 0)}) | {counts.get('keep', 0)} | "
              f"{gain_text(r['claimed'])} | {gain_text(r['compared'])} | "
              f"{r['load'][0]:.1f}, {r['load'][1]:.1f} |")


if __name__ == "__main__":
    main()
