"""The split evaluate phase against the one-process evaluate it replaced, on tinylm (CPU).

    .venv/bin/python benchmarks/eval_split.py [--rounds 5] [--budget 5] [--before 34cc21d]

Copies the tinylm template (its real constants) into a temporary folder, prepares the data
(cached under $AUTORESEARCH_CACHE), trains one model for BUDGET seconds, then evaluates those
same weights ROUNDS times with each evaluate phase, in A B B A order within one process:

  before  evaluate.py as of commit BEFORE (the scorer imported train.py and ran the model)
  split   evaluate.py of this tree (the scorer) talking to two serve.py model processes

Prints each phase's wall time and CPU time (the whole process tree; medians), the medians of
the per-round ratios split / before, and both val_bpb: with the same weights they must agree
to the last printed digit.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "src" / "autoresearch" / "templates" / "tinylm"


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(task: Path, script: str, env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds of the whole process tree (the scorer waits for its model
    processes, so theirs count), and the output."""
    t0, cpu0 = time.perf_counter(), cpu_of_children()
    done = subprocess.run([sys.executable, script], cwd=task, env=env, capture_output=True, text=True, check=False)
    seconds, cpu = time.perf_counter() - t0, cpu_of_children() - cpu0
    if done.returncode != 0:
        sys.exit(f"{script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, cpu, done.stdout


def metric(output: str, name: str) -> float:
    found = re.findall(rf"^{name}:\s+(\S+)$", output, re.M)
    if not found:
        sys.exit(f"no {name} in:\n{output[-2000:]}")
    return float(found[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=5.0, help="seconds of training for the one model")
    parser.add_argument("--before", default="34cc21d", help="a commit whose tinylm evaluate.py ran the model itself")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="eval-split-"))
    try:
        task = work / "task"
        shutil.copytree(TEMPLATE, task, ignore=shutil.ignore_patterns("__pycache__"))
        before = subprocess.run(["git", "show", f"{args.before}:src/autoresearch/templates/tinylm/evaluate.py"],
                                cwd=ROOT, capture_output=True, text=True, check=True).stdout
        (task / "evaluate_before.py").write_text(before)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "AUTORESEARCH_OUT": str(work / "out")}
        env.setdefault("AUTORESEARCH_CACHE", str(Path.home() / ".cache" / "autoresearch"))
        run(task, "prepare.py", env)
        run(task, "train.py", {**env, "AUTORESEARCH_PHASE": "run", "AUTORESEARCH_BUDGET_S": f"{args.budget:g}"})
        env["AUTORESEARCH_PHASE"] = "evaluate"
        times: dict[str, list[float]] = {"before": [], "split": []}
        cpus: dict[str, list[float]] = {"before": [], "split": []}
        bpb: dict[str, set[float]] = {"before": set(), "split": set()}
        scripts = {"before": "evaluate_before.py", "split": "evaluate.py"}
        for i in range(args.rounds):
            for name in (("before", "split") if i % 2 == 0 else ("split", "before")):
                seconds, cpu, output = run(task, scripts[name], env)
                times[name].append(seconds)
                cpus[name].append(cpu)
                bpb[name].add(metric(output, "val_bpb"))
        ratios = [s / b for s, b in zip(times["split"], times["before"])]
        cpu_ratios = [s / b for s, b in zip(cpus["split"], cpus["before"])]
        load = os.getloadavg()[0]
        print(f"tinylm evaluate, {args.rounds} rounds A B B A, load {load:.1f} on {os.cpu_count()} cores")
        for name in ("before", "split"):
            print(f"  {name:6s} wall median {statistics.median(times[name]):6.2f} s, CPU median "
                  f"{statistics.median(cpus[name]):6.2f} s   val_bpb {sorted(bpb[name])}")
        print(f"  split / before, wall: median ratio {statistics.median(ratios):.3f} (rounds: "
              + ", ".join(f"{r:.2f}" for r in ratios) + ")")
        print(f"  split / before, CPU:  median ratio {statistics.median(cpu_ratios):.3f} (rounds: "
              + ", ".join(f"{r:.2f}" for r in cpu_ratios) + ")")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
