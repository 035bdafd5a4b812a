"""autoresearch: autonomous research loops on any code.

The public API (everything the CLI does is a call into these):

    from autoresearch import Session, run_loop, get_proposer, experiment, baseline
    with Session.open("path/to/task") as s:
        run_loop(s, lambda slot: get_proposer(s.config, "tune"))
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing's: importing typing costs ~10 ms of every command's start
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "AutoresearchError": "errors", "ConfigError": "errors", "StateError": "errors",
    "TaskConfig": "config", "load_config": "config",
    "Session": "trial.session",
    "Experiment": "journal", "Journal": "journal",
    "Trial": "trial.lifecycle", "experiment": "trial.lifecycle", "baseline": "trial.lifecycle",
    "measure_noise": "trial.lifecycle",
    "start": "trial.branch", "relock": "trial.branch", "repair": "trial.branch",
    "Loop": "loop", "LoopResult": "loop", "run_loop": "loop",
    "Proposal": "proposers", "ProposeContext": "proposers", "Proposer": "proposers", "ProposerError": "proposers",
    "get_proposer": "proposers",
    "Executor": "executors", "Job": "executors", "make_executor": "executors",
    "Measurement": "verdict", "Verdict": "verdict",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    """Import on first use: every `autoresearch` command imports this package first, and the
    commonest one (`experiment`) needs none of the loop, the proposers or the executors."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autoresearch' has no attribute {name!r}")
    return getattr(importlib.import_module(f"autoresearch.{module}"), name)
