"""One experiment lifecycle: the behaviours that once drifted between the sequential and the
parallel loop are the same with 1 slot and with 2, because there is one `Trial` and one driver.

- a failed proposal's tokens are recorded;
- `lines_delta` is computed for every committed experiment (not only with `simplicity` on);
- results.tsv edited behind the loop's back is regenerated from the journal when the next
  experiment settles, and every row has a commit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ar, git, make_task

from autoresearch.config.task import LoopSection
from autoresearch.executors.local import LocalExecutor
from autoresearch.journal.results import render_tsv
from autoresearch.loop.driver import run_loop
from autoresearch.proposers import Proposal, ProposeContext, ProposerError
from autoresearch.trial.session import Session


class Scripted:
    """seq 2: fails after spending tokens; later seqs: add two lines to train.py, and at seq 3
    scribble a fake row into the real results.tsv (an in-process proposer is not sandboxed)."""

    name = "scripted"

    def propose(self, ctx: ProposeContext) -> Proposal:
        if ctx.seq == 2:
            err = ProposerError("agent-error", "the model gave up")
            err.tokens_in, err.tokens_out, err.cost_usd = 11, 7, 0.5  # type: ignore[attr-defined]
            raise err
        train = ctx.workspace.root / "train.py"
        train.write_text(train.read_text() + f"\nNOTE_{ctx.seq} = 1\nOTHER_{ctx.seq} = 2\n")
        if ctx.seq == 3 and ctx.task_root is not None:
            tsv = ctx.task_root / "results.tsv"
            tsv.write_text(tsv.read_text() + "abcdef0\t0.000001\t0.0\tkeep\ttampered\n")
        return Proposal(description=f"two lines ({ctx.seq})", tokens_in=3, tokens_out=2)


@pytest.mark.slow
@pytest.mark.parametrize("slots", [1, 2])
def test_the_same_lifecycle_with_one_slot_and_with_two(tmp_path: Path, slots: int) -> None:
    root = make_task(tmp_path)
    with Session.open(root) as s:
        result = run_loop(s, lambda slot: Scripted(), LoopSection(max_experiments=3), LocalExecutor(slots))
        assert result.stopped_because == "3 experiments done"
        exps = {e.seq: e for e in s.journal.experiments("t")}
        failed = exps[2]
        assert (failed.status, failed.reason) == ("crash", "agent-error")
        assert (failed.tokens_in, failed.tokens_out, failed.cost_usd) == (11, 7, 0.5)
        assert failed.commit_sha  # every attempt is a commit, a failed proposal too
        for seq in (3, 4):
            assert exps[seq].lines_delta == 2, (slots, seq, exps[seq].lines_delta)
        assert any(e.details.get("results_tsv_repaired") for e in exps.values())
        tsv = (root / "results.tsv").read_text()
        assert "tampered" not in tsv
        assert tsv == render_tsv(s.journal.experiments("t"), "val_loss", s.config.resource.scale)
        assert all(len(line.split("\t")[0]) == 7 for line in tsv.splitlines()[1:])


@pytest.mark.slow
def test_a_new_harness_for_a_new_tag_is_one_step(tmp_path: Path) -> None:
    """`lock` on a branch with experiments refuses a changed harness and names the way out;
    `start --tag NEW` commits and locks it there, with no circle and no traceback."""
    root = make_task(tmp_path)
    prepare = root / "prepare.py"
    prepare.write_text(prepare.read_text().replace("N_VAL = 256", "N_VAL = 128"))
    refused = ar(root, "lock", check=False)
    assert refused.returncode == 1 and "autoresearch start --tag NEW" in refused.stderr
    out = ar(root, "start", "--tag", "smallval")
    assert "autoresearch/smallval" in out.stdout
    assert ar(root, "verify").returncode == 0
    assert "N_VAL = 128" in git(root, "show", "HEAD:prepare.py")
    assert "N_VAL = 256" in git(root, "show", "autoresearch/t:prepare.py")  # the old run is untouched
    assert ar(root, "baseline", "--json").returncode == 0
