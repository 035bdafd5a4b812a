"""Coding-agent CLIs as proposers: Claude Code, Codex, aider, Gemini CLI, opencode, and any
other command.

Each call starts the agent once, non-interactively, in the task folder (its cwd), with the
brief as its prompt; the agent edits the editable files in place and exits. Its output
(stdout and stderr together) goes to ``.autoresearch/runs/<seq>/agent.log`` through
`harness.run_command` (own process group, hard timeout), never to the terminal. The
orchestrator then commits, runs and measures whatever the tree holds; nothing here commits.

How each CLI is invoked (flags from each tool's own documentation):

- ``claude``: ``claude -p --output-format json --dangerously-skip-permissions [--model M]
  < brief``. Print mode reads the prompt from stdin; the JSON result carries the final text,
  ``total_cost_usd`` and ``usage``. As root see `claude_permission_args` (the root trap).
- ``codex``: ``codex exec --sandbox workspace-write --skip-git-repo-check --json [--model M]
  - < brief``. ``exec`` never asks for approvals; ``workspace-write`` lets it edit the task
  folder only; ``-`` reads the prompt from stdin; ``--json`` prints JSONL events whose
  ``turn.completed`` carries ``usage`` (input, cached input, output tokens).
- ``aider``: ``aider --message-file brief --yes-always --no-auto-commits ... [--model M]
  FILES``. The editable files are named so they are in the chat; its chat and input
  history files go to the run folder, so nothing new appears in the work tree; the
  ``Tokens: ... Cost: ...`` report lines give usage.
- ``gemini``: ``gemini --yolo --output-format json [--model M] --prompt P < brief``. The
  ``--prompt`` text is appended to stdin, so the brief comes first; the JSON has
  ``response`` and per-model token ``stats``.
- ``opencode``: ``opencode run --format json [--model provider/model] P < brief``. Piped
  stdin is appended to the message; ``step_finish`` events carry ``cost`` and ``tokens``.
- ``command:<shell command>``: anything else, run through ``/bin/sh -c`` with placeholders
  (see `PLACEHOLDERS`); the brief is also on its stdin.

``--agent claude:MODEL`` (any named CLI) overrides ``[agent] model``; ``[agent] extra_args``
are appended to the CLI's arguments (for ``command:``, to the end of the command, quoted).
"""

from __future__ import annotations

import dataclasses

import fnmatch
import json
import os
import re
import shlex
import shutil
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..harness import base_env, run_command
from ..sandbox import SandboxSpec, agent_hidden, agent_spec, resolve_kind, seed_agent_home
from ..task import TaskConfig
from .base import Proposal, ProposeContext, ProposerError
from .guard_env import PROPOSING_ENV

DESCRIPTION_MAX_CHARS = 72  # a commit subject line
ERROR_TAIL_LINES = 20
OUTPUT_READ_MAX_BYTES = 4 * 1024 * 1024
AIDER_EVENTS = "aider.events.jsonl"  # aider's local event log, in the run folder

# The root trap. Claude Code exits 1 with this line when its permission bypass
# (--dangerously-skip-permissions, or --permission-mode bypassPermissions) is asked for by a
# process whose effective uid is 0, unless the environment says IS_SANDBOX=1 (or
# CLAUDE_CODE_BUBBLEWRAP=1).
CLAUDE_ROOT_REFUSAL = "cannot be used with root/sudo privileges"
# What Claude may do as root instead of the bypass: read and edit files (acceptEdits approves
# edits), run python to check its change, and look at git state. Everything else is denied in
# print mode rather than prompted for, so it cannot hang waiting for an answer.
CLAUDE_ROOT_TOOLS = ("Read,Edit,Write,Glob,Grep,Bash(python:*),Bash(python3:*),"
                     "Bash(git diff:*),Bash(git status:*),Bash(git log:*)")
GEMINI_PROMPT = ("Carry out the task described above: edit the files in this folder, do not "
                 "commit, then end with a one-line summary of your change.")
OPENCODE_PROMPT = ("Carry out the task described below: edit the files in this folder, do not "
                   "commit, then end with a one-line summary of your change.")

