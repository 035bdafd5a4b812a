"""False keeps per verdict policy, and what paired confirmation costs on a real improvement.

A synthetic noisy task (a Python run that prints LEVEL plus seeded Gaussian noise, optionally
with heavy-tailed outliers) goes through the real Experimenter, git and journal. For each policy:

- A/A: EXPERIMENTS experiments that change nothing that matters (a comment). Every keep is false.
- A/B: EXPERIMENTS experiments that each lower LEVEL by EFFECT standard deviations. Every keep is
  right; we report the keep rate (power) and the runs per experiment (the cost of confirmation).

Read it as: greedy keeps noise about half the time; min_delta and repeats cut that; paired
confirmation should be near zero on A/A while keeping most real improvements.

    .venv/bin/python benchmarks/false_keeps.py
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXPERIMENTS = 30
EFFECT = 2.0  # the real improvement, in noise standard deviations
HEAVY_TAILS = False  # add rare large slowdowns, as timing noise has
POLICIES = {
    "greedy": "",
    "min_delta=2sd": "min_delta = 2.0",
    "repeats=3": "repeats = 3",
    "paired/bootstrap": 'confirm = "paired"\nmax_runs = 12',
    "paired/sign": 'confirm = "paired"\ntest = "sign"\nmax_runs = 20',
}

TRAIN = '''import os, random
LEVEL = 100.0
NOTE = 0
rng = random.Random(int(os.environ.get("AUTORESEARCH_SEED", "0")))
noise = rng.gauss(0.0, 1.0)
if HEAVY and rng.random() < 0.1:
    noise += rng.expovariate(0.3)
print(f"val_loss: {LEVEL + noise:.6f}")
'''


def cli(cwd: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "autoresearch", *args], cwd=cwd, check=True, capture_output=True)


def make_task(base: Path, name: str, verdict: str) -> Path:
    root = base / name
    cli(base, "init", str(root), "--template", "example")
    (root / "train.py").write_text(TRAIN.replace("HEAVY", str(HEAVY_TAILS)))
    config = root / "autoresearch.toml"
    config.write_text(config.read_text().replace("[agent]", f"[verdict]\n{verdict}\n\n[sandbox]\nkind = \"none\"\n\n[agent]"))
    subprocess.run(["git", "commit", "-qam", "noisy"], cwd=root, check=True,
                   env={"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
                        "GIT_COMMITTER_EMAIL": "b@b", "PATH": "/usr/bin:/bin"})
    cli(root, "lock")
    cli(root, "start", "--tag", "b")
    cli(root, "baseline")
    return root


def trial(base: Path, name: str, verdict: str, effect: float) -> tuple[int, float, float]:
    from autoresearch.experiment import Experimenter
    from autoresearch.session import Session

    root = make_task(base, name, verdict)
    train = root / "train.py"
    keeps, runs, began = 0, [], time.time()
    with Session.open(root) as session:
        session.acquire("benchmark")
        ex = Experimenter(session)
        for i in range(EXPERIMENTS):
            text = train.read_text()
            text = re.sub(r"^NOTE = \d+", f"NOTE = {i + 1}", text, flags=re.M)
            if effect:
                level = float(re.search(r"^LEVEL = (.*)$", text, re.M).group(1))
                text = re.sub(r"^LEVEL = .*$", f"LEVEL = {level - effect}", text, flags=re.M)
            train.write_text(text)
            exp = ex.run(f"{name} {i}")
            keeps += exp.status == "keep"
            runs.append(len(session.journal.runs(seq=exp.seq)))
    return keeps, statistics.fmean(runs), time.time() - began


def main() -> None:
    print(f"{EXPERIMENTS} experiments per cell; noise sd 1.0, heavy tails {HEAVY_TAILS}; A/B effect {EFFECT} sd")
    print(f"{'policy':18s} {'A/A false keeps':>16s} {'runs/exp':>9s} {'A/B keeps':>10s} {'runs/exp':>9s} {'extra vs greedy':>16s}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        greedy_runs = None
        for i, (name, verdict) in enumerate(POLICIES.items()):
            fk, aa_runs, _ = trial(base, f"aa{i}", verdict, 0.0)
            tk, ab_runs, _ = trial(base, f"ab{i}", verdict, EFFECT)
            greedy_runs = greedy_runs or ab_runs
            print(f"{name:18s} {fk:>9d}/{EXPERIMENTS:<6d} {aa_runs:>9.2f} {tk:>5d}/{EXPERIMENTS:<4d} {ab_runs:>9.2f} "
                  f"{ab_runs / greedy_runs:>15.2f}x", flush=True)


if __name__ == "__main__":
    main()
