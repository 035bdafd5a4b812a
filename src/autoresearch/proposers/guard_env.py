"""The refusal an agent meets when it tries to run the loop from inside a proposal step.

A proposal step (a coding agent or a ``command:`` agent started by `autoresearch run`) must
only edit files: the orchestrator commits, runs and measures. An agent that calls
``autoresearch experiment`` there anyway used to hit a read-only journal deep in SQLite and
print a traceback, which a model reads as a bug to fix or a call to retry, inside a step
whose timeout is long. So every proposal process gets ``AUTORESEARCH_PROPOSING=1`` in its
environment, and the commands that run experiments call `refuse_inside_proposal` first: the
agent gets one clear sentence, at once, that tells it what to do instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from autoresearch.errors import AutoresearchError

PROPOSING_ENV = "AUTORESEARCH_PROPOSING"
# What `refuse_inside_proposal` exits with, when the CLI turns the error into an exit status:
# not 1 (a crash), not 2 (a usage error), so a wrapper script can tell it apart.
REFUSED_EXIT = 3


class InsideProposalError(AutoresearchError):
    """An experiment-running command was started from inside a proposal step."""

    exit_code = REFUSED_EXIT


def inside_proposal(env: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if env is None else env).get(PROPOSING_ENV, "")
    return value not in ("", "0")


def refuse_inside_proposal(command_name: str, env: Mapping[str, str] | None = None) -> None:
    """Raise InsideProposalError when called inside a proposal step (AUTORESEARCH_PROPOSING
    set and not 0). Call it first thing in `experiment`, `run`, `baseline` and `noise`."""
    if not inside_proposal(env):
        return
    raise InsideProposalError(
        f"`autoresearch {command_name}` is not available inside a proposal step "
        f"({PROPOSING_ENV}=1): autoresearch itself commits, runs and measures your change when you "
        "finish. Make your one change to the editable files, end with a one-line `summary:` of it, "
        "and exit.")
