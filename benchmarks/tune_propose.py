"""How long `tune` takes to propose, the loop's own time between runs, on tinylm's train.py.

Issue 23 measured 3.5-10.5 s per proposal on a real project, as long as a run. Most of it was
parsing: libcst (a concrete syntax tree with positions, which knob discovery and editing need)
parsed the best's files at every proposal and every past experiment's commit once, 0.3-1.7 s
per parse of a 300-line file. Now past commits' values are read with Python's own parser
(proposers/knobs_read.py) and the best's listing is parsed once per content.

What it does: two tinylm task folders (init from the template, start, a baseline record), one
proposer each, as a long-running loop holds them. Round robin A B A B: the same proposal step in
each folder, the experiment then recorded through the real Trial (its commit, a discard or every
KEEP_EVERY-th a keep, with a made-up metric; nothing is run), so the history grows as in a loop.
  new  the code as it is
  old  the code as it was: every past commit parsed with libcst, the listing parsed every time
Prints the median and max proposal time of each, over the proposals after the first (the first
reads the whole history either way), and their ratio.

Run: .venv/bin/python benchmarks/tune_propose.py [--proposals 20]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from autoresearch.config.task import load_config
from autoresearch.proposers import knobs as knobs_module
from autoresearch.proposers import tune as tune_module
from autoresearch.proposers.base import ProposeContext
from autoresearch.proposers.knobs import knob_values
from autoresearch.proposers.tune import TuneProposer
from autoresearch.scaffold import init_from_template
from autoresearch.trial.branch import start
from autoresearch.trial.lifecycle import Trial
from autoresearch.trial.session import Session
from autoresearch.verdict.stats import Verdict

KEEP_EVERY = 5


def task(where: Path, name: str) -> Session:
    root = where / name
    init_from_template(root, "tinylm")
    session = Session(load_config(root))
    start(session, "bench")
    trial = Trial.begin(session, tag="bench", parent=session.best_commit("bench"), description="baseline")
    trial.commit(session.ws.tree_of(session.best_commit("bench")))
    trial.exp.metric = 1.6
    trial.settle(Verdict("keep", "baseline"))
    return session


def step(session: Session, proposer: TuneProposer, index: int, rng: random.Random, old: bool) -> float:
    """One proposal (timed), then its experiment recorded as the loop would."""
    best = session.best_commit("bench")
    files = session.config.editable_files(session.root)
    saved = {f: (session.root / f).read_text() for f in files}
    ctx = ProposeContext(config=session.config, workspace=session.ws, brief="", brief_path=session.root / "brief.md",
                         log_path=session.state_dir / "agent.log", seq=index + 2, best_commit=best, best_metric=None,
                         history=session.journal.experiments("bench"), task_root=session.root)
    if old:
        knobs_module._scan_once.cache_clear()
        tune_module.read_values = knob_values  # type: ignore[assignment]
    try:
        began = time.perf_counter()
        proposal = proposer.propose(ctx)
        took = time.perf_counter() - began
    finally:
        tune_module.read_values = NEW_READ  # type: ignore[assignment]
    trial = Trial.begin(session, tag="bench", parent=best, description=proposal.description)
    trial.commit(session.ws.snapshot(best))
    keep = (index + 1) % KEEP_EVERY == 0
    trial.exp.metric = 1.6 - 0.01 * index if keep else 1.6 + rng.random()
    trial.settle(Verdict("keep" if keep else "discard", "improved" if keep else "not-better"))
    if not keep:  # the folder shows the best again
        for f, text in saved.items():
            (session.root / f).write_text(text)
    return took


NEW_READ = tune_module.read_values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--proposals", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tune-bench-") as tmp:
        sessions = {"new": task(Path(tmp), "new"), "old": task(Path(tmp), "old")}
        proposers = {name: TuneProposer(s.config) for name, s in sessions.items()}
        rngs = {name: random.Random(1) for name in sessions}
        times: dict[str, list[float]] = {"new": [], "old": []}
        for i in range(args.proposals):
            for name in ("new", "old"):  # A B A B: a burst of load elsewhere hits both alike
                times[name].append(step(sessions[name], proposers[name], i, rngs[name], old=name == "old"))
        for s in sessions.values():
            s.close()
    for name, values in times.items():
        later = values[1:]
        print(f"{name}: first {values[0]:.3f} s, then median {statistics.median(later):.3f} s, "
              f"max {max(later):.3f} s over {len(later)} proposals")
    ratio = statistics.median(times["old"][1:]) / statistics.median(times["new"][1:])
    print(f"old / new (medians after the first): {ratio:.1f}x")


if __name__ == "__main__":
    main()
