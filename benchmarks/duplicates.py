"""How many runs "no experiment measured twice" saves in a `tune` session on the `example` task.

Two sessions of EXPERIMENTS experiments each, after the baseline, on fresh `example` tasks (run
through the library's native experiment, the same lifecycle as the loop):

  plain TPE  the tune proposer with its memory of tried points switched off: Optuna's TPE as a
             plain script would use it (ask, write the point, measure). Every proposal whose
             tree was measured before gets the `duplicate` verdict and no run: the count is the
             runs that the lifecycle's check saves, and their seconds are what a plain loop
             would have spent measuring them again.
  tune       the shipped proposer: a point already tried is never proposed (it asks TPE again
             or moves one knob at random). Counted: how many of its proposals would have been
             a repeat had it taken TPE's first answer (computed on copies of the study and the
             random generator, so the session is not disturbed), and duplicates (expected 0).

Printed per session: runs made, duplicates (runs saved), TPE's repeats that tune avoided,
near-duplicates (a knob moved to within 10 % of a value it had before: what the brief flags for
a model-driven agent), the median run's seconds and the session's wall time. Reproducible for a seed (the harness seeds each run).

Run: .venv/bin/python benchmarks/duplicates.py               (EXPERIMENTS=30, about two minutes on 2 cores)
     .venv/bin/python benchmarks/duplicates.py --experiments 5   (a check that it runs)
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from autoresearch.proposers import ProposeContext  # noqa: E402
from autoresearch.proposers.changes import changes_between  # noqa: E402
from autoresearch.proposers.digest import NEAR  # noqa: E402
from autoresearch.proposers.knobs import Knob  # noqa: E402
from autoresearch.proposers.tune import TuneOptions, TuneProposer  # noqa: E402
from autoresearch.proposers.tune_space import normalize  # noqa: E402
from autoresearch.trial.lifecycle import ProposalInfo, experiment  # noqa: E402
from autoresearch.trial.session import Session  # noqa: E402

EXPERIMENTS = 30  # after the baseline
SEEDS = (0, 1, 2)  # tune seeds: one session of each kind per seed
CLI = [sys.executable, "-m", "autoresearch"]


class PlainTPE(TuneProposer):
    """TPE's first answer, whatever was measured before (no memory of tried points)."""

    def choose(self, study: Any, knobs: dict[str, Knob], tried: set[tuple], rng: random.Random,
               log: list[str]) -> dict[str, Any]:
        return super().choose(study, knobs, set(), rng, log)


class CountingTune(TuneProposer):
    """The shipped proposer; counts the proposals where TPE's first answer was a tried point."""

    would_repeat = 0

    def choose(self, study: Any, knobs: dict[str, Knob], tried: set[tuple], rng: random.Random,
               log: list[str]) -> dict[str, Any]:
        first = TuneProposer.choose(self, copy.deepcopy(study), knobs, set(), copy.deepcopy(rng), [])
        point = {**{key: k.value for key, k in knobs.items()}, **first}
        if tuple(normalize(point[k]) for k in sorted(knobs)) in tried:
            self.would_repeat += 1
        return super().choose(study, knobs, tried, rng, log)


def make_task(parent: Path, template: str) -> Path:
    root = parent / "task"
    env = {**os.environ, "AUTORESEARCH_CACHE": str(parent / "cache")}
    for args, cwd in ((["init", str(root), "--template", template], parent), (["start", "--tag", "t"], root),
                      (["baseline"], root)):
        proc = subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"autoresearch {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return root


def near_repeats(s: Session, exps: list) -> int:
    """Experiments that moved a numeric knob to within NEAR (relative) of a value it had at an
    earlier experiment's commit, not to that value itself: what the brief flags as near-duplicates."""
    seen: dict[str, list[float]] = {}
    count = 0
    for e in exps:
        moved = changes_between(s.ws, e.parent, e.commit_sha)["knobs"]
        near = False
        for name, (old, new) in moved.items():
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new)):
                continue
            values = seen.setdefault(name, [float(old)])
            near |= any(v != new and abs(new - v) <= NEAR * max(abs(v), abs(new)) for v in values)
            values.append(float(new))
        count += near
    return count


def session(kind: type[TuneProposer], experiments: int, seed: int, template: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["AUTORESEARCH_CACHE"] = str(Path(tmp) / "cache")
        root = make_task(Path(tmp), template)
        started = time.perf_counter()
        with Session.open(root) as s:
            proposer = kind(s.config, TuneOptions(seed=seed))
            for _ in range(experiments):
                tag = s.require_tag()
                seq = s.journal.next_seq()
                run_dir = s.run_dir(seq)
                ctx = ProposeContext(config=s.config, workspace=s.ws, brief="", brief_path=run_dir / "brief.md",
                                     log_path=run_dir / "agent.log", seq=seq, best_commit=s.best_commit(tag),
                                     best_metric=None, history=s.journal.experiments(tag, limit=15),
                                     task_root=root)
                proposal = proposer.propose(ctx)
                experiment(s, proposal.description, info=ProposalInfo(proposer="tune"))
            exps = [e for e in s.journal.experiments("t") if not e.is_baseline]
            runs = [r for e in exps for r in s.journal.runs(seq=e.seq)]
            near = near_repeats(s, exps)
        return {"experiments": len(exps), "runs": len(runs),
                "duplicates": sum(e.reason == "duplicate" for e in exps), "near": near,
                "would_repeat": getattr(proposer, "would_repeat", None),
                "run_s": statistics.median(r["seconds"] for r in runs) if runs else float("nan"),
                "wall_s": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiments", type=int, default=EXPERIMENTS)
    parser.add_argument("--template", default="example", help="example (continuous knobs) or compress (a grid)")
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} (1 min)")
    print(f"template {args.template}, {args.experiments} experiments per session after the baseline")
    print("proposer   seed  runs  duplicates (no run)  TPE's first answer repeated  near-duplicates  median run s  wall s")
    for seed in SEEDS:
        for name, kind in (("plain TPE", PlainTPE), ("tune", CountingTune)):
            r = session(kind, args.experiments, seed, args.template)
            repeat = "-" if r["would_repeat"] is None else str(r["would_repeat"])
            print(f"{name:10s} {seed:4d}  {r['runs']:4d}  {r['duplicates']:19d}  {repeat:>27s}  {r['near']:15d}  "
                  f"{r['run_s']:12.2f}  {r['wall_s']:6.1f}")


if __name__ == "__main__":
    main()
