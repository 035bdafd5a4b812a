"""Shared behaviour of the fake coding-agent CLIs in this folder.

Each fake (claude, codex, aider, gemini, opencode, fake_command_agent) parses its real
CLI's flags strictly with argparse (an unknown flag or a missing required one exits 2, so a
wrong invocation fails the test), checks that it runs in the task folder with the brief as
its prompt, records how it was called, then acts:

    FAKE_AGENT_BEHAVIOR = improve | break | harness | hang | nochange | editfail   (default improve)
    FAKE_AGENT_RECORD   = path of a JSON file that gets argv, cwd, prompt, pid, env
    FAKE_AGENT_UID      = the uid to pretend to run as (the Claude root trap)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

BRIEF_MARKER = "# Your task for this experiment"
SUMMARY = "Raise MOMENTUM to 0.9 so gradient descent converges faster"
ENV_KEYS = ("IS_SANDBOX", "AUTORESEARCH_SEQ", "AUTORESEARCH_PHASE", "AUTORESEARCH_BRIEF_FILE",
            "AUTORESEARCH_FILES", "AUTORESEARCH_MODEL", "AUTORESEARCH_PROPOSING")


class StrictParser(argparse.ArgumentParser):
    """argparse that refuses abbreviations, so only the exact real flags are accepted."""

    def __init__(self, prog: str | None = None, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(prog=prog, **kwargs)


def die(message: str, code: int = 2) -> None:
    sys.stderr.write(f"{os.path.basename(sys.argv[0])}: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


def read_stdin() -> str:
    if sys.stdin is None or sys.stdin.isatty():
        return ""
    return sys.stdin.read()


def check_context(prompt: str) -> None:
    if not Path("autoresearch.toml").is_file():
        die(f"not started in a task folder (cwd {os.getcwd()})", 3)
    if BRIEF_MARKER not in prompt:
        die("the prompt does not hold the brief", 3)


def record(prompt: str, **extra: object) -> None:
    path = os.environ.get("FAKE_AGENT_RECORD")
    if not path:
        return
    data = {"argv": sys.argv[1:], "cwd": os.getcwd(), "prompt": prompt, "pid": os.getpid(),
            "env": {k: os.environ.get(k) for k in ENV_KEYS}, **extra}
    Path(path).write_text(json.dumps(data))


def act() -> str:
    """Do the configured edit in the task folder; returns the one-line summary."""
    behavior = os.environ.get("FAKE_AGENT_BEHAVIOR", "improve")
    train = Path("train.py")
    if behavior == "improve":
        text = train.read_text()
        new, n = re.subn(r"^MOMENTUM = [0-9.]+", "MOMENTUM = 0.9", text, count=1, flags=re.MULTILINE)
        if n != 1:
            die("train.py has no MOMENTUM knob", 4)
        train.write_text(new)
        return SUMMARY
    if behavior == "break":
        main = 'if __name__ == "__main__":'
        train.write_text(train.read_text().replace(main, main + '\n    raise RuntimeError("fake agent broke it")'))
        return "Restructure the training loop"
    if behavior == "harness":
        prepare = Path("prepare.py")
        prepare.write_text(prepare.read_text() + "\n# the fake agent was here\n")
        return "Tweak the validation data"
    if behavior == "hang":
        sys.stdout.write("thinking...\n")
        sys.stdout.flush()
        time.sleep(3600)
        return ""
    if behavior == "editfail":  # the edit is made, then the agent dies (a dropped connection, a quota)
        train.write_text(train.read_text().replace("MOMENTUM = 0.0", "MOMENTUM = 0.5"))
        die("the model provider went away mid-task", 1)
    if behavior == "nochange":
        return "I looked at the code and decided to change nothing"
    die(f"unknown FAKE_AGENT_BEHAVIOR {behavior!r}", 5)
    return ""


def pretend_uid() -> int:
    value = os.environ.get("FAKE_AGENT_UID")
    return int(value) if value else os.geteuid()
