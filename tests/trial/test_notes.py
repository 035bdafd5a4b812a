"""The journal rebuilt from git notes: notes of an older version (a subset of the row, no
runs, no tag state) still give back the rows, the best and a start commit `finalize` uses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import ar, make_task, set_knob

OLD_FIELDS = ("seq", "tag", "status", "reason", "parent", "description", "proposer", "metric", "best_before",
              "is_baseline", "slot", "started_at", "finished_at")


@pytest.mark.slow
def test_notes_of_an_older_version_still_rebuild_a_journal_finalize_can_use(tmp_path: Path) -> None:
    root = make_task(tmp_path)
    set_knob(root, "LEARNING_RATE", "0.03")
    ar(root, "experiment", "-m", "lr 0.03", check=False)
    before = json.loads(ar(root, "results", "--json").stdout)
    for record in before:  # rewrite each note as the older version wrote it
        old = {k: record[k] for k in OLD_FIELDS}
        subprocess.run(["git", "notes", "--ref=autoresearch", "add", "-f", "-F", "-", record["commit_sha"]],
                       cwd=root, input=json.dumps(old), text=True, check=True, capture_output=True)
    for name in ("journal.db", "journal.db-wal", "journal.db-shm"):
        (root / ".autoresearch" / name).unlink(missing_ok=True)
    ar(root, "repair")
    after = json.loads(ar(root, "results", "--json").stdout)
    assert [(r["seq"], r["status"], r["metric"], r["commit_sha"]) for r in after] == \
        [(r["seq"], r["status"], r["metric"], r["commit_sha"]) for r in before]
    out = json.loads(ar(root, "finalize", "--json").stdout)
    assert out["start"] == before[0]["parent"]
