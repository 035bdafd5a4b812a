"""autoresearch: autonomous research loops on any code.

The public API (everything the CLI does is a call into these):

    from autoresearch import Session, run_loop, get_proposer, experiment, baseline
    with Session.open("path/to/task") as s:
        run_loop(s, lambda slot: get_proposer(s.config, "tune"))
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs ~10 ms of every command's start
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "AutoresearchError": "errors", "ConfigError": "errors", "StateError": "errors",
    "TaskConfig": "task", "load_config": "task",
    "Session": "session",
    "Experiment": "journal", "Journal": "journal",
    "Trial": "trial", "experiment": "trial", "baseline": "trial", "measure_noise": "trial",
    "start": "branch", "relock": "branch", "repair": "branch",
    "Loop": "loop", "LoopResult": "loop", "run_loop": "loop",
    "Proposal": "proposers", "ProposeContext": "proposers", "Proposer": "proposers", "ProposerError": "proposers",
    "get_proposer": "proposers",
    "Executor": "executors", "Job": "executors", "make_executor": "executors",
    "Measurement": "measure",
    "Verdict": "verdict",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    """Import on first use: `import autoresearch` stays cheap for the CLI's hot commands."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autoresearch' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)
