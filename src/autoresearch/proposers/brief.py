"""The brief: the bounded prompt a proposer gets for one experiment.

It holds program.md, the task's rules, the best so far, the research log of the whole run
(`digest`: experiments grouped by what they changed, dead ends, live leads, the best's
lineage), the last N experiments as a compact table, the agent's own notes (`notes.md`, kept
between experiments by `trial.agent_notes`), the tail of the last crash log when the previous
run crashed, and what is left of the run's limits. Every part has a cap, so its size does not
grow with the length of the history; the whole run log is never included.

program.md speaks to two readers. An agent driving the loop itself (native mode: "read
program.md and go") needs its loop protocol: run `autoresearch experiment`, repeat, never
stop. An agent called by `autoresearch run` for one proposal must do the opposite: make one
change and exit. So the loop protocol sits between ``<!-- native-loop: begin ... -->`` and
``<!-- native-loop: end -->`` markers (the templates and `init` write them), and the brief
carries program.md without those parts (`research_guidance`); a program.md without markers
loses its "The loop" section and any line that tells the reader to run autoresearch itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from autoresearch.config.task import TaskConfig
from autoresearch.journal.records import Experiment

PROGRAM_MAX_CHARS = 12_000
DESCRIPTION_MAX_CHARS = 80
CRASH_TAIL_LINES = 30
CRASH_TAIL_MAX_CHARS = 3_000
NOTES_MAX_CHARS = 4_000  # the notes' cap (trial.agent_notes.MAX_CHARS keeps them to it)

NATIVE_BEGIN = "<!-- native-loop: begin. `autoresearch run` leaves this part out of its agents' brief. -->"
NATIVE_END = "<!-- native-loop: end -->"
_NATIVE_BLOCK = re.compile(r"<!--\s*native-loop:\s*begin.*?-->.*?(?:<!--\s*native-loop:\s*end\s*-->|\Z)",
                           re.S | re.I)
_LOOP_SECTION = re.compile(r"^(#{1,6})\s+(?:the\s+)?(?:experiment\s+)?loop\s*\n.*?(?=^#{1,6}\s|\Z)", re.S | re.M | re.I)
# A line that tells the reader to drive the loop: run an experiment-running command, or keep going.
_NATIVE_LINE = re.compile(r"`autoresearch (?:experiment|run|baseline|noise)\b|\bnever stop\b|\bkeep going until\b",
                          re.I)


@dataclass
class Limits:
    """What is left of the loop's stop conditions (None: no such limit)."""

    experiments_left: int | None = None
    hours_left: float | None = None
    target: float | None = None
    plateau_left: int | None = None


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _history_table(history: list[Experiment], metric: str, rows: int) -> str:
    recent = [e for e in history if e.status != "running"][-rows:]
    if not recent:
        return "(no experiments yet)"
    lines = [f"seq | commit  | {metric} | delta | status | description"]
    for e in recent:
        value = f"{e.metric:.6f}" if e.metric is not None else "-"
        d = e.delta()
        delta = f"{d:+.6f}" if d is not None else "-"
        status = e.status if not e.reason or e.reason in ("improved", "not-better") else f"{e.status} ({e.reason})"
        lines.append(f"{e.seq} | {e.short_commit or '-':7s} | {value} | {delta} | {status} | "
                     f"{_clip(e.description, DESCRIPTION_MAX_CHARS)}")
    return "\n".join(lines)


def _tail(text: str) -> str:
    lines = text.splitlines()[-CRASH_TAIL_LINES:]
    out = "\n".join(line[:300] for line in lines)
    return out[-CRASH_TAIL_MAX_CHARS:]


def notes_section(notes: str, name: str) -> str:
    """The agent's notes, and how it keeps them (the file is taken back, never committed)."""
    head = (f"## Your notes ({name})\n\nYour folder has `{name}`: your own notes, carried to the next "
            "experiment and shown here (it is not part of your change and is never committed; the first "
            f"{NOTES_MAX_CHARS:,} characters are kept, secrets removed). Record what you learned and what to "
            "try next; rewrite it rather than let it grow.\n\n")
    fence = "~~~~" if "```" in notes else "```"
    return head + (f"{fence}\n{notes}\n{fence}" if notes.strip() else "(empty so far)")


