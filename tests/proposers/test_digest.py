"""The research log in the brief: bounded at any history length, an idea tried three times and
never better shows once (as a dead end), a knob that keeps winning is a live lead, near-duplicate
values are flagged, repeats point at what they repeated, and the best's lineage is there."""

from __future__ import annotations

import random

from conftest import make_task

from autoresearch.config.task import load_config
from autoresearch.journal.records import Experiment
from autoresearch.proposers.brief import build_brief
from autoresearch.proposers.digest import DIGEST_MAX_CHARS, research_digest

REGIONS = ["train.py:Block.forward", "train.py:Attention.forward", "train.py:train", "train.py (top level)",
           "train.py:MLP.__init__", "train.py:norm", "train.py:schedule", "train.py:init_weights"]
KNOBS = ["LEARNING_RATE", "DEPTH", "WIDTH", "WARMUP", "DROPOUT", "BATCH", "WEIGHT_DECAY", "BETA2"]


def exp(seq: int, status: str, metric: float | None, best_before: float | None, description: str = "",
        reason: str = "", **details: object) -> Experiment:
    return Experiment(seq=seq, tag="t", status=status, started_at=float(seq), reason=reason, metric=metric,
                      best_before=best_before, description=description or f"experiment {seq}",
                      commit_sha=f"{seq:07x}" + "0" * 33, details=dict(details), is_baseline=seq == 1)


def long_history(n: int, seed: int = 0) -> tuple[list[Experiment], dict[int, dict]]:
    """N experiments after a baseline: knob moves and code edits, keeps, discards, crashes,
    rejections and repeats, with descriptions up to 300 characters (minimize)."""
    rng = random.Random(seed)
    best = 3.0
    history = [exp(1, "keep", best, None, "baseline")]
    changes: dict[int, dict] = {1: {"knobs": {}, "regions": []}}
    for seq in range(2, n + 2):
        change: dict = {"knobs": {}, "regions": []}
        if rng.random() < 0.6:
            for knob in rng.sample(KNOBS, rng.choice([1, 1, 2, 3])):
                change["knobs"][knob] = [round(rng.uniform(0.001, 10), 4), round(rng.uniform(0.001, 10), 4)]
        else:
            change["regions"] = rng.sample(REGIONS, rng.choice([1, 2]))
        changes[seq] = change
        roll = rng.random()
        words = " ".join(rng.choice(["try", "larger", "rotary", "warmup", "norm", "gelu"]) for _ in range(60))
        if roll < 0.08:
            history.append(exp(seq, "keep", best - 0.01, best, words))
            best -= 0.01
        elif roll < 0.75:
            history.append(exp(seq, "discard", best + rng.uniform(-0.002, 0.05), best, words))
        elif roll < 0.85:
            history.append(exp(seq, "crash", None, best, words, reason="exit-1"))
        elif roll < 0.93:
            history.append(exp(seq, "discard", best + 0.02, best, words, reason="duplicate", duplicate_of=seq - 1))
        else:
            history.append(exp(seq, "rejected", None, best, words, reason="out-of-scope"))
    return history, changes


def test_the_digest_is_bounded_at_a_thousand_experiments() -> None:
    sizes = {}
    for n in (10, 100, 1000):
        history, changes = long_history(n)
        best = [e for e in history if e.status == "keep"][-1]
        text = research_digest(history, changes, metric="val_loss", maximize=False, noise=0.005, best=best)
        sizes[n] = len(text)
        assert len(text) <= DIGEST_MAX_CHARS
        assert f"all {n} experiments" in text
    assert sizes[1000] / 4 <= 1_750  # tokens, at about 4 characters a token
    assert sizes[10] < sizes[1000]  # it says more with more history, up to its bound


def test_the_whole_brief_is_bounded_at_a_thousand_experiments(tmp_path) -> None:
    root = make_task(tmp_path, start=False)
    config = load_config(root)
    history, changes = long_history(1000)
    best = [e for e in history if e.status == "keep"][-1]
    digest = research_digest(history, changes, metric="val_loss", maximize=False, noise=0.005, best=best)
    brief = build_brief(config, (root / "program.md").read_text(), best=best, best_commit=best.commit_sha,
                        history=history[-16:], files=["train.py"], digest=digest, notes="n" * 4000,
                        notes_file="notes.md")
    assert "## Research log" in brief and "## Your notes (notes.md)" in brief
    assert len(brief) / 4 <= 6_000


def test_a_dead_end_tried_three_times_appears_once_as_a_dead_end() -> None:
    history = [exp(1, "keep", 2.0, None, "baseline")]
    changes: dict[int, dict] = {1: {"knobs": {}, "regions": []}}
    for seq, value in ((2, 2.1), (3, 2.05), (4, 2.2)):  # worse each time (minimize)
        history.append(exp(seq, "discard", value, 2.0, "linear attention instead of softmax"))
        changes[seq] = {"knobs": {}, "regions": ["train.py:Attention.forward"]}
    history.append(exp(5, "keep", 1.9, 2.0, "LEARNING_RATE 0.05 -> 0.08"))
    changes[5] = {"knobs": {"LEARNING_RATE": [0.05, 0.08]}, "regions": []}
    text = research_digest(history, changes, metric="val_loss", maximize=False, noise=0.01, best=history[-1])
    assert text.count("train.py:Attention.forward") == 1
    dead = text.split("Dead ends")[1].split("\n\n")[0]
    assert "train.py:Attention.forward: 3 tried (3 discard)" in dead
    assert "best -0.05 (#3)" in dead and "over 3" in dead  # effect size, with its spread
    leads = text.split("Live leads")[1].split("\n\n")[0]
    assert "LEARNING_RATE up" in leads and "Attention" not in leads
    assert "#1 baseline" in text and "#5 LEARNING_RATE 0.05 -> 0.08" in text  # the lineage


def test_near_duplicates_and_repeats_are_flagged() -> None:
    history = [exp(1, "keep", 2.0, None, "baseline")]
    changes: dict[int, dict] = {1: {"knobs": {}, "regions": []}}
    for seq, value, metric in ((2, 0.08, 2.003), (3, 0.082, 2.004), (4, 0.3, 2.5)):
        history.append(exp(seq, "discard", metric, 2.0))
        changes[seq] = {"knobs": {"LEARNING_RATE": [0.05, value]}, "regions": []}
    history.append(exp(5, "discard", 2.003, 2.0, reason="duplicate", duplicate_of=2))
    changes[5] = changes[2]
    text = research_digest(history, changes, metric="val_loss", maximize=False, noise=0.01)
    assert "LEARNING_RATE 0.08 (#2) ≈ 0.082 (#3)" in text
    assert "0.3" not in text.split("Near-duplicates")[1]  # far apart: not a near-duplicate
    assert "#5=#2" in text and "1 repeat" in text


def test_nothing_tried_yet_is_no_digest() -> None:
    baseline = exp(1, "keep", 2.0, None, "baseline")
    failed = exp(2, "crash", None, 2.0, reason="agent-error")
    assert research_digest([baseline, failed], {}, metric="m", maximize=False) == ""
