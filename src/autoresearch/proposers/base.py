"""The one contract every proposer implements, and the registry that finds them.

A proposer gets a `ProposeContext` (the brief, the work tree, where to log) and changes the
editable files in place; it returns a `Proposal` with a one-line description and whatever
usage it knows. It signals failure by raising `ProposerError` with a reason the journal
records (`agent-error`, `agent-timeout`, `bad-edit`, `not-installed`).

Plugins register more kinds through the entry point group ``autoresearch.proposers``: the
entry point's name is the kind, its object a callable ``(config: TaskConfig, agent: str) ->
Proposer`` that receives the whole ``--agent`` value (``kind`` or ``kind:spec``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, Protocol

from ..journal import Experiment
from ..task import TaskConfig
from ..workspace import Workspace

ENTRY_POINT_GROUP = "autoresearch.proposers"


class ProposerError(RuntimeError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


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


class Proposer(Protocol):
    name: str

    def propose(self, ctx: ProposeContext) -> Proposal:
        ...


Factory = Callable[[TaskConfig, str], Proposer]


def _builtin() -> dict[str, Factory]:
    from .coding_agent import CODING_AGENTS, make_coding_agent
    from .llm_api import make_api_proposer
    from .tune import make_tune_proposer

    factories: dict[str, Factory] = {name: make_coding_agent for name in CODING_AGENTS}
    factories["command"] = make_coding_agent
    factories["api"] = make_api_proposer
    factories["tune"] = make_tune_proposer
    return factories


def available_kinds() -> list[str]:
    kinds = set(_builtin())
    kinds.update(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))
    return sorted(kinds)


def get_proposer(config: TaskConfig, agent: str) -> Proposer:
    """`claude`, `api`, `tune`, `command:./x.sh {brief_file}`, or a plugin's kind."""
    kind = agent.partition(":")[0]
    factories = _builtin()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == kind:
            return ep.load()(config, agent)
    if kind in factories:
        return factories[kind](config, agent)
    raise ProposerError("agent-error", f"unknown agent {agent!r}; known: {', '.join(available_kinds())}, "
                        "or command:'<shell command with {brief_file}>'")