def research_guidance(program: str) -> str:
    """program.md without its native-loop protocol (see the module docstring)."""
    if _NATIVE_BLOCK.search(program):
        text = _NATIVE_BLOCK.sub("", program)
    else:
        text = _LOOP_SECTION.sub("", program)
    kept = [line for line in text.splitlines() if not _NATIVE_LINE.search(line)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def build_brief(config: TaskConfig, program: str, *, best: Experiment | None, best_commit: str,
                history: list[Experiment], files: list[str], limits: Limits | None = None,
                fix: Experiment | None = None, digest: str = "", notes: str = "", notes_file: str = "") -> str:
    """The brief for one proposal. `fix` asks for a repair of that crashed experiment. DIGEST:
    the research log (`digest.research_digest`, bounded); NOTES: the agent's notes so far, and
    NOTES_FILE the name it may rewrite them under in its folder (no notes section without one)."""
    metric = config.metric.name
    direction = "lower is better" if config.metric.goal == "minimize" else "higher is better"
    parts = ["# Your task for this experiment", ""]
    if fix is not None:
        parts += [f"The last experiment (seq {fix.seq}: {_clip(fix.description, DESCRIPTION_MAX_CHARS)}) crashed "
                  f"({fix.reason}). Fix the bug in the editable files so the idea can be measured, or if the "
                  "idea is broken beyond a quick fix, undo it and try something else.", ""]
    else:
        parts += ["Make ONE focused change to the editable files that you expect to improve the metric, "
                  "then stop. Do not run the experiment yourself: the orchestrator commits, runs and measures "
                  "it after you exit (the autoresearch commands that run experiments are refused inside this "
                  "step).", ""]
    parts += [
        "## Rules",
        f"- Editable files (change only these; no new, deleted or renamed files): {', '.join(files)}",
        f"- Read-only harness (read for context; any change is rejected): {', '.join(config.task.readonly) or '(none)'}",
        f"- Metric: `{metric}` ({direction}), measured by the harness, never by you.",
        f"- Budget: {config.budget.seconds:g} {'CPU seconds (all threads and processes)' if config.budget.clock == 'cpu' else 's'} "
        f"per run, start-up within {config.budget.allowance:g} more; the run is killed at {config.budget.hard_timeout:g} s.",
        "- Do not commit, reset or switch branches. Do not touch results.tsv or .autoresearch/.",
        "- End your work with a one-line summary of the change (it becomes the commit message).",
        "",
        "## State",
    ]
    if best is not None and best.metric is not None:
        parts.append(f"- Best: {metric} = {best.metric:.6f} at commit {best_commit[:7]} (seq {best.seq}).")
    else:
        parts.append(f"- Best: no measurement yet (commit {best_commit[:7]}).")
    if limits is not None:
        left = []
        if limits.experiments_left is not None:
            left.append(f"{limits.experiments_left} experiments")
        if limits.hours_left is not None:
            left.append(f"{limits.hours_left:.2f} hours")
        if limits.plateau_left is not None:
            left.append(f"{limits.plateau_left} experiments without a keep before the loop stops")
        if limits.target is not None:
            left.append(f"target {metric} {limits.target:g}")
        if left:
            parts.append("- Left: " + ", ".join(left) + ".")
    if digest:
        parts += ["", digest.rstrip()]
    parts += ["", f"## Recent experiments (last {config.agent.history})",
              _history_table(history, metric, config.agent.history), ""]
    if notes_file:
        parts += [notes_section(notes, notes_file), ""]
    crash_source = fix if fix is not None else (history[-1] if history and history[-1].status == "crash" else None)
    if crash_source is not None and crash_source.log_tail:
        parts += [f"## Tail of the crash log of seq {crash_source.seq}", "```", _tail(crash_source.log_tail), "```", ""]
    guidance = research_guidance(program)
    if len(guidance) > PROGRAM_MAX_CHARS:
        guidance = guidance[:PROGRAM_MAX_CHARS] + "\n[program.md cut]"
    parts += ["## program.md (the human's research guidance; its loop protocol is left out: here you make "
              "one change)", "", guidance, ""]
    return "\n".join(parts)
