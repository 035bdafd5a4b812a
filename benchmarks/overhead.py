"""What the native face costs: a fresh-process `autoresearch experiment -m ...` on a no-op task,
and that cost as a share of each shipped template's budget.

The figure that matters to a user is the overhead against the run it wraps, not a ratio to a
hand-written loop: a 60 s tinylm run that costs 0.3 s more is 0.5 % slower per experiment.

What it does, top to bottom:
  1. Makes an `example` task with the CLI, swaps its run for a no-op (`sed` prints the metric
     from a comment line of train.py; no evaluate phase), locks, starts, runs the baseline.
  2. Times, round robin A B A B so a burst of load elsewhere hits both alike, ROUNDS pairs of
       bare      the no-op run command alone, as a shell would start it (the floor);
       cli       `python -m autoresearch experiment -m ...` as a whole process, an edit each
                 time (alternately a keep and a discard), wall time and CPU time of the process
                 tree (children included).
     overhead = cli - bare, both medians.
     CLI processes run with cached bytecode (see ENV).
  3. Prints the medians, then the overhead as a percentage of `[budget] seconds` of every
     template in src/autoresearch/templates (the aim: at most 1 % each), and the start-up
     floor (`python -c "import autoresearch.cli.experiment"`).

Run: .venv/bin/python benchmarks/overhead.py [--rounds 20] [--sandbox none|auto]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "src" / "autoresearch" / "templates"
CLI = [sys.executable, "-m", "autoresearch"]
RUN = "sed -n 's/^# bench //p' train.py"  # the no-op run: prints `val_loss: X` from train.py
ROUNDS = 20  # A B pairs
GOAL_SHARE = 0.01  # of a template's budget
GOAL_NOOP_S = 0.3  # a no-op experiment on this machine
# Bytecode is cached, as for an installed package: a checkout run with PYTHONDONTWRITEBYTECODE
# would recompile every module at every start (a cost no installed user pays).
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
       "PYTHONPYCACHEPREFIX": os.path.join(tempfile.gettempdir(), "autoresearch-bench-pycache"),
       "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}


def run(argv: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=ENV)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


def timed(argv: list[str], cwd: Path, shell: bool = False) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of the children (user + system), exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, env=ENV, shell=shell)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode


def make_task(where: Path, sandbox: str) -> Path:
    task = where / "task"
    run([*CLI, "init", str(task), "--template", "example"], cwd=where)
    config = (task / "autoresearch.toml").read_text().replace('run = "python train.py"', f'run = "{RUN}"')
    config = config.replace('evaluate = "python evaluate.py"\n', "")
    (task / "autoresearch.toml").write_text(config + f'\n[sandbox]\nkind = "{sandbox}"\n')
    (task / "train.py").write_text("# bench val_loss: 100.0\n" + (task / "train.py").read_text())
    run(["git", "commit", "-qam", "bench: no-op run"], cwd=task)
    for step in (["lock"], ["start", "--tag", "bench"], ["baseline"]):
        run([*CLI, *step], cwd=task)
    return task


def edit(task: Path, i: int) -> None:
    """A keep (a lower metric) on even rounds, a discard (a higher one) on odd ones."""
    lines = (task / "train.py").read_text().split("\n", 1)
    value = float(lines[0].split()[-1])
    value = value - 1.0 if i % 2 == 0 else value + 50.0
    (task / "train.py").write_text(f"# bench val_loss: {value:.6f}\n{lines[1]}")


def budgets() -> dict[str, float]:
    out = {}
    for toml in sorted(TEMPLATES.glob("*/autoresearch.toml")):
        out[toml.parent.name] = float(tomllib.loads(toml.read_text())["budget"]["seconds"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--sandbox", default="none", choices=["none", "auto"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autoresearch-bench-") as tmp:
        task = make_task(Path(tmp), args.sandbox)
        bare: list[tuple[float, float]] = []
        cli: list[tuple[float, float]] = []
        for i in range(args.rounds):
            wall, cpu, _ = timed(["sh", "-c", RUN], task)
            bare.append((wall, cpu))
            edit(task, i)
            wall, cpu, code = timed([*CLI, "experiment", "-m", f"bench {i}"], task)
            if code not in (0,):
                run(["git", "checkout", "-q", "--", "train.py"], cwd=task, check=False)
            cli.append((wall, cpu))
        imports = [timed([sys.executable, "-c", "import autoresearch.cli.experiment"], task)[0] for _ in range(10)]
    med = statistics.median
    bare_wall, bare_cpu = med(w for w, _ in bare), med(c for _, c in bare)
    cli_wall, cli_cpu = med(w for w, _ in cli), med(c for _, c in cli)
    over = cli_wall - bare_wall
    print(f"sandbox={args.sandbox}, {args.rounds} rounds, load average {os.getloadavg()[0]:.2f}")
    print(f"  bare run command      wall {bare_wall * 1000:7.1f} ms   cpu {bare_cpu * 1000:7.1f} ms")
    print(f"  experiment (process)  wall {cli_wall * 1000:7.1f} ms   cpu {cli_cpu * 1000:7.1f} ms")
    print(f"  overhead              wall {over * 1000:7.1f} ms   cpu {(cli_cpu - bare_cpu) * 1000:7.1f} ms"
          f"   (aim: a no-op experiment under {GOAL_NOOP_S * 1000:.0f} ms)")
    print(f"  start-up floor: python + `import autoresearch.cli.experiment` {med(imports) * 1000:.1f} ms")
    print("  overhead as a share of each template's budget (aim: at most 1 %):")
    for name, seconds in budgets().items():
        share = over / seconds
        print(f"    {name:10s} {seconds:6.0f} s   {share * 100:5.2f} %" + ("" if share <= GOAL_SHARE else "   OVER"))


if __name__ == "__main__":
    main()
