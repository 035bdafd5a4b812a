"""Proposers: what changes the editable files. The contract (`base`) and the registry.

May import: trial, verdict, harness, journal, config, git and the bottom modules; never the
loop, executors, report or cli.

Kinds are found through the entry point group ``autoresearch.proposers`` (`registry.py`):
the name is the kind, the object a callable ``(config: TaskConfig, agent: str) -> Proposer``
that receives the whole ``--agent`` value (``kind`` or ``kind:spec``). The built-ins (claude,
codex, aider, gemini, opencode, command, api, tune) are registered the same way.
"""

from __future__ import annotations

from typing import Callable

from autoresearch import registry
from autoresearch.config.task import TaskConfig
from autoresearch.errors import ConfigError
from autoresearch.proposers.base import Proposal, ProposeContext, Proposer, ProposerError

Factory = Callable[[TaskConfig, str], Proposer]


def available_kinds() -> list[str]:
    return registry.kinds(registry.PROPOSERS)


def get_proposer(config: TaskConfig, agent: str) -> Proposer:
    """`claude`, `api`, `tune`, `command:./x.sh {brief_file}`, or a plugin's kind."""
    kind = agent.partition(":")[0]
    try:
        factory: Factory = registry.load(registry.PROPOSERS, kind, "--agent", "agent")
    except ConfigError as exc:
        raise ProposerError("agent-error", f"{exc}, or command:'<shell command with {{brief_file}}>'") from None
    return factory(config, agent)


__all__ = ["Factory", "Proposal", "ProposeContext", "Proposer", "ProposerError", "available_kinds", "get_proposer"]