PLACEHOLDERS: dict[str, str] = {
    "brief_file": "path of a file holding the brief (shell-quoted)",
    "brief": "the brief itself (shell-quoted; can be tens of KB, prefer {brief_file})",
    "files": "the editable files, each shell-quoted, separated by spaces",
    "model": "[agent] model or the :MODEL of --agent (shell-quoted; '' when unset)",
    "seq": "the experiment number",
    "log": "path of the agent log (shell-quoted)",
    "run_dir": "the experiment's folder under .autoresearch/runs (shell-quoted)",
    "workdir": "the task folder, also the command's cwd (shell-quoted)",
    "metric": "the metric's name",
    "goal": "minimize or maximize",
    "best": "the best value so far ('' before the baseline)",
    "fix": "1 when this call should repair the last crash, else 0",
}


@dataclass
class Outcome:
    """What an agent's output says about its work."""

    text: str = ""  # the final message (the summary is taken from it)
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    error: str = ""  # the agent reported a failure despite exit status 0


@dataclass(frozen=True)
class Invocation:
    """Everything an argv builder needs."""

    model: str
    files: list[str]
    brief_path: Path
    run_dir: Path
    extra_args: list[str]
    as_root: bool
    env: dict[str, str]


@dataclass(frozen=True)
class AgentSpec:
    """How to drive one coding-agent CLI non-interactively."""

    name: str  # the --agent kind
    title: str
    executable: str
    install: str  # how to install it, shown when it is missing
    docs: str  # where its non-interactive flags are documented
    build: Callable[[Invocation], list[str]]  # arguments after the executable
    parse: Callable[[str], Outcome]
    stdin_brief: bool = True  # the brief is fed on stdin
    scratch: tuple[str, ...] = ()  # top-level names the CLI may leave in the work tree
    refine: Callable[[Outcome, Path], Outcome] | None = None  # better usage from files in the run folder
    notes: str = ""


# -- parsing helpers --------------------------------------------------------------------------

def json_values(text: str) -> Iterator[Any]:
    """JSON values that start at the beginning of a line: JSONL events and single (even
    pretty-printed) JSON documents mixed with other output."""
    decoder = json.JSONDecoder()
    pos = 0
    n = len(text)
    while pos < n:
        if text[pos] in "{[":
            try:
                value, end = decoder.raw_decode(text, pos)
            except ValueError:
                pass
            else:
                yield value
                pos = end
                continue
        nl = text.find("\n", pos)
        if nl < 0:
            return
        pos = nl + 1


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _sum_or_none(values: list[int], seen: bool) -> int | None:
    return sum(values) if seen else None


def parse_claude(output: str) -> Outcome:
    """`claude -p --output-format json`: one object with type "result"."""
    result: dict | None = None
    for value in json_values(output):
        if isinstance(value, dict) and value.get("type") == "result":
            result = value
    if result is None:
        return Outcome(error="no JSON result in Claude Code's output")
    tokens_in, tokens_out = _claude_tokens(result)
    cost = result.get("total_cost_usd", result.get("cost_usd"))
    text = str(result.get("result")) if isinstance(result.get("result"), str) else ""
    error = ""
    if result.get("is_error") or str(result.get("subtype", "success")) != "success":
        error = f"Claude Code reported {result.get('subtype') or 'an error'}: {text or '(no message)'}"
    return Outcome(text=text, tokens_in=tokens_in, tokens_out=tokens_out,
                   cost_usd=float(cost) if isinstance(cost, (int, float)) else None, error=error)


def _claude_tokens(result: dict) -> tuple[int | None, int | None]:
    """Tokens in and out of a Claude Code result. The top-level ``usage`` counts the main
    conversation only; ``modelUsage`` (per model, camelCase) also counts the side requests
    (titles, the small fast model), and ``total_cost_usd`` is their sum, so it wins when present."""
    models = result.get("modelUsage")
    if isinstance(models, dict) and models:
        per = [m for m in models.values() if isinstance(m, dict)]
        tin = sum(_int(m.get("inputTokens")) + _int(m.get("cacheReadInputTokens")) +
                  _int(m.get("cacheCreationInputTokens")) for m in per)
        return tin, sum(_int(m.get("outputTokens")) for m in per)
    usage = result.get("usage") or {}
    if not usage:
        return None, None
    tin = _int(usage.get("input_tokens")) + _int(usage.get("cache_creation_input_tokens")) + \
        _int(usage.get("cache_read_input_tokens"))
    return tin, _int(usage.get("output_tokens"))


