"""False keeps per verdict policy, power on real gains, and what each costs in runs.

Two modes:

- default (simulated): the decision flow of experiment.decide_flow/_confirm_flow replayed in
  pure Python over the real verdict functions (screen, abba_roles, paired_decision), with the
  metric = LEVEL + N(0, 1) noise. SIM_EXPERIMENTS experiments per cell, in chains of CHAIN
  experiments from a one-run baseline, as in a session (a keep moves the reference). Cells:
  A/A (the change does nothing: every keep is false), a real 1-sd and a 2-sd gain (every keep
  is right: the keep rate is the power). Runs per experiment count the screen too.
- --real: the same policies through the real native experiment (trial.experiment), git and journal, on a Python task
  that prints LEVEL plus seeded Gaussian noise (EXPERIMENTS per cell; slow, a check that the
  simulation is the real flow).

    .venv/bin/python benchmarks/false_keeps.py            # simulated, about 2 minutes
    .venv/bin/python benchmarks/false_keeps.py --real     # end to end, all policies (slow)
    .venv/bin/python benchmarks/false_keeps.py --real greedy sequential   # some of them
    .venv/bin/python benchmarks/false_keeps.py --sim 50 --experiments 3 --real greedy   # a quick check
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
POLICIES = {  # [verdict] lines
    "greedy": "",
    "min_delta=2sd": "min_delta = 2.0",
    "repeats=3": "repeats = 3",
    "paired/bootstrap": 'confirm = "paired"\nmax_runs = 12',
    "paired/sign": 'confirm = "paired"\ntest = "sign"\nmax_runs = 20',
    "sequential": 'confirm = "sequential"',  # max_runs = 20 by default
    "sequential@0.97": 'confirm = "sequential"\nconfidence = 0.97',
}
SIM_EXPERIMENTS = 1000
SLOW = {"paired/bootstrap": 300}  # 4000 resamples a look in pure Python: fewer experiments
CHAIN = 20

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
    proc = subprocess.run([sys.executable, "-m", "autoresearch", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"`autoresearch {' '.join(args)}` failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")


def make_task(base: Path, name: str, verdict: str) -> Path:
    root = base / name
    cli(base, "init", str(root), "--template", "example")
    (root / "train.py").write_text(TRAIN.replace("HEAVY", str(HEAVY_TAILS)))
    config = root / "autoresearch.toml"
    # The run prints the metric itself: the template's evaluate phase (which reads weights) goes.
    text = config.read_text().replace('evaluate = "python evaluate.py"\n', "")
    config.write_text(text.replace("[agent]", f"[verdict]\n{verdict}\n\n[sandbox]\nkind = \"none\"\n\n[agent]"))
    subprocess.run(["git", "commit", "-qam", "noisy"], cwd=root, check=True,
                   env={"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
                        "GIT_COMMITTER_EMAIL": "b@b", "PATH": "/usr/bin:/bin"})
    cli(root, "lock")
    cli(root, "start", "--tag", "b")
    cli(root, "baseline")
    return root


def trial(base: Path, name: str, verdict: str, effect: float) -> tuple[int, float, float]:
    from autoresearch.session import Session
    from autoresearch.trial import experiment

    root = make_task(base, name, verdict)
    train = root / "train.py"
    keeps, runs, began = 0, [], time.time()
    with Session.open(root) as session:
        session.acquire("benchmark")
        for i in range(EXPERIMENTS):
            text = train.read_text()
            text = re.sub(r"^NOTE = \d+", f"NOTE = {i + 1}", text, flags=re.M)
            if effect:
                level = float(re.search(r"^LEVEL = (.*)$", text, re.M).group(1))
                text = re.sub(r"^LEVEL = .*$", f"LEVEL = {level - effect}", text, flags=re.M)
            train.write_text(text)
            exp = experiment(session, f"{name} {i}")
            keeps += exp.status == "keep"
            runs.append(len(session.journal.runs(seq=exp.seq)))
    return keeps, statistics.fmean(runs), time.time() - began


def real_main(only: list[str]) -> None:
    print(f"{EXPERIMENTS} experiments per cell; noise sd 1.0, heavy tails {HEAVY_TAILS}; A/B effect {EFFECT} sd")
    print(f"{'policy':18s} {'A/A false keeps':>16s} {'runs/exp':>9s} {'A/B keeps':>10s} {'runs/exp':>9s} {'extra vs greedy':>16s}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        greedy_runs = None
        for i, (name, verdict) in enumerate(POLICIES.items()):
            if only and name not in only:
                continue
            fk, aa_runs, _ = trial(base, f"aa{i}", verdict, 0.0)
            tk, ab_runs, _ = trial(base, f"ab{i}", verdict, EFFECT)
            greedy_runs = greedy_runs or ab_runs
            print(f"{name:18s} {fk:>9d}/{EXPERIMENTS:<6d} {aa_runs:>9.2f} {tk:>5d}/{EXPERIMENTS:<4d} {ab_runs:>9.2f} "
                  f"{ab_runs / greedy_runs:>15.2f}x", flush=True)


# -- simulated ---------------------------------------------------------------------------------

def sim_policy(text: str):  # noqa: ANN201 - a VerdictSection, built the way task.py loads it
    import tomllib

    from autoresearch.task import VerdictSection, _normalize_verdict

    table = tomllib.loads(text)
    return _normalize_verdict(Path("bench.toml"), table, VerdictSection(**table))


def sim_experiment(policy, level: float, ref: float, effect: float, rng) -> tuple[bool, int, float]:  # noqa: ANN001
    """One experiment as decide_flow runs it: screen (repeats), then paired ABBA confirmation."""
    from autoresearch import verdict as V

    cand = level - effect  # minimize: lower is better
    values = [cand + rng.gauss(0.0, 1.0) for _ in range(policy.repeats)]
    metric, runs = V.median(values), len(values)
    if V.screen(metric, ref, policy, False).status != "keep":
        return False, runs, ref
    if policy.confirm != "paired":
        return True, runs, metric
    needed = V.threshold(ref, policy)
    sides: dict[str, list[float]] = {"best": [], "candidate": []}
    outcome = None
    for role in V.abba_roles(2 * max(V.MIN_PAIRS, policy.max_runs // 2)):
        sides[role].append((level if role == "best" else cand) + rng.gauss(0.0, 1.0))
        runs += 1
        if len(sides["best"]) == len(sides["candidate"]):
            outcome = V.paired_decision(sides["best"], sides["candidate"], policy, False, needed)
            if outcome.decision != "continue":
                break
    if outcome is not None and outcome.decision == "better":
        return True, runs, V.median(sides["candidate"] + [metric])
    return False, runs, ref


def sim_cell(policy, effect: float, seed: int, experiments: int) -> tuple[float, float]:  # noqa: ANN001
    """Keeps per experiment and runs per experiment over EXPERIMENTS experiments."""
    import random

    rng = random.Random(seed)
    keeps = runs = done = 0
    while done < experiments:
        level = 100.0
        ref = level + rng.gauss(0.0, 1.0)  # the baseline: one run
        for _ in range(min(CHAIN, experiments - done)):
            kept, n, ref = sim_experiment(policy, level, ref, effect, rng)
            level -= effect if kept else 0.0
            keeps += kept
            runs += n
            done += 1
    return keeps / experiments, runs / experiments


def sim_main() -> None:
    print(f"simulated: {SIM_EXPERIMENTS} experiments per cell ({', '.join(f'{k}: {v}' for k, v in SLOW.items())}), "
          f"in chains of {CHAIN}; noise sd 1; one-run screen")
    print("runs/exp counts every run of an experiment (screen + confirmation), per cell")
    print(f"{'policy':18s} {'A/A false keeps':>15s} {'runs/exp':>8s} {'power 1sd':>9s} {'runs/exp':>8s} "
          f"{'power 2sd':>9s} {'runs/exp':>8s}")
    for name, text in POLICIES.items():
        policy = sim_policy(text)
        n = SLOW.get(name, SIM_EXPERIMENTS)
        cells = [sim_cell(policy, effect, seed, n) for effect, seed in ((0.0, 11), (1.0, 12), (2.0, 13))]
        (aa, aa_runs), (p1, r1), (p2, r2) = cells
        print(f"{name:18s} {aa * 100:>10.1f}/100 {aa_runs:>8.2f} {p1 * 100:>8.1f}% {r1:>8.2f} "
              f"{p2 * 100:>8.1f}% {r2:>8.2f}", flush=True)


def take_count(flag: str, default: int) -> int:
    """`FLAG N` from the command line (removed from argv), else DEFAULT."""
    if flag not in sys.argv:
        return default
    i = sys.argv.index(flag)
    try:
        value = int(sys.argv[i + 1])
    except (IndexError, ValueError):
        raise SystemExit(f"{flag} needs a whole number, e.g. {flag} 10") from None
    del sys.argv[i:i + 2]
    return value


if __name__ == "__main__":
    EXPERIMENTS = take_count("--experiments", EXPERIMENTS)
    SIM_EXPERIMENTS = take_count("--sim", SIM_EXPERIMENTS)
    SLOW = {k: min(v, SIM_EXPERIMENTS) for k, v in SLOW.items()}
    if "--real" in sys.argv:
        real_main(sys.argv[sys.argv.index("--real") + 1:])
    else:
        sim_main()
