"""The one root of every error a user can cause, and the exit codes the CLI maps them to.

The CLI catches `AutoresearchError` and nothing narrower: a new error class becomes a clear
message with its exit code the moment it subclasses one of these. Anything else that reaches
the CLI is a bug in autoresearch, and shows as one.
"""

from __future__ import annotations

EXIT_PROBLEM = 1  # the task's state, the machine, or a run that could not be made
EXIT_CONFIG = 2  # a broken autoresearch.toml or bad arguments
EXIT_CRASH = 3  # an experiment that crashed
EXIT_REJECTED = 4  # an experiment that was rejected
EXIT_INTERRUPTED = 130


class AutoresearchError(Exception):
    """A problem the user can fix: the message says what and how."""

    exit_code = EXIT_PROBLEM


class ConfigError(AutoresearchError):
    """A broken autoresearch.toml or a bad argument. The message names the file and the key."""

    exit_code = EXIT_CONFIG


class StateError(AutoresearchError):
    """A problem with the state of the task (no run branch, a busy task, a broken journal)."""


__all__ = ["AutoresearchError", "ConfigError", "StateError", "EXIT_PROBLEM", "EXIT_CONFIG", "EXIT_CRASH",
           "EXIT_REJECTED", "EXIT_INTERRUPTED"]
