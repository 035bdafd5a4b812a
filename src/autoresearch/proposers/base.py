"""The one contract every proposer implements.

A proposer gets a `ProposeContext` (the brief, the work tree, where to log) and changes the
editable files in place; it returns a `Proposal` with a one-line description and whatever
usage it knows. It signals failure by raising `ProposerError` with a reason the journal
records (`agent-error`, `agent-timeout`, `bad-edit`, `not-installed`); its `kind` narrows it
(`auth`: the provider refused the key, so the loop stops at once), and the usage a failed
attempt still cost rides along on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from autoresearch.config.task import TaskConfig
from autoresearch.errors import AutoresearchError
from autoresearch.git.workspace import Workspace
from autoresearch.journal.records import Experiment


class ProposerError(AutoresearchError):
    def __init__(self, reason: str, message: str, *, kind: str = "", tokens_in: int | None = None,
                 tokens_out: int | None = None, cost_usd: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.kind = kind  # "auth": the model provider refused the credentials
        self.tokens_in = tokens_in  # what the failed attempt still cost, when the agent said
        self.tokens_out = tokens_out
        self.cost_usd = cost_usd


@dataclass
class ProposeContext:
    config: TaskConfig
    workspace: Workspace  # the work tree to edit (cwd of coding agents)
    brief: str  # the bounded prompt (see brief.py)
    brief_path: Path  # the same text in a file, for agents that take a file
    log_path: Path  # where the agent's own output goes (never the terminal)
    seq: int
    best_commit: str
    best_metric: float | None
    history: list[Experiment] = field(default_factory=list)  # recent experiments, oldest first
    fix: Experiment | None = None  # set when this call should repair that crashed experiment
    timeout: float = 1800.0
    task_root: Path | None = None  # the task folder (the agent works in a scratch copy of it)
    agent_home: Path | None = None  # the agent's private, seeded HOME (sandboxed agents)

    @property
    def editable_files(self) -> list[str]:
        return self.config.editable_files(self.workspace.root)


@dataclass
class Proposal:
    description: str
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    model_driven: bool = True  # gets crash-repair attempts (tune does not)
    body: str = ""  # the whole description, where `description` (a commit subject) had to be clipped


class Proposer(Protocol):
    """A proposer may say `writes_notes = False` (it cannot leave a notes.md: an API model that
    answers with edits, tune); the loop then gives it no notes file and its brief no notes."""

    name: str

    def propose(self, ctx: ProposeContext) -> Proposal:
        ...
