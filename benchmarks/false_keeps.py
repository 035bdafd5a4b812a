"""False keeps per verdict policy, power on real gains, and what each costs in runs.

Two modes:

- default (simulated): the decision flow of verdict.flow.decide_flow replayed in
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
    .venv/bin/python benchmarks/false_keeps.py --bound    # what an idealised reference policy could do
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
    from autoresearch.trial.lifecycle import experiment
    from autoresearch.trial.session import Session

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

    from autoresearch.config.schema import VerdictSection
    from autoresearch.config.validate import normalize_verdict

    table = tomllib.loads(text)
    return normalize_verdict(Path("bench.toml"), table, VerdictSection(**table))


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


# -- confirm = "reference", through the real decision flow ---------------------------------------

def flow_cell(policy, effect: float, seed: int, experiments: int, p_gain: float = 1.0) -> tuple[float, float, float]:  # noqa: ANN001
    """Keeps per experiment among the edits that are gains (or all, when every edit is one: the
    false-keep and power cells above), false keeps among null edits, and runs per experiment,
    with verdict.decide_flow itself deciding and the journal's bookkeeping done as trial.py does:
    the best's reference = every run of it (a new best's own runs, and the runs of it that later
    confirmations made where its reference was the thinner side), other commits' replicates for
    the sd, the baseline measured as the policy says (its runs counted too). P_GAIN < 1: a session where only
    that share of edits is a real EFFECT-sd gain."""
    import random
    from types import SimpleNamespace

    from autoresearch import verdict as V
    from autoresearch.journal.records import Experiment
    from autoresearch.trial.measure import Measurement

    rng = random.Random(seed)
    config = SimpleNamespace(verdict=policy, maximize=False, resource=SimpleNamespace(name=""),
                             metric=SimpleNamespace(holdout="", constraints=[]))
    runs = done = gains = gain_keeps = nulls = false_keeps = 0
    seq = 0

    def drive(exp: Experiment, levels: dict[str, float], log: list[tuple[str, float]]) -> V.Verdict:
        nonlocal runs
        history = [(c, v) for c, v in log[-200:]]
        groups: dict[str, list[float]] = {}
        for c, v in history:
            if c not in (exp.parent, exp.commit_sha):
                groups.setdefault(c, []).append(v)
        ss = sum(sum((v - statistics.fmean(g)) ** 2 for v in g) for g in groups.values() if len(g) > 1)
        df = sum(len(g) - 1 for g in groups.values() if len(g) > 1)
        ref_runs = [v for c, v in log if c == exp.parent]
        flow = V.decide_flow(config, exp, 0.0, reference=V.Reference(ref_runs[-64:], ss, df) if ref_runs else None)
        try:
            request = next(flow)
            while True:
                value = levels[request.commit] + rng.gauss(0.0, 1.0)
                runs += 1
                log.append((request.commit, value))
                request = flow.send(Measurement(ok=True, metric=value, metrics={"val_loss": value}))
        except StopIteration as stop:
            return stop.value

    while done < experiments:
        log: list[tuple[str, float]] = []
        seq += 1
        levels = {f"b{seq}": 100.0}
        base = Experiment(seq=seq, tag="t", status="running", started_at=0.0, commit_sha=f"b{seq}", parent="", is_baseline=True)
        drive(base, levels, log)
        best, best_metric = f"b{seq}", base.metric
        for _ in range(min(CHAIN * 2, experiments - done)):
            seq += 1
            gain = rng.random() < p_gain
            commit = f"c{seq}"
            levels[commit] = levels[best] - (effect if gain else 0.0)
            exp = Experiment(seq=seq, tag="t", status="running", started_at=0.0, commit_sha=commit, parent=best,
                             best_before=best_metric)
            verdict = drive(exp, levels, log)
            kept = verdict.status == "keep"
            gains, gain_keeps = gains + gain, gain_keeps + (gain and kept)
            nulls, false_keeps = nulls + (not gain), false_keeps + (kept and not gain)
            if kept:
                best, best_metric = commit, exp.metric
            done += 1
    keep_rate = gain_keeps / gains if gains else 0.0
    return keep_rate, (100 * false_keeps / nulls if nulls else 0.0), runs / done


def reference_main(experiments: int) -> None:
    policy = sim_policy('confirm = "reference"')
    print(f'confirm = "reference" through verdict.decide_flow ({experiments} experiments per cell; baseline runs counted; '
          f"confidence {policy.confidence}, reference_runs {policy.reference_runs}, max_runs {policy.max_runs})")
    _, aa, aa_runs = flow_cell(policy, 0.0, 11, experiments, p_gain=0.0)
    p1, _, r1 = flow_cell(policy, 1.0, 12, experiments)
    p2, _, r2 = flow_cell(policy, 2.0, 13, experiments)
    print(f"{'reference':18s} {aa:>10.1f}/100 {aa_runs:>8.2f} {p1 * 100:>8.1f}% {r1:>8.2f} {p2 * 100:>8.1f}% {r2:>8.2f}"
          "   (every edit a gain in the power cells)")
    for share in (0.15, 0.3):
        pm, fk, rm = flow_cell(policy, 2.0, 14, experiments, p_gain=share)
        print(f"  a session where {share:.0%} of edits are 2-sd gains: false keeps {fk:.2f} per 100 null edits, "
              f"power {pm * 100:.1f}%, {rm:.2f} runs per experiment")


# -- --bound: what a reference of the best could do (not a shipped policy) -------------------------

def bound_cell(effect: float, p_gain: float, alpha: float, ref_runs: int, seed: int, experiments: int = 20_000,
               chain: int = 40, delta: float = 2.0, futility: float = 0.1, cap: int = 12) -> tuple[float, float, float]:
    """An idealised policy: the run sd is KNOWN (1), the best keeps a reference of REF_RUNS runs
    (a new best's own confirmation runs, topped up), and a candidate that screens better is run
    again until a z-test likelihood ratio (design gain DELTA sds) passes 1/ALPHA or falls to
    FUTILITY. Each experiment is a real EFFECT-sd gain with probability P_GAIN (1.0: every one, as
    in the power cells above), else a null edit. Returns false keeps per 100 null edits, power on
    the gains (%), runs per experiment (top-ups included)."""
    import math
    import random

    rng = random.Random(seed)
    runs = nulls = false_keeps = gains = true_keeps = done = 0
    while done < experiments:
        level = 100.0
        ref = [level + rng.gauss(0, 1) for _ in range(ref_runs)]
        runs += ref_runs
        for _ in range(chain):
            gain = rng.random() < p_gain
            cand_level = level - (effect if gain else 0.0)
            cand = [cand_level + rng.gauss(0, 1)]
            runs, done = runs + 1, done + 1
            kept = False
            if cand[0] < statistics.fmean(ref):  # the one-run screen (minimize)
                while True:
                    se = math.sqrt(1 / len(cand) + 1 / len(ref))
                    z = (statistics.fmean(ref) - statistics.fmean(cand)) / se
                    lr = math.exp(delta / se * z - (delta / se) ** 2 / 2)
                    if lr >= 1 / alpha or lr <= futility or len(cand) >= cap:
                        kept = lr >= 1 / alpha
                        break
                    cand.append(cand_level + rng.gauss(0, 1))
                    runs += 1
            gains, true_keeps = gains + gain, true_keeps + (gain and kept)
            nulls, false_keeps = nulls + (not gain), false_keeps + (kept and not gain)
            if kept:
                level, ref = cand_level, list(cand)
                while len(ref) < ref_runs:
                    ref.append(level + rng.gauss(0, 1))
                    runs += 1
    return (100 * false_keeps / nulls if nulls else 0.0), (100 * true_keeps / gains if gains else 0.0), runs / done


def bound_main() -> None:
    print("an idealised reference policy (known sd, the best's reference reused; not a shipped policy):")
    print(f"{'cell':44s} {'false keeps':>12s} {'power':>7s} {'runs/exp':>9s}")
    for p_gain, alpha, ref_runs in ((1.0, 0.01, 4), (1.0, 0.05, 8), (0.15, 0.01, 8), (0.15, 0.05, 8), (0.15, 0.05, 12)):
        fk, power, runs = bound_cell(2.0, p_gain, alpha, ref_runs, seed=5)
        cell = f"2-sd gains {p_gain:.0%} of edits, alpha {alpha}, reference {ref_runs} runs"
        print(f"{cell:44s} {fk:>8.2f}/100 {power:>6.1f}% {runs:>9.2f}")


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
    elif "--bound" in sys.argv:
        bound_main()
    elif "--reference" in sys.argv:
        reference_main(SIM_EXPERIMENTS)
    else:
        sim_main()
        reference_main(SIM_EXPERIMENTS)
