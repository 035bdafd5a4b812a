"""Coding-agent CLIs as proposers: Claude Code, Codex, aider, Gemini CLI, opencode, and any
other command.

Each call starts the agent once, non-interactively, in the scratch copy of the best (its cwd), with the
brief as its prompt; the agent edits the editable files in place and exits. Its output
(stdout and stderr together) goes to ``.autoresearch/runs/<seq>/agent.log`` through
`harness.process.run_command` (own process group, hard timeout), never to the terminal. The
orchestrator then commits, runs and measures whatever the tree holds; nothing here commits.

This module is the runner, the same for every CLI: the sandbox, the environment, the
timeout, mapping failures to clear errors, moving scratch files out of the work tree and
turning the final message into a one-line description. What differs per CLI (its flags,
its output format, its install hint) is in `agent_clis`, whose names are re-exported here.

- a named CLI (``claude``, ``codex``, ``aider``, ``gemini``, ``opencode``): see `agent_clis`.
- ``command:<shell command>``: anything else, run through ``/bin/sh -c`` with placeholders
  (see `PLACEHOLDERS`); the brief is also on its stdin.

``--agent claude:MODEL`` (any named CLI) overrides ``[agent] model``; ``[agent] extra_args``
are appended to the CLI's arguments (for ``command:``, to the end of the command, quoted).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
import shlex
import shutil
import string
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.config.task import TaskConfig
from autoresearch.harness.env import base_env
from autoresearch.harness.process import run_command
from autoresearch.harness.sandbox import SandboxSpec, agent_hidden, agent_spec, resolve_kind, seed_agent_home
from autoresearch.proposers.agent_clis import (  # noqa: F401 - re-exported: tests and callers import them from here
    AIDER_EVENTS,
    CLAUDE_ROOT_REFUSAL,
    CLAUDE_ROOT_TOOLS,
    CODING_AGENTS,
    GEMINI_PROMPT,
    OPENCODE_PROMPT,
    AgentSpec,
    Invocation,
    Outcome,
    aider_events_usage,
    build_aider,
    build_claude,
    build_codex,
    build_gemini,
    build_opencode,
    claude_permission_args,
    json_values,
    parse_aider,
    parse_claude,
    parse_codex,
    parse_gemini,
    parse_opencode,
    parse_plain,
)
from autoresearch.proposers.agent_errors import auth_reason
from autoresearch.proposers.base import Proposal, ProposeContext, ProposerError
from autoresearch.proposers.guard_env import PROPOSING_ENV

DESCRIPTION_MAX_CHARS = 72  # a commit subject line
DESCRIPTION_BODY_MAX_CHARS = 2000  # the whole summary, in the commit message's body
ERROR_TAIL_LINES = 20
OUTPUT_READ_MAX_BYTES = 4 * 1024 * 1024

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


_SUMMARY = re.compile(r"^\W*(?:one-line\s+)?(?:summary|description|change)\s*\**\s*[:\-–]\s*(.+)$", re.IGNORECASE)


def summary_line(text: str) -> str:
    """The one-line summary in an agent's final message (`full_summary`), clipped to a commit
    subject's length."""
    chosen = full_summary(text)
    if len(chosen) > DESCRIPTION_MAX_CHARS:
        chosen = chosen[: DESCRIPTION_MAX_CHARS - 1].rstrip() + "…"
    return chosen


def full_summary(text: str) -> str:
    """The summary in an agent's final message: the last `Summary: ...` line if there is one,
    else its last line; markdown decoration removed, whitespace collapsed, never clipped."""
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
    return " ".join(chosen.split())[:DESCRIPTION_BODY_MAX_CHARS]


def running_as_root() -> bool:
    """Whether claude needs the root-safe permission flags (a module function, so tests can
    stand in for root)."""
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
        # read whatever the CLI said, success or not: a failed attempt's usage is recorded too
        outcome = (self.spec.parse if self.spec else parse_plain)(output)
        if self.spec is not None and self.spec.refine is not None:
            outcome = self.spec.refine(outcome, run_dir)
        if outcome.auth and self.spec is not None:  # whatever the exit status: aider exits 0 on a bad key
            raise _error("agent-error", f"{auth_reason(self.spec.name, outcome.status, output)}; "
                         f"log: {ctx.log_path}\n{outcome.error}", outcome, kind="auth")
        if result.timed_out:
            raise _error("agent-timeout", f"{what} did not finish within {ctx.timeout:g} s and was killed "
                         f"([agent] timeout); log: {ctx.log_path}\n{_tail(output)}", outcome)
        if result.exit_code != 0:
            raise self._failure(result.exit_code, output, ctx.log_path, outcome)
        if outcome.error:
            raise _error("agent-error", f"{outcome.error}; log: {ctx.log_path}\n{_tail(output)}", outcome)
        description = summary_line(outcome.text) or self._fallback_description(ctx, moved)
        full = full_summary(outcome.text)
        return Proposal(description=description, tokens_in=outcome.tokens_in, tokens_out=outcome.tokens_out,
                        cost_usd=outcome.cost_usd, model_driven=True, body=full if full != description else "")

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

    def _failure(self, code: int | None, output: str, log_path: Path, outcome: Outcome) -> ProposerError:
        what = self.spec.title if self.spec else "the agent command"
        if self.spec is not None and self.spec.name == "claude" and CLAUDE_ROOT_REFUSAL in output:
            return _error(
                "agent-error",
                "Claude Code refuses --dangerously-skip-permissions as root. Run autoresearch as a non-root "
                "user; or, if this machine is a disposable sandbox, export IS_SANDBOX=1; or drop the bypass "
                "from [agent] extra_args (as root autoresearch uses --permission-mode acceptEdits). "
                f"Log: {log_path}", outcome)
        if code == 127 and self.spec is None:
            return ProposerError("not-installed", f"the agent command's program was not found (exit 127); "
                                 f"log: {log_path}\n{_tail(output)}")
        said = f": {outcome.error}" if outcome.error else ""  # the CLI's own reason, on one line
        return _error("agent-error", f"{what} exited with status {code}{said}; log: {log_path}\n{_tail(output)}",
                      outcome)

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


def _error(reason: str, message: str, outcome: Outcome, kind: str = "") -> ProposerError:
    """A failure that carries what the attempt still cost, as the agent reported it."""
    return ProposerError(reason, message, kind=kind, tokens_in=outcome.tokens_in, tokens_out=outcome.tokens_out,
                         cost_usd=outcome.cost_usd)


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
