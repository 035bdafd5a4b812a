"""`review --program`: the next program.md drafted from a recorded session, as a diff `git apply`
takes or written with --apply; a new tag started with it still gives its agents the old run's log."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import ar, git, make_task, set_knob

from autoresearch.config.task import LoopSection
from autoresearch.executors.local import LocalExecutor
from autoresearch.journal.records import Experiment
from autoresearch.loop.driver import run_loop
from autoresearch.proposers import Proposal, ProposeContext
from autoresearch.report.program_review import lessons, section, with_lessons
from autoresearch.trial.session import Session


def recorded_session(tmp_path: Path) -> Path:
    """A dead end tried three times (LEARNING_RATE down) and a direction that won twice (STEPS up)."""
    root = make_task(tmp_path)
    for value in ("0.001", "0.002", "0.003"):
        set_knob(root, "LEARNING_RATE", value)
        assert json.loads(ar(root, "experiment", "-m", f"lr {value}", "--json", check=False).stdout)["status"] == "discard"
    for steps in ("400", "800"):
        set_knob(root, "STEPS", steps)
        assert json.loads(ar(root, "experiment", "-m", f"steps {steps}", "--json", check=False).stdout)["status"] == "keep"
    return root


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.briefs: list[str] = []

    def propose(self, ctx: ProposeContext) -> Proposal:
        self.briefs.append(ctx.brief)
        train = ctx.workspace.root / "train.py"
        train.write_text(train.read_text().replace("MOMENTUM = 0.0", "MOMENTUM = 0.5"))
        return Proposal(description="momentum 0.5")


@pytest.mark.slow
def test_review_program_drafts_a_patch_that_applies_and_a_new_tag_keeps_the_log(tmp_path: Path) -> None:
    root = recorded_session(tmp_path)
    log = ar(root, "review", "--log").stdout  # what a native agent can read
    assert "Dead ends" in log and "- LEARNING_RATE down: 3 tried (3 discard)" in log
    assert "Live leads" in log and "STEPS up" in log and "#1 baseline" in log
    before = (root / "program.md").read_text()
    out = ar(root, "review", "--program")
    patch = out.stdout
    assert patch.startswith("--- a/program.md\n+++ b/program.md\n")
    assert "+## Lessons from run `t`" in patch
    assert "+- LEARNING_RATE down: tried 3 times, never kept" in patch and '"lr 0.001" (#2)' in patch
    assert "+- STEPS up: 2 of 2 tries kept" in patch
    assert (root / "program.md").read_text() == before  # only printed
    check = subprocess.run(["git", "apply", "--check", "-"], cwd=root, input=patch, text=True, capture_output=True)
    assert check.returncode == 0, check.stderr

    applied = ar(root, "review", "--program", "--apply")
    assert "autoresearch start --tag NEW" in applied.stdout
    text = (root / "program.md").read_text()
    assert text.startswith(before.rstrip()) and "## Lessons from run `t`" in text
    ar(root, "review", "--program", "--apply")  # drafting again replaces the section, never doubles it
    assert (root / "program.md").read_text().count("## Lessons from run `t`") == 1
    assert ar(root, "review", "--apply", check=False).returncode == 2

    notes = root / ".autoresearch" / "notes" / "t.md"  # what the old run's agent left
    notes.parent.mkdir(parents=True, exist_ok=True)
    notes.write_text("momentum never helped past 0.5\n")
    ar(root, "start", "--tag", "t2")
    assert "## Lessons from run `t`" in git(root, "show", "HEAD:program.md")  # committed and locked for t2
    recorder = Recorder()
    with Session.open(root) as s:
        run_loop(s, lambda slot: recorder, LoopSection(max_experiments=1), LocalExecutor(1))
    brief = recorder.briefs[0]
    assert "## Research log of the previous run `t`" in brief and "LEARNING_RATE down" in brief
    assert "## Lessons from run `t`" in brief  # the new program.md is what the agent reads
    assert "momentum never helped past 0.5" in brief  # the new run starts from the old run's notes


def test_nothing_to_add_says_so(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    out = ar(root, "review", "--program")
    assert out.stdout.startswith("nothing to add to program.md yet")
    assert not git(root, "status", "--porcelain").strip()


def exp(seq: int, status: str, metric: float | None, best_before: float) -> Experiment:
    return Experiment(seq=seq, tag="t", status=status, started_at=0.0, metric=metric, best_before=best_before,
                      description=f"move {seq}")


def test_a_knob_whose_moves_stayed_within_the_noise_never_mattered() -> None:
    history = [Experiment(seq=1, tag="t", status="keep", started_at=0.0, metric=2.0, is_baseline=True)]
    changes: dict[int, dict] = {}
    for seq, (value, metric) in enumerate([(0.1, 2.0004), (0.5, 1.9997), (0.9, 2.0002)], start=2):
        history.append(exp(seq, "discard", metric, 2.0))
        changes[seq] = {"knobs": {"MOMENTUM": [0.0, value]}, "regions": []}
    found = lessons(history, changes, maximize=False, noise=0.001)
    assert found.flat == ["- MOMENTUM: 3 moves, the largest effect 0.0004 against a noise sd of 0.001."]
    assert lessons(history, changes, maximize=False, noise=0.0).flat == []  # unknown noise: no claim
    big = lessons(history, changes, maximize=False, noise=0.0001)
    assert big.flat == []  # effects beyond the noise: it mattered


def test_the_section_goes_at_the_end_and_replaces_its_own_earlier_draft() -> None:
    found = lessons([], {}, maximize=False, noise=0.0)
    found.failed = ["- X up: tried 3 times"]
    program = "# Program\n\nTry things.\n\n## Lessons from run `t`\n\nold draft\n\n## Later\n\nkept\n"
    new = with_lessons(program, "t", section("t", found, when=0))
    assert "old draft" not in new and "- X up: tried 3 times" in new and new.endswith("## Later\n\nkept\n")
    assert with_lessons("", "u", "## Lessons from run `u`\n") == "## Lessons from run `u`\n"
