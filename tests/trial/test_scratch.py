"""The quarantine is bounded: an agent that writes a big file every experiment cannot fill the disk.

In the loop, whatever an agent writes outside the editable files is copied to the experiment's
quarantine for review. A real `command:` agent, driven through the real CLI, writes a file three
times `[budget] max_new_file_bytes` and a small one in every proposal: the big one is not copied
(the record lists its size and sha256), the small one is, one experiment's copies stay under the
cap, and the copies of experiments older than `[budget] keep_outputs` are pruned with their
outputs while their listing stays.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from pathlib import Path

import pytest
from conftest import ar, make_task

CAP = 4096
BIG = b"B" * (3 * CAP)

AGENT = r'''import random
from pathlib import Path
train = Path("train.py")
train.write_text(train.read_text().replace("STEPS = 200", f"STEPS = {random.randint(5, 60)}"))  # worse
Path("big.bin").write_bytes(b"B" * (3 * %d))
Path("notes").mkdir(exist_ok=True)
Path("notes/small.txt").write_text("what I tried\n")
print("summary: fewer steps")
''' % CAP


def details(root: Path) -> dict[int, dict]:
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    try:
        return {seq: json.loads(d) for seq, d in db.execute("SELECT seq, details_json FROM experiments")}
    finally:
        db.close()


def tree_bytes(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() or p.is_symlink())


@pytest.mark.slow
def test_a_big_agent_file_is_listed_not_copied_and_old_copies_are_pruned(tmp_path: Path) -> None:
    root = make_task(tmp_path, config_edits={"timeout = 60": f"timeout = 60\nmax_new_file_bytes = {CAP}\nkeep_outputs = 1"})
    (tmp_path / "agent.py").write_text(AGENT)
    out = ar(root, "run", "-q", "--agent", f"command:{sys.executable} {tmp_path / 'agent.py'}", "-n", "3")
    assert "Traceback" not in out.stderr
    records = details(root)
    assert sorted(records) == [1, 2, 3, 4]
    for seq in (2, 3, 4):
        q = records[seq]["quarantine"]
        assert q["kept"] == ["notes/small.txt"], q
        assert q["not_kept"] == [{"path": "big.bin", "bytes": len(BIG), "sha256": hashlib.sha256(BIG).hexdigest()}]
        assert q["cap_bytes"] == CAP
        assert any(line.startswith("big.bin (not kept") for line in records[seq]["quarantined"])
    runs = root / ".autoresearch" / "runs"
    for seq in (3, 4):  # the last keep_outputs + 1 experiments keep their copies
        folder = runs / str(seq) / "quarantine"
        assert (folder / "notes" / "small.txt").read_text() == "what I tried\n"
        assert not (folder / "big.bin").exists()
        assert tree_bytes(folder) <= CAP
    assert not (runs / "2" / "quarantine").exists(), "seq 2 is older than keep_outputs: its copies go"
    shown = ar(root, "show", "2", "--no-diff").stdout
    assert "big.bin" in shown and hashlib.sha256(BIG).hexdigest() in shown, "the listing outlives the copies"
