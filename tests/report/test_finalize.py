"""`finalize` on a real repository: a clean branch of the keeps, conflicts reported, never forced."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import git, git_env
from report.test_report import PLAN, rep, research_copy

from autoresearch.journal.store import Journal

pytestmark = pytest.mark.slow  # a real run through the CLI


@pytest.fixture(scope="module")
def research(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return research_copy(tmp_path_factory, "finalize")


def _state(root: Path) -> tuple[str, str, str]:
    return (git(root, "rev-parse", "HEAD").strip(), git(root, "symbolic-ref", "HEAD").strip(),
            git(root, "status", "--porcelain"))


def test_finalize_makes_one_commit_per_keep_on_the_start(research: Path) -> None:
    before = _state(research)
    data = json.loads(rep(research, "finalize", "--json").stdout)
    assert data["ok"] and data["branch"] == "autoresearch/t-final"
    start = Journal(research / ".autoresearch").get_meta("start:t")
    assert data["start"] == start
    assert [a["seq"] for a in data["applied"]] == [2, 6, 7]
    assert data["skipped"] == [{"seq": 1, "why": "baseline (no change)"}]
    assert data["matches_best"] is True
    # The branch: start, then the three keeps in order, each with its description and delta.
    log = git(research, "log", "--reverse", "--format=%H%x00%B%x01", f"{start}..autoresearch/t-final")
    commits = [c.strip("\n").split("\0") for c in log.split("\x01") if c.strip()]
    assert len(commits) == 3
    assert git(research, "rev-parse", "autoresearch/t-final~3").strip() == start
    for (sha, body), seq in zip(commits, (2, 6, 7)):
        assert body.startswith(PLAN[seq][1] + "\n")
        assert "val_loss: " in body and "(delta -" in body and f"autoresearch-seq: {seq}" in body
        # Each commit's change is exactly the experiment's change against its parent.
        mine = git(research, "diff", f"{sha}^", sha)
        theirs = git(research, "diff", f"refs/autoresearch/t/{seq}^", f"refs/autoresearch/t/{seq}")
        assert mine == theirs
    # Same files as the best; the work tree, index and checked-out branch are untouched.
    assert git(research, "rev-parse", "autoresearch/t-final^{tree}") == git(research, "rev-parse", "autoresearch/t^{tree}")
    assert _state(research) == before

    # A second finalize does not overwrite the branch without --force.
    again = rep(research, "finalize", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    text = rep(research, "finalize", "--force").stdout
    assert "3 commits" in text and "the final tree matches the best commit" in text


def test_finalize_reports_a_conflict_and_never_forces_it(research: Path) -> None:
    # Move the start to a commit whose train.py disagrees with the first keep's hunk, as if the
    # code had changed under the run: the learning rate line no longer says 0.05.
    journal = Journal(research / ".autoresearch")
    start = journal.get_meta("start:t")
    text = git(research, "show", f"{start}:train.py").replace("LEARNING_RATE = 0.05", "LEARNING_RATE = 0.07")
    env = {**git_env(), "GIT_INDEX_FILE": str(research / ".autoresearch" / "test-index")}

    def g(*args: str, input: str | None = None) -> str:
        return subprocess.run(["git", *args], cwd=research, env=env, input=input, capture_output=True, text=True,
                              check=True).stdout.strip()

    blob = g("hash-object", "-w", "--stdin", input=text)
    g("read-tree", start)
    g("update-index", "--cacheinfo", f"100644,{blob},train.py")
    moved = g("commit-tree", g("write-tree"), "-p", start, "-m", "someone changed the learning rate")
    os.unlink(env["GIT_INDEX_FILE"])
    journal.set_meta("start:t", moved)
    try:
        proc = rep(research, "finalize", "--force", check=False)
        assert proc.returncode == 1
        assert "CONFLICT seq 2 (train.py)" in proc.stdout and "stopped at seq 2" in proc.stdout
        # Nothing was forced: the branch stops at the (moved) start, before the conflicting keep.
        assert git(research, "rev-parse", "autoresearch/t-final").strip() == moved
        assert git(research, "status", "--porcelain") == ""

        data = json.loads(rep(research, "finalize", "--force", "--skip-conflicts", "--json", check=False).stdout)
        # Seq 7 touches the lines next to the moved one, so it conflicts too; seq 6 applies on its own.
        assert not data["ok"] and [c["seq"] for c in data["conflicts"]] == [2, 7]
        assert [a["seq"] for a in data["applied"]] == [6]
        assert data["matches_best"] is False and data["differs_from_best"] == ["train.py"]
        final_train = git(research, "show", "autoresearch/t-final:train.py")
        assert "LEARNING_RATE = 0.07" in final_train and "MOMENTUM = 0.5" in final_train
        assert "DEGREE = 3" in final_train
    finally:
        journal.set_meta("start:t", start)
