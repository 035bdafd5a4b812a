"""Proposers: what changes the editable files. The contract (`base`) and the registry.

Kinds are found through the entry point group ``autoresearch.proposers`` (`registry.py`):
the name is the kind, the object a callable ``(config: TaskConfig, agent: str) -> Proposer``
that receives the whole ``--agent`` value (``kind`` or ``kind:spec``). The built-ins (claude,
codex, aider, gemini, opencode, command, api, tune) are registered the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ..task import TaskConfig
    from .base import Proposal, ProposeContext, Proposer, ProposerError

# The contract's names load on first use: `autoresearch experiment` imports guard_env (this
# package's lightest module) and must not pay for the proposer contract it never uses.
_FROM_BASE = ("Proposal", "ProposeContext", "Proposer", "ProposerError")

Factory = Callable[["TaskConfig", str], "Proposer"]


def __getattr__(name: str) -> Any:
    if name in _FROM_BASE:
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def available_kinds() -> list[str]:
    from .. import registry

    return registry.kinds(registry.PROPOSERS)


def get_proposer(config: "TaskConfig", agent: str) -> "Proposer":
    """`claude`, `api`, `tune`, `command:./x.sh {brief_file}`, or a plugin's kind."""
    from .. import registry
    from ..errors import ConfigError
    from .base import ProposerError

    kind = agent.partition(":")[0]
    try:
        factory: Factory = registry.load(registry.PROPOSERS, kind, "--agent", "agent")
    except ConfigError as exc:
        raise ProposerError("agent-error", f"{exc}, or command:'<shell command with {{brief_file}}>'") from None
    return factory(config, agent)


__all__ = ["Factory", "Proposal", "ProposeContext", "Proposer", "ProposerError", "available_kinds", "get_proposer"]