def parse_codex(output: str) -> Outcome:
    """`codex exec --json`: JSONL events; agent_message items and turn.completed usage.

    An ``error`` event is not fatal by itself: Codex reports a dropped stream as
    ``{"type":"error","message":"Reconnecting... 1/5"}``, retries, and may still complete the
    turn. Only ``turn.failed``, or an error that no later ``turn.completed`` follows, is."""
    out = Outcome()
    ins: list[int] = []
    outs: list[int] = []
    pending = ""  # the last error event not yet followed by a completed turn
    for event in json_values(output):
        if not isinstance(event, dict):
            continue
        kind = event.get("type")
        if kind == "item.completed":
            item = event.get("item") or {}
            if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
                out.text = item["text"]
        elif kind == "turn.completed":
            usage = event.get("usage") or {}
            ins.append(_int(usage.get("input_tokens")))
            outs.append(_int(usage.get("output_tokens")))
            pending = ""
        elif kind == "turn.failed":
            out.error = "Codex turn failed: " + str((event.get("error") or {}).get("message", ""))
        elif kind == "error":
            pending = "Codex error: " + str(event.get("message", ""))
    if pending and not out.error:
        out.error = pending
    out.tokens_in, out.tokens_out = _sum_or_none(ins, bool(ins)), _sum_or_none(outs, bool(outs))
    return out


def parse_gemini(output: str) -> Outcome:
    """`gemini --output-format json`: {"response", "stats": {"models": {m: {"tokens"}}}, "error"}."""
    doc: dict | None = None
    for value in json_values(output):
        if isinstance(value, dict) and ("response" in value or "stats" in value or "error" in value):
            doc = value
    if doc is None:
        return Outcome(error="no JSON result in Gemini CLI's output")
    out = Outcome(text=str(doc["response"]) if isinstance(doc.get("response"), str) else "")
    models = ((doc.get("stats") or {}).get("models") or {})
    if isinstance(models, dict) and models:
        tokens = [m.get("tokens") or {} for m in models.values() if isinstance(m, dict)]
        out.tokens_in = sum(_int(t.get("prompt")) for t in tokens)
        out.tokens_out = sum(_int(t.get("candidates")) + _int(t.get("thoughts")) for t in tokens)
    err = doc.get("error")
    if err:
        out.error = "Gemini CLI error: " + (str(err.get("message")) if isinstance(err, dict) else str(err))
    return out


def parse_opencode(output: str) -> Outcome:
    """`opencode run --format json`: events; "text" parts and "step_finish" cost and tokens."""
    out = Outcome()
    seen = False
    tin = tout = 0
    cost = 0.0
    for event in json_values(output):
        if not isinstance(event, dict):
            continue
        part = event.get("part") or {}
        kind = event.get("type")
        if kind == "text" and isinstance(part.get("text"), str) and part["text"].strip():
            out.text = part["text"]
        elif kind == "step_finish":
            seen = True
            tokens = part.get("tokens") or {}
            cache = tokens.get("cache") or {}
            tin += _int(tokens.get("input")) + _int(cache.get("read")) + _int(cache.get("write"))
            tout += _int(tokens.get("output")) + _int(tokens.get("reasoning"))
            if isinstance(part.get("cost"), (int, float)):
                cost += float(part["cost"])
        elif kind == "error":
            err = event.get("error") or {}
            data = err.get("data") if isinstance(err, dict) else None
            message = (data or {}).get("message") if isinstance(data, dict) else None
            out.error = "opencode error: " + str(message or (err.get("name") if isinstance(err, dict) else err))
    if seen:
        # opencode reports 0 for a model it has no price for: unknown, not free.
        out.tokens_in, out.tokens_out, out.cost_usd = tin, tout, (cost if cost > 0 else None)
    return out


_AIDER_TOKENS = re.compile(r"Tokens:\s*([\d.,]+[kKmM]?) sent.*?([\d.,]+[kKmM]?) received")
_AIDER_COST = re.compile(r"Cost:\s*\$([\d.]+) message,\s*\$([\d.]+) session")
_AIDER_NOISE = re.compile(
    r"^(Tokens:|Cost:|Applied edit to|Commit |Aider v|Model:|Main model:|Weak model:|Editor model:|Git repo:|"
    r"Repo-map:|Added .* to the chat|Use /help|Warning|Can't|Did not apply|Only \d+ reflections|"
    r"https?://|[\w./-]+\.\w+$)")


