"""The agent's notes.md: carried to the next brief, never committed, and read as hostile input
(huge, secrets, control characters and terminal escapes, a link to a file outside, a folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import git, make_task

from autoresearch import redact
from autoresearch.config.task import LoopSection
from autoresearch.executors.local import LocalExecutor
from autoresearch.loop.driver import run_loop
from autoresearch.proposers import Proposal, ProposeContext
from autoresearch.trial import agent_notes
from autoresearch.trial.session import Session

SECRET = "sk-notes-secret-0123456789"


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("NOTES_TEST_API_KEY", SECRET)
    monkeypatch.setattr(redact, "_SESSION_SECRETS", None)  # read the environment again
    return SECRET


def test_clean_removes_controls_escapes_and_secrets_and_caps(secret: str) -> None:
    raw = (f"lr up helped\r\nkey {secret}\n\x1b[31mred\x1b[0m \x1b]0;title\x07bell\x00nul\x08\u202eevil\u202c"
           "\ttab\n").encode() + b"\xff\xfe bad utf-8"
    text = agent_notes.clean(raw)
    assert secret not in text and "[redacted:NOTES_TEST_API_KEY]" in text
    assert not any(ch in text for ch in "\x1b\x07\x00\x08\r\u202e\u202c")
    assert "red" in text and "title" not in text and "\ttab" in text and "bad utf-8" in text
    huge = agent_notes.clean(b"x" * 10_000_000)
    assert len(huge) <= agent_notes.MAX_CHARS and huge.endswith(f"[notes cut at {agent_notes.MAX_CHARS} characters]")


def test_take_never_follows_a_link_nor_reads_a_folder_and_removes_the_file(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("the host's private file")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "notes.md").symlink_to(outside)
    assert agent_notes.take(scratch, "notes.md") is None
    assert not os.path.lexists(scratch / "notes.md") and outside.exists()
    (scratch / "notes.md").mkdir()
    assert agent_notes.take(scratch, "notes.md") is None
    (scratch / "notes.md").rmdir()
    os.mkfifo(scratch / "notes.md")  # a pipe nobody writes to: read, it would block forever
    assert agent_notes.take(scratch, "notes.md") is None and not os.path.lexists(scratch / "notes.md")
    (scratch / "notes.md").write_bytes(b"y" * (agent_notes.MAX_BYTES * 50))
    taken = agent_notes.take(scratch, "notes.md")
    assert taken is not None and len(taken) <= agent_notes.MAX_CHARS
    assert not (scratch / "notes.md").exists()
    assert agent_notes.take(scratch, "notes.md") is None  # deleted by the agent: the old notes stay


def test_a_task_with_its_own_notes_md_keeps_it(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("the task's file")
    assert agent_notes.seed(tmp_path, "mine") == agent_notes.FALLBACK_NAME
    assert (tmp_path / "notes.md").read_text() == "the task's file"


class NoteTaker:
    """Writes notes and changes LEARNING_RATE; checks what each brief carried."""

    name = "notes"

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.briefs: list[str] = []

    def propose(self, ctx: ProposeContext) -> Proposal:
        self.briefs.append(ctx.brief)
        root = ctx.workspace.root
        notes = root / "notes.md"
        assert notes.exists(), "the scratch copy has the notes file"
        call = len(self.briefs)
        if call == 1:
            notes.write_text(f"call 1: raising LR helped\nkey={self.secret}\n\x1b[2J\x1b[31mcleared\x00\n")
        elif call == 2:
            notes.write_text(notes.read_text() + ("z" * 99 + "\n") * 30_000)  # a runaway log, 3 MB
        train = root / "train.py"
        train.write_text(train.read_text().replace("LEARNING_RATE = 0.05", f"LEARNING_RATE = 0.0{call + 5}"))
        return Proposal(description=f"lr 0.0{call + 5}")


@pytest.mark.slow
def test_notes_are_carried_capped_redacted_and_never_committed(tmp_path: Path, secret: str) -> None:
    root = make_task(tmp_path)
    taker = NoteTaker(secret)
    with Session.open(root) as s:
        run_loop(s, lambda slot: taker, LoopSection(max_experiments=3), LocalExecutor(1))
        exps = [e for e in s.journal.experiments("t") if not e.is_baseline]
    assert len(taker.briefs) == 3
    assert "## Your notes (notes.md)" in taker.briefs[0] and "(empty so far)" in taker.briefs[0]
    second, third = taker.briefs[1], taker.briefs[2]
    assert "call 1: raising LR helped" in second and "cleared" in second
    assert secret not in second and "[redacted:NOTES_TEST_API_KEY]" in second and "\x1b" not in second
    assert f"[notes cut at {agent_notes.MAX_CHARS} characters]" in third and len(third) < 30_000
    stored = (root / ".autoresearch" / "notes" / "t.md").read_text()
    assert len(stored) <= agent_notes.MAX_CHARS and secret not in stored
    for e in exps:  # not part of any candidate, and nothing of it quarantined
        assert "notes.md" not in git(root, "ls-tree", "-r", "--name-only", e.commit_sha)
        assert not e.details.get("quarantined"), e.details
        assert e.status != "rejected"
    assert "## Research log" in third and "LEARNING_RATE" in third
