"""No experiment measured twice: a candidate whose tree was measured before in this epoch takes
that record (a `duplicate` verdict) and costs no run; it still gets its record, its ref and its
results.tsv row. Attacks: the same edit again, a revert to an old keep, a repeated crash, a
proposer in the loop that keeps handing in the same change, a new epoch (must run again), and
crashes the machine may have caused (must run again)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ar, git, make_task, set_knob

from autoresearch.config.task import LoopSection
from autoresearch.executors.local import LocalExecutor
from autoresearch.journal.records import Experiment
from autoresearch.journal.results import render_tsv
from autoresearch.loop.driver import run_loop
from autoresearch.proposers import Proposal, ProposeContext
from autoresearch.trial.branch import new_epoch
from autoresearch.trial.duplicate import was_measured
from autoresearch.trial.lifecycle import experiment
from autoresearch.trial.session import Session


def run(root: Path, message: str) -> dict:
    out = ar(root, "experiment", "-m", message, "--json", check=False)
    return json.loads(out.stdout)


@pytest.mark.slow
def test_the_same_edit_twice_is_measured_once(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    set_knob(root, "LEARNING_RATE", "0.001")
    first = run(root, "lr 0.001")
    assert first["status"] == "discard"
    set_knob(root, "LEARNING_RATE", "0.001")
    again = run(root, "lr 0.001, once more")
    assert (again["status"], again["reason"]) == ("discard", "duplicate")
    assert again["details"]["duplicate_of"] == first["seq"]
    assert again["metric"] == first["metric"]
    assert again["commit_sha"] and again["commit_sha"] != first["commit_sha"]
    assert f"refs/autoresearch/t/{again['seq']}" in git(root, "for-each-ref", "--format=%(refname)")
    with Session.open(root) as s:
        assert s.journal.runs(seq=again["seq"]) == []  # no run spent
        assert len(s.journal.runs(seq=first["seq"])) >= 1
        tsv = (root / "results.tsv").read_text()
        assert tsv == render_tsv(s.journal.experiments("t"), "val_loss", s.config.resource.scale)
    row = tsv.splitlines()[-1].split("\t")
    assert row[3] == "discard" and row[4] == f"(duplicate of #{first['seq']}) lr 0.001, once more"
    assert float(row[1]) == pytest.approx(first["metric"], abs=1e-6)
    assert "LEARNING_RATE = 0.05" in (root / "train.py").read_text()  # the folder is back at the best
    # the git note carries the pointer, so a rebuilt journal still knows
    note = json.loads(git(root, "notes", "--ref", "autoresearch", "show", again["commit_sha"]))
    assert note["reason"] == "duplicate" and note["details"]["duplicate_of"] == first["seq"]


@pytest.mark.slow
def test_reverting_to_an_old_keep_and_repeating_a_crash_cost_no_run(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    set_knob(root, "LEARNING_RATE", "0.2")
    keep = run(root, "lr 0.2")
    assert keep["status"] == "keep"
    set_knob(root, "LEARNING_RATE", "0.05")  # the baseline's tree again: measured as seq 1
    back = run(root, "back to lr 0.05")
    assert (back["status"], back["reason"], back["details"]["duplicate_of"]) == ("discard", "duplicate", 1)
    train = root / "train.py"
    broken = train.read_text().replace("def train()", "raise RuntimeError('boom')\n\n\ndef train()")
    train.write_text(broken)
    crash = run(root, "boom")
    assert (crash["status"], crash["reason"]) == ("crash", "exit-1")
    train.write_text(broken)
    again = run(root, "boom again")
    assert (again["status"], again["reason"]) == ("crash", "duplicate")
    assert again["details"]["duplicate_of"] == crash["seq"] and "boom" in again["log_tail"]
    with Session.open(root) as s:
        assert s.journal.runs(seq=back["seq"]) == [] and s.journal.runs(seq=again["seq"]) == []
        assert s.journal.best("t").seq == keep["seq"]  # a duplicate never moves the best
    assert (root / "results.tsv").read_text().splitlines()[-1].split("\t")[3] == "crash"


@pytest.mark.slow
def test_a_new_epoch_measures_the_same_tree_again(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    set_knob(root, "LEARNING_RATE", "0.001")
    first = run(root, "lr 0.001")
    with Session.open(root) as s:
        new_epoch(s, "t", s.best_commit("t"), ["the environment changed"])
    assert ar(root, "baseline").returncode == 0
    set_knob(root, "LEARNING_RATE", "0.001")
    second = run(root, "lr 0.001 in the new epoch")
    assert second["reason"] != "duplicate" and second["metric"] is not None
    with Session.open(root) as s:
        assert len(s.journal.runs(seq=second["seq"])) >= 1
    assert first["seq"] < second["seq"]


class SameChange:
    """Hands in the same one-line change at every proposal (an agent stuck on one idea)."""

    name = "stuck"

    def propose(self, ctx: ProposeContext) -> Proposal:
        train = ctx.workspace.root / "train.py"
        train.write_text(train.read_text().replace("LEARNING_RATE = 0.05", "LEARNING_RATE = 0.001"))
        return Proposal(description="lr 0.001")


@pytest.mark.slow
def test_a_loop_proposer_repeating_itself_spends_one_run(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    with Session.open(root) as s:
        run_loop(s, lambda slot: SameChange(), LoopSection(max_experiments=3), LocalExecutor(1))
        exps = [e for e in s.journal.experiments("t") if not e.is_baseline]
        assert [e.reason for e in exps][1:] == ["duplicate", "duplicate"]
        assert all(e.details["duplicate_of"] == exps[0].seq for e in exps[1:])
        assert all(s.journal.runs(seq=e.seq) == [] for e in exps[1:])
        assert all(e.commit_sha for e in exps)


@pytest.mark.slow
def test_the_native_face_reuses_in_process_too(tmp_path: Path) -> None:
    """The same through the library call (not the CLI), and a kill-free check of the tree record."""
    root = make_task(tmp_path)
    with Session.open(root) as s:
        set_knob(root, "LEARNING_RATE", "0.001")
        first = experiment(s, "lr 0.001")
        set_knob(root, "LEARNING_RATE", "0.001")
        second = experiment(s, "lr 0.001 again")
        assert first.details["tree"] == second.details["tree"] == git(root, "rev-parse", f"{second.commit_sha}^{{tree}}").strip()
        assert second.reason == "duplicate" and s.journal.runs(seq=second.seq) == []


def record(status: str, reason: str, **details: object) -> Experiment:
    return Experiment(seq=5, tag="t", status=status, started_at=0.0, reason=reason, metric=1.0 if status in
                      ("keep", "discard") else None, details=dict(details))


@pytest.mark.parametrize("status, reason, details, measured", [
    ("discard", "not-better", {}, True),
    ("keep", "improved", {}, True),
    ("discard", "constraint", {}, True),
    ("crash", "exit-1", {}, True),
    ("crash", "missing-metric", {}, True),
    ("discard", "stale-replayed", {}, False),  # never compared with the best it would replace
    ("discard", "duplicate", {}, False),  # points at the original, which comes first
    ("crash", "exit-137", {}, False),  # the OOM killer or a neighbour: the machine, maybe
    ("crash", "timeout", {}, False),
    ("crash", "interrupted", {}, False),
    ("crash", "exit-1", {"interrupted": True}, False),
    ("crash", "agent-error", {}, False),
    ("rejected", "out-of-scope", {}, False),
    ("rejected", "over-budget", {}, False),
])
def test_what_counts_as_measured(status: str, reason: str, details: dict, measured: bool) -> None:
    assert was_measured(record(status, reason, **details)) is measured
