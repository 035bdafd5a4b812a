"""The coding-agent CLIs autoresearch knows: how to invoke each one and how to read its output.

`coding_agent.CodingAgent` runs any of them the same way (sandbox, environment, timeout,
failures); what differs from one CLI to the next lives here, one `AgentSpec` per CLI in
`CODING_AGENTS`: its argv builder, its output parser (final message, tokens, cost), where
it leaves scratch files and how to install it. Adding a CLI means adding a spec here.

How each CLI is invoked (flags from each tool's own documentation; the table in
docs/guides/agents.md shows the whole command lines): ``claude -p --output-format json`` (one
result object: text, ``total_cost_usd``, ``usage``; as root see `claude_permission_args`),
``codex exec --sandbox workspace-write --json -`` (JSONL events; ``turn.completed`` carries
usage), ``aider --message-file brief --yes-always --no-auto-commits ... FILES`` (plain text;
its ``Tokens: ... Cost: ...`` lines and local event log give usage), ``gemini --yolo
--output-format json --prompt P`` (the prompt is appended to the brief on stdin; one JSON
document with per-model token ``stats``), ``opencode run --format json P`` (events;
``step_finish`` carries cost and tokens). A failure is read from the same output (see
`agent_errors` for what becomes of it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoresearch.proposers.agent_errors import http_status, inner_message, is_auth, one_line

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
GEMINI_AUTH_HINT = ' (set security.auth.selectedType = "gemini-api-key" in ~/.gemini/settings.json)'
OPENCODE_PROMPT = ("Carry out the task described below: edit the files in this folder, do not "
                   "commit, then end with a one-line summary of your change.")


@dataclass
class Outcome:
    """What an agent's output says about its work."""

    text: str = ""  # the final message (the summary is taken from it)
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    error: str = ""  # the failure the agent reported, on one line (whatever its exit status)
    status: int | None = None  # the HTTP status that failure names
    auth: bool = False  # the provider refused the credentials

    def failed(self, message: str, status: int | None = None) -> None:
        """Record MESSAGE (a CLI's error, maybe a JSON body) as the failure, on one line."""
        message = inner_message(message)
        self.error = one_line(message)
        self.status = status if status is not None else http_status(message)
        self.auth = is_auth(self.status, message)


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
    out = Outcome(text=text, tokens_in=tokens_in, tokens_out=tokens_out,
                  cost_usd=float(cost) if isinstance(cost, (int, float)) else None)
    if result.get("is_error") or str(result.get("subtype", "success")) != "success":
        status = result.get("api_error_status")
        subtype = str(result.get("subtype") or "")  # "success" with is_error: the API refused (a 401, say)
        out.failed(f"Claude Code reported {subtype if subtype not in ('', 'success') else 'an error'}: "
                   f"{text or '(no message)'}",
                   status if isinstance(status, int) else None)
    return out


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
            out.failed("Codex turn failed: " + str((event.get("error") or {}).get("message", "")))
        elif kind == "error":
            pending = "Codex error: " + str(event.get("message", ""))
    if pending and not out.error:
        out.failed(pending)
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
        message = str(err.get("message")) if isinstance(err, dict) else str(err)
        code = err.get("code") if isinstance(err, dict) else None
        hint = GEMINI_AUTH_HINT if code == 41 else ""  # no auth method chosen (a custom endpoint needs one)
        out.failed("Gemini CLI error: " + inner_message(message) + hint, code if isinstance(code, int) and code >= 100 else None)
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
            code = (data or {}).get("statusCode") if isinstance(data, dict) else None
            out.failed("opencode error: " + str(message or (err.get("name") if isinstance(err, dict) else err)),
                       code if isinstance(code, int) else None)
    if seen:
        # opencode reports 0 for a model it has no price for: unknown, not free.
        out.tokens_in, out.tokens_out, out.cost_usd = tin, tout, (cost if cost > 0 else None)
    return out


_AIDER_AUTH = "The API provider is not able to authenticate you"  # aider exits 0 after it
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
        if stripped.startswith(_AIDER_AUTH):
            out.failed("aider: " + stripped)
            out.auth = True
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