def _count(text: str) -> int:
    """Aider's token counts: 850, 12,345, 2.3k, 1.2M."""
    text = text.replace(",", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    number = text[:-1] if scale > 1 else text
    try:
        return round(float(number) * scale)
    except ValueError:
        return 0


def parse_aider(output: str) -> Outcome:
    """aider's plain output: the model's reply, `Applied edit to ...`, and usage reports."""
    out = Outcome()
    sent: list[int] = []
    received: list[int] = []
    prose: list[str] = []
    fence = block = False  # inside a code fence or a SEARCH/REPLACE edit block: code, not prose
    for line in output.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        # Usage lines are aider's own reports, never model text: read them before the fence
        # and edit-block tracking, which an unpaired `<<<<<<< SEARCH` would leave stuck.
        tokens = _AIDER_TOKENS.search(stripped) if stripped.startswith("Tokens:") else None
        if tokens:
            sent.append(_count(tokens.group(1)))
            received.append(_count(tokens.group(2)))
        cost = _AIDER_COST.search(stripped)
        if cost:
            out.cost_usd = float(cost.group(2))  # the session total so far (rounded to cents)
        if tokens or cost:
            continue
        if stripped.startswith("```"):
            fence = not fence
            continue
        if stripped.startswith(("<<<<<<<", ">>>>>>>")):
            block = stripped.startswith("<<<<<<<")
            continue
        if fence or block:
            continue
        if not _AIDER_NOISE.match(stripped):
            prose.append(stripped)
    out.text = "\n".join(prose[-20:])
    out.tokens_in, out.tokens_out = _sum_or_none(sent, bool(sent)), _sum_or_none(received, bool(received))
    return out


def aider_events_usage(out: Outcome, run_dir: Path) -> Outcome:
    """Exact usage from aider's event log (`--analytics-log`): its ``message_send`` events
    carry prompt and completion tokens and the unrounded session cost."""
    path = run_dir / AIDER_EVENTS
    if not path.exists():
        return out
    sent = received = 0
    cost: float | None = None
    seen = False
    for value in json_values(path.read_text(encoding="utf-8", errors="replace")):
        if not isinstance(value, dict) or value.get("event") != "message_send":
            continue
        props = value.get("properties") or {}
        seen = True
        sent += _int(props.get("prompt_tokens"))
        received += _int(props.get("completion_tokens"))
        if isinstance(props.get("total_cost"), (int, float)):
            cost = float(props["total_cost"])
    if seen:
        out.tokens_in, out.tokens_out = sent, received
        out.cost_usd = cost if cost else None  # 0: a model aider has no price for
    return out


def parse_plain(output: str) -> Outcome:
    """Any other command: its output is the final message."""
    return Outcome(text="\n".join(output.splitlines()[-50:]))


_SUMMARY = re.compile(r"^\W*(?:one-line\s+)?(?:summary|description|change)\s*\**\s*[:\-–]\s*(.+)$", re.IGNORECASE)


def summary_line(text: str) -> str:
    """The one-line summary in an agent's final message: the last `Summary: ...` line if
    there is one, else its last line; markdown decoration removed, clipped to one line."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("```")]
    if not lines:
        return ""
    chosen = lines[-1]
    for line in reversed(lines):
        match = _SUMMARY.match(line)
        if match:
            chosen = match.group(1)
            break
    chosen = re.sub(r"^(?:[-*>#]+\s*|\d+[.)]\s+)+", "", chosen)
    chosen = chosen.replace("**", "").replace("__", "").strip().strip("`").strip()
    chosen = " ".join(chosen.split())
    if len(chosen) > DESCRIPTION_MAX_CHARS:
        chosen = chosen[: DESCRIPTION_MAX_CHARS - 1].rstrip() + "…"
    return chosen


# -- argv builders ----------------------------------------------------------------------------

def claude_permission_args(as_root: bool, env: dict[str, str]) -> list[str]:
    """Claude Code's permission flags, handling the root trap.

    Claude Code refuses ``--dangerously-skip-permissions`` (and ``--permission-mode
    bypassPermissions``, the same mode) when its effective uid is 0: it prints
    "--dangerously-skip-permissions cannot be used with root/sudo privileges for security
    reasons" and exits 1. That is the usual state in Docker containers and CI runners. Its
    own guard lets the bypass through when ``IS_SANDBOX=1`` (or ``CLAUDE_CODE_BUBBLEWRAP=1``)
    is in the environment; that escape is undocumented (seen in the CLI's source and in
    anthropics/claude-code issue #3490), so it is not relied on by default.

    What we do:

    - not root: ``--dangerously-skip-permissions``, the documented bypass for unattended runs;
    - root, and the user's environment already declares ``IS_SANDBOX=1`` (or
      ``CLAUDE_CODE_BUBBLEWRAP=1``): the same bypass, since the user vouched for the sandbox;
      we never set that variable ourselves;
    - root otherwise: the documented ``--permission-mode acceptEdits`` (file edits are
      approved without asking) plus ``--allowedTools`` for reading, running python and
      read-only git. That is all a proposal needs (the orchestrator runs the experiment), and
      in print mode anything else is denied rather than prompted for, so nothing hangs.

    Running autoresearch as a non-root user avoids the question altogether. If the refusal
    still happens (the bypass put back through ``[agent] extra_args``, say), the error says so
    and names these ways out.
    """
    sandboxed = env.get("IS_SANDBOX") == "1" or env.get("CLAUDE_CODE_BUBBLEWRAP") == "1"
    if as_root and not sandboxed:
        return ["--permission-mode", "acceptEdits", "--allowedTools", CLAUDE_ROOT_TOOLS]
    return ["--dangerously-skip-permissions"]


def _model(flag: str, model: str) -> list[str]:
    return [flag, model] if model else []


def build_claude(inv: Invocation) -> list[str]:
    return ["-p", "--output-format", "json", *claude_permission_args(inv.as_root, inv.env),
            *_model("--model", inv.model), *inv.extra_args]


def build_codex(inv: Invocation) -> list[str]:
    return ["exec", "--sandbox", "workspace-write", "--skip-git-repo-check", "--json",
            *_model("--model", inv.model), *inv.extra_args, "-"]


def build_aider(inv: Invocation) -> list[str]:
    # --no-git: autoresearch owns git, and aider's git setup writes .git/config (a default
    # user.name when none is set), which the agent sandbox keeps read-only: it would crash.
    # --analytics-log: aider prints its cost rounded to cents; its local event log (written
    # even with --no-analytics, nothing is sent) has the exact figures.
    return ["--message-file", str(inv.brief_path), "--yes-always", "--no-git", "--no-auto-commits",
            "--no-dirty-commits", "--no-gitignore", "--no-pretty", "--no-stream", "--no-check-update",
            "--no-show-model-warnings", "--no-analytics", "--analytics-log", str(inv.run_dir / AIDER_EVENTS),
            "--no-detect-urls", "--no-suggest-shell-commands",
            "--chat-history-file", str(inv.run_dir / "aider.chat.history.md"),
            "--input-history-file", str(inv.run_dir / "aider.input.history"),
            *_model("--model", inv.model), *inv.extra_args, *inv.files]


def build_gemini(inv: Invocation) -> list[str]:
    # --skip-trust: in a folder it has not been told to trust, Gemini CLI drops --yolo to the
    # default approval mode and exits 55 without doing anything.
    return ["--yolo", "--skip-trust", "--output-format", "json", *_model("--model", inv.model), *inv.extra_args,
            "--prompt", GEMINI_PROMPT]


def build_opencode(inv: Invocation) -> list[str]:
    return ["run", "--format", "json", *_model("--model", inv.model), *inv.extra_args, OPENCODE_PROMPT]


CODING_AGENTS: dict[str, AgentSpec] = {
    "claude": AgentSpec(
        name="claude", title="Claude Code", executable="claude",
        install="npm install -g @anthropic-ai/claude-code (then run `claude` once to log in, or set ANTHROPIC_API_KEY)",
        docs="https://docs.anthropic.com/en/docs/claude-code/cli-reference",
        build=build_claude, parse=parse_claude, scratch=(".claude",),
        notes="as root: --permission-mode acceptEdits unless IS_SANDBOX=1 (see claude_permission_args)"),
    "codex": AgentSpec(
        name="codex", title="Codex CLI", executable="codex",
        install="npm install -g @openai/codex (then `codex login`, or set CODEX_API_KEY: `codex exec` "
                "sends no key from OPENAI_API_KEY)",
        docs="https://developers.openai.com/codex/noninteractive",
        build=build_codex, parse=parse_codex, scratch=(".codex",),
        notes="where its Linux sandbox cannot start (some containers), add "
              "extra_args = [\"--dangerously-bypass-approvals-and-sandbox\"]"),
    "aider": AgentSpec(
        name="aider", title="aider", executable="aider",
        install="python -m pip install aider-install && aider-install (or: pipx install aider-chat)",
        docs="https://aider.chat/docs/scripting.html",
        build=build_aider, parse=parse_aider, stdin_brief=False, scratch=(".aider*",), refine=aider_events_usage,
        notes="model names as aider knows them, e.g. sonnet or openai/gpt-4o"),
    "gemini": AgentSpec(
        name="gemini", title="Gemini CLI", executable="gemini",
        install="npm install -g @google/gemini-cli (then run `gemini` once to log in, or set GEMINI_API_KEY)",
        docs="https://geminicli.com/docs/cli/headless/",
        build=build_gemini, parse=parse_gemini, scratch=(".gemini",)),
    "opencode": AgentSpec(
        name="opencode", title="opencode", executable="opencode",
        install="npm install -g opencode-ai (or: curl -fsSL https://opencode.ai/install | bash; "
                "then `opencode auth login`)",
        docs="https://opencode.ai/docs/cli/",
        build=build_opencode, parse=parse_opencode, scratch=(".opencode",),
        notes="models as provider/model; edits are allowed by its default permissions"),
}


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


# -- the proposer -----------------------------------------------------------------------------

def _template_fields(template: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ProposerError("agent-error", f"command: bad placeholder syntax in {template!r}: {exc} "
                            "(write literal braces as {{ and }})") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            known = ", ".join("{" + k + "}" for k in PLACEHOLDERS)
            raise ProposerError("agent-error", f"command: unknown placeholder {{{name}}} in {template!r}; "
                                f"known: {known} (literal braces: {{{{ and }}}})")
        names.append(name)
    return names


def _first_word(template: str) -> str | None:
    """The program a simple command starts, or None when the shell decides (pipes, cd ...)."""
    try:
        words = shlex.split(template)
    except ValueError:
        return None
    if not words or "{" in words[0] or "=" in words[0] or any(c in words[0] for c in "|&;<>()$`"):
        return None
    return words[0]


@dataclass
class CodingAgent:
    """One coding-agent CLI (`spec`), or a `command:` template when spec is None."""

    name: str
    spec: AgentSpec | None
    model: str = ""
    extra_args: list[str] = field(default_factory=list)
    template: str = ""
    log_max_bytes: int = 4 * 1024 * 1024

    # -- checks -----------------------------------------------------------------------------

    def check_installed(self, env: dict[str, str] | None = None, cwd: Path | None = None) -> str | None:
        """The executable's path; raises ProposerError('not-installed') with install hints."""
        path = (env or base_env({})).get("PATH", "")
        if self.spec is not None:
            found = shutil.which(self.spec.executable, path=path)
            if not found:
                raise ProposerError(
                    "not-installed",
                    f"{self.spec.title} (`{self.spec.executable}`) is not on PATH. Install it: {self.spec.install}. "
                    f"Docs: {self.spec.docs}. Or pick another --agent (claude, codex, aider, gemini, opencode, "
                    "command:'...', api, tune).")
            return found
        program = _first_word(self.template)
        if program is None:
            return None
        if "/" in program:
            target = Path(program) if os.path.isabs(program) else (cwd or Path.cwd()) / program
            if not target.exists():
                raise ProposerError("not-installed", f"command: {program} does not exist (relative to the task "
                                    f"folder {cwd or Path.cwd()})")
            if not os.access(target, os.X_OK):
                raise ProposerError("not-installed", f"command: {program} is not executable (chmod +x {program}, "
                                    "or start the command with its interpreter, e.g. python3 ...)")
            return str(target)
        found = shutil.which(program, path=path)
        if not found:
            raise ProposerError("not-installed", f"command: `{program}` is not on PATH; install it or give its "
                                "full path in the command")
        return found

    # -- building the command ---------------------------------------------------------------

    def _values(self, ctx: ProposeContext, run_dir: Path) -> dict[str, str]:
        q = shlex.quote
        return {
            "brief_file": q(str(ctx.brief_path)),
            "brief": q(ctx.brief),
            "files": " ".join(q(f) for f in ctx.editable_files),
            "model": q(self.model),
            "seq": str(ctx.seq),
            "log": q(str(ctx.log_path)),
            "run_dir": q(str(run_dir)),
            "workdir": q(str(ctx.workspace.root)),
            "metric": q(ctx.config.metric.name),
            "goal": ctx.config.metric.goal,
            "best": f"{ctx.best_metric:.10g}" if ctx.best_metric is not None else "''",
            "fix": "1" if ctx.fix is not None else "0",
        }

    def command(self, ctx: ProposeContext, env: dict[str, str], executable: str | None = None) -> str:
        """The shell command for this proposal (what `run_command` will run)."""
        run_dir = ctx.log_path.parent
        brief = shlex.quote(str(ctx.brief_path))
        if self.spec is None:
            body = self.template.format_map(self._values(ctx, run_dir))
            if self.extra_args:
                body += " " + shlex.join(self.extra_args)
            # A group, so every part of a compound command shares the brief on stdin.
            return "{ " + body + "\n} < " + brief
        inv = Invocation(model=self.model, files=ctx.editable_files, brief_path=ctx.brief_path, run_dir=run_dir,
                         extra_args=list(self.extra_args), as_root=running_as_root(), env=env)
        argv = [executable or self.spec.executable, *self.spec.build(inv)]
        return shlex.join(argv) + (f" < {brief}" if self.spec.stdin_brief else "")

    # -- running ----------------------------------------------------------------------------

    def propose(self, ctx: ProposeContext) -> Proposal:
        root = ctx.workspace.root
        run_dir = ctx.log_path.parent
        run_dir.mkdir(parents=True, exist_ok=True)
        if not ctx.brief_path.exists():
            ctx.brief_path.parent.mkdir(parents=True, exist_ok=True)
            ctx.brief_path.write_text(ctx.brief, encoding="utf-8")
        env = base_env({
            "AUTORESEARCH_PHASE": "propose",
            PROPOSING_ENV: "1",  # `autoresearch experiment` / `run` refuse to start inside this step
            "AUTORESEARCH_SEQ": str(ctx.seq),
            "AUTORESEARCH_BRIEF_FILE": str(ctx.brief_path),
            "AUTORESEARCH_FILES": " ".join(ctx.editable_files),
            "AUTORESEARCH_MODEL": self.model,
            "AUTORESEARCH_AGENT_LOG": str(ctx.log_path),
        })
        executable = self.check_installed(env, root)
        command = self.command(ctx, env, executable if self.spec is not None else None)
        before = set(ctx.workspace.untracked())
        offset = ctx.log_path.stat().st_size if ctx.log_path.exists() else 0
        result = run_command(command, cwd=root, env=env, timeout=ctx.timeout, log_path=ctx.log_path,
                             log_max_bytes=self.log_max_bytes, sandbox=self._sandbox(ctx, env, run_dir, command))
        moved = self._move_scratch(ctx, before, run_dir)
        output = self._read_output(ctx.log_path, offset, command)
        if result.interrupted:
            raise KeyboardInterrupt
        what = self.spec.title if self.spec else "the agent command"
        if result.timed_out:
            raise ProposerError("agent-timeout", f"{what} did not finish within {ctx.timeout:g} s and was killed "
                                f"([agent] timeout); log: {ctx.log_path}\n{_tail(output)}")
        if result.exit_code != 0:
            raise self._failure(result.exit_code, output, ctx.log_path)
        outcome = (self.spec.parse if self.spec else parse_plain)(output)
        if self.spec is not None and self.spec.refine is not None:
            outcome = self.spec.refine(outcome, run_dir)
        if outcome.error:
            raise ProposerError("agent-error", f"{outcome.error}; log: {ctx.log_path}\n{_tail(output)}")
        description = summary_line(outcome.text) or self._fallback_description(ctx, moved)
        return Proposal(description=description, tokens_in=outcome.tokens_in, tokens_out=outcome.tokens_out,
                        cost_usd=outcome.cost_usd, model_driven=True)

    def _sandbox(self, ctx: ProposeContext, env: dict[str, str], run_dir: Path, command: str) -> "SandboxSpec | None":
        """Read-only everywhere but its scratch copy, its run folder and a private HOME seeded
        from the user's agent config; the task's `.autoresearch/` and eval data invisible; its
        own PID namespace, dying with us. None where bubblewrap cannot run (warned about)."""
        kind, _ = resolve_kind(ctx.config.sandbox.kind)
        if kind == "none":
            return None
        root = ctx.workspace.root
        home = ctx.agent_home or (run_dir / "home")
        seed_agent_home(home, Path.home())
        spec = agent_spec(root, home, agent_hidden(ctx.task_root or root, ctx.config.sandbox.eval_data, env),
                          visible=_needed_paths(command, env))
        return dataclasses.replace(spec, writable=[*spec.writable, run_dir])

    def _failure(self, code: int | None, output: str, log_path: Path) -> ProposerError:
        what = self.spec.title if self.spec else "the agent command"
        if self.spec is not None and self.spec.name == "claude" and CLAUDE_ROOT_REFUSAL in output:
            return ProposerError(
                "agent-error",
                "Claude Code refuses --dangerously-skip-permissions as root. Run autoresearch as a non-root "
                "user; or, if this machine is a disposable sandbox, export IS_SANDBOX=1; or drop the bypass "
                "from [agent] extra_args (as root autoresearch uses --permission-mode acceptEdits). "
                f"Log: {log_path}")
        if code == 127 and self.spec is None:
            return ProposerError("not-installed", f"the agent command's program was not found (exit 127); "
                                 f"log: {log_path}\n{_tail(output)}")
        return ProposerError("agent-error", f"{what} exited with status {code}; log: {log_path}\n{_tail(output)}")

    def _move_scratch(self, ctx: ProposeContext, before: set[str], run_dir: Path) -> list[str]:
        """Move files the CLI left behind (history, caches) out of the work tree into the run
        folder, so they are neither mistaken for the change nor lost."""
        patterns = self.spec.scratch if self.spec else ()
        if not patterns:
            return []
        editable = ctx.config.task.editable
        moved = []
        for path in ctx.workspace.untracked():
            if path in before:
                continue
            top = path.split("/", 1)[0]
            if not any(fnmatch.fnmatchcase(top, p) for p in patterns):
                continue
            if any(fnmatch.fnmatchcase(path, p) for p in editable):
                continue
            src = ctx.workspace.root / path
            dest = run_dir / "agent-files" / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), str(dest))
            moved.append(path)
        for path in moved:  # empty folders are invisible to git, but tidy up
            parent = (ctx.workspace.root / path).parent
            while parent != ctx.workspace.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        return moved

    @staticmethod
    def _read_output(log_path: Path, offset: int, command: str) -> str:
        if not log_path.exists():
            return ""
        size = log_path.stat().st_size
        start = offset if offset <= size else 0  # the capped log was cut: read what is left
        start = max(start, size - OUTPUT_READ_MAX_BYTES)
        with open(log_path, "rb") as fh:
            fh.seek(start)
            text = fh.read().decode("utf-8", "replace")
        return text.removeprefix(f"$ {command}\n")  # the harness's echo of the command

    def _fallback_description(self, ctx: ProposeContext, moved: list[str]) -> str:
        changed = list(ctx.workspace.dirty())
        changed += [p for p in ctx.workspace.untracked() if p not in moved and
                    any(fnmatch.fnmatchcase(p, pat) for pat in ctx.config.task.editable)]
        who = self.spec.name if self.spec else "command"
        what = ", ".join(sorted(set(changed))[:4]) or "no files"
        return summary_line(f"{who}: edit {what} (no summary given)")


def _tail(output: str, n: int = ERROR_TAIL_LINES) -> str:
    lines = [line[:300] for line in output.splitlines() if line.strip()][-n:]
    return "\n".join(lines)


def make_coding_agent(config: TaskConfig, agent: str) -> CodingAgent:
    """`claude`, `claude:MODEL` (same for codex, aider, gemini, opencode), or
    `command:<shell command with placeholders>`. Raises ProposerError('not-installed') when
    the CLI is missing, with how to install it."""
    kind, _, spec_text = agent.strip().partition(":")
    extra = list(config.agent.extra_args)
    if kind == "command":
        template = spec_text.strip()
        if not template:
            raise ProposerError("agent-error", "command: needs a shell command, e.g. "
                                "--agent \"command:./my_agent.sh {brief_file}\"; placeholders: "
                                + ", ".join("{" + k + "}" for k in PLACEHOLDERS))
        _template_fields(template)
        proposer = CodingAgent(name="command", spec=None, model=config.agent.model, extra_args=extra,
                               template=template)
        proposer.check_installed(cwd=config.root)
        return proposer
    if kind not in CODING_AGENTS:
        raise ProposerError("agent-error", f"unknown coding agent {kind!r}; known: {', '.join(CODING_AGENTS)}, command")
    model = spec_text.strip() or config.agent.model
    proposer = CodingAgent(name=f"{kind}:{model}" if model else kind, spec=CODING_AGENTS[kind], model=model,
                           extra_args=extra)
    proposer.check_installed()
    return proposer


def _needed_paths(command: str, env: dict[str, str]) -> list[Path]:
    """What the agent's command needs to start that may live under /tmp (hidden by the agent's
    private /tmp otherwise): the files its command names, the folders on its PATH and the files
    its environment names. They are re-exposed read-only (the task's hidden parts stay hidden)."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    found = [Path(w) for w in words if w.startswith("/") and Path(w).exists()]
    found += [Path(d) for d in env.get("PATH", "").split(os.pathsep) if d.startswith("/") and Path(d).is_dir()]
    # files its environment names (OPENCODE_CONFIG, a credentials file, ...)
    found += [Path(v) for k, v in env.items() if k != "PATH" and v.startswith("/") and os.pathsep not in v
              and len(v) < 4096 and Path(v).exists()]
    return found
