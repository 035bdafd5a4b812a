"""The API proposer: one chat request per experiment to an OpenAI-compatible server or to
Anthropic's messages API, answered in the edit format of `edits.py` and applied atomically.

Configuration (``[agent]`` of autoresearch.toml; the CLI's --provider/--model/--base-url map
onto the same keys)::

    kind = "api"
    provider = "openai"        # or "anthropic": the wire format
    model = "gpt-4o-mini"      # default per provider in DEFAULT_MODELS
    base_url = ""              # default: the SDK's; a local server: "http://127.0.0.1:8000/v1"
    api_key_env = ""           # default OPENAI_API_KEY / ANTHROPIC_API_KEY
    temperature = 0.7
    max_tokens = 8192
    timeout = 1800             # seconds for the whole proposal, retries included

``--agent api:MODEL`` or ``--agent api:anthropic:MODEL`` picks the model (and provider) on
the command line. A server without keys (llama.cpp, vLLM, Ollama) gets a dummy key when the
variable is unset and a base URL is given.

One proposal: the model receives the brief (which carries the crash log tail when the loop
asks for a repair) and the current editable files (plus the read-only files, within a budget),
and answers with ``DESCRIPTION: ...`` and edit blocks. An answer that cannot be applied is
sent back once with the error; a second bad answer raises ``ProposerError('bad-edit')``.
Network errors, 408/409/429 and 5xx responses are retried with exponential backoff, then
raise ``ProposerError('agent-error')``. The whole conversation goes to ``ctx.log_path``.

Tokens are what the server reports in ``usage``. Cost is the server's own ``cost`` field when
it sends one (OpenRouter does), else tokens times `PRICES_PER_MTOK` for well-known models,
else None (local servers, unknown models).
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import os
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TextIO

from autoresearch.config.task import TaskConfig
from autoresearch.proposers.base import Proposal, ProposeContext, ProposerError
from autoresearch.proposers.edits import FORMAT_HELP, EditError, apply_answer

PROVIDERS = ("openai", "anthropic")
DEFAULT_MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-6"}
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
BASE_URL_ENV = {"openai": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL"}
DUMMY_KEY = "sk-no-key-required"  # local servers ignore it, but the SDKs insist on one
INSTALL_HINT = 'pip install "autoresearch[api]"'

HTTP_ATTEMPTS = 4  # one request plus three retries of a transient failure
BACKOFF_S = 2.0  # the first retry waits this long, then 2x, 4x
BAD_EDIT_RETRIES = 1  # a malformed answer goes back to the model once with the error
TRANSIENT_STATUS = {408, 409, 429}  # plus every 5xx

FILE_MAX_CHARS = 100_000  # an editable file larger than this is cut in the prompt
READONLY_CONTEXT_MAX_CHARS = 20_000  # read-only harness files shown for context, in total
FIX_DIFF_MAX_CHARS = 6_000  # the crashed change, shown when the loop asks for a repair

# USD per million tokens (input, output), from the providers' public price pages (2025).
# Names match by the longest prefix, so dated snapshots ("gpt-4o-2024-08-06") find their family;
# a router prefix ("openai/gpt-4o") is ignored. Unknown models cost None, never a guess.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "claude-opus-4": (15.00, 75.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4-5": (5.00, 25.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-sonnet-4-6": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-5-haiku": (0.80, 4.00),
}

SYSTEM_PROMPT = f"""\
You are an autonomous researcher improving a measured metric by editing code. Each message
gives you the brief for one experiment and the current content of the files. You cannot run
anything: the orchestrator applies your edit, runs the experiment and measures the metric.
Make the one focused change the brief asks for, then stop.

{FORMAT_HELP}"""


def price_for(model: str) -> tuple[float, float] | None:
    """(input, output) USD per million tokens for a well-known model, else None."""
    name = model.rsplit("/", 1)[-1].lower()
    best = ""
    for key in PRICES_PER_MTOK:
        if (name == key or name.startswith(key + "-")) and len(key) > len(best):
            best = key
    return PRICES_PER_MTOK[best] if best else None


def estimate_cost(model: str, tokens_in: int | None, tokens_out: int | None) -> float | None:
    price = price_for(model)
    if price is None or tokens_in is None or tokens_out is None:
        return None
    return (tokens_in * price[0] + tokens_out * price[1]) / 1_000_000


@dataclass
class Reply:
    """One model answer and what the server said it cost."""

    text: str
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None  # reported by the server, not estimated
    truncated: bool = False  # the answer hit max_tokens


def _add(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _number(obj: Any, name: str) -> float | None:
    """A numeric field of an SDK object, including fields the SDK does not model (extras)."""
    if obj is None:
        return None
    value = getattr(obj, name, None)
    if value is None:
        extra = getattr(obj, "model_extra", None) or {}
        value = extra.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _int(obj: Any, name: str) -> int | None:
    value = _number(obj, name)
    return int(value) if value is not None else None


def load_sdk(provider: str) -> ModuleType:
    """The official SDK of PROVIDER; ProposerError('not-installed') when it is missing."""
    try:
        return importlib.import_module(provider)
    except ImportError:
        raise ProposerError("not-installed", f"the {provider} SDK is not installed: {INSTALL_HINT}") from None


class ApiProposer:
    """Proposes one edit per call through a chat API (see the module docstring)."""

    name = "api"
    writes_notes = False  # it answers with edits of the editable files: no notes.md in its brief

    def __init__(self, config: TaskConfig, *, provider: str, model: str, base_url: str | None, api_key: str,
                 backoff_s: float = BACKOFF_S) -> None:
        self.config = config
        self.provider = provider
        self.model = model
        self.base_url = base_url
        self.api_key = api_key
        self.backoff_s = backoff_s
        self.temperature: float | None = config.agent.temperature
        self.max_tokens = config.agent.max_tokens
        self.token_param = "max_tokens"  # some OpenAI models want max_completion_tokens instead
        self.sdk = load_sdk(provider)
        self._client: Any = None

    # -- the client ------------------------------------------------------------------------

    def client(self) -> Any:
        if self._client is None:
            kwargs: dict[str, Any] = {"api_key": self.api_key, "max_retries": 0}  # retries are ours, logged
            if self.base_url:
                kwargs["base_url"] = self.base_url
            cls = self.sdk.OpenAI if self.provider == "openai" else self.sdk.Anthropic
            self._client = cls(**kwargs)
        return self._client

    # -- one proposal ----------------------------------------------------------------------

    def propose(self, ctx: ProposeContext) -> Proposal:
        deadline = time.monotonic() + max(1.0, ctx.timeout)
        ctx.log_path.parent.mkdir(parents=True, exist_ok=True)
        root = ctx.workspace.root
        editable = ctx.editable_files
        messages = [{"role": "user", "content": self.user_prompt(ctx)}]
        tokens_in: int | None = None
        tokens_out: int | None = None
        reported_cost: float | None = None
        all_reported = True
        with open(ctx.log_path, "a", encoding="utf-8") as log:
            log.write(f"=== autoresearch api proposer: seq {ctx.seq}, provider {self.provider}, model {self.model}, "
                      f"base_url {self.base_url or '(SDK default)'}, {dt.datetime.now().isoformat(timespec='seconds')}\n")
            for answer_no in range(1, BAD_EDIT_RETRIES + 2):
                try:
                    reply = self.complete(messages, deadline, log)
                except ProposerError as err:
                    err.tokens_in, err.tokens_out = tokens_in, tokens_out  # type: ignore[attr-defined]
                    err.cost_usd = self._cost(tokens_in, tokens_out, reported_cost, all_reported)  # type: ignore[attr-defined]
                    raise
                tokens_in = _add(tokens_in, reply.tokens_in)  # type: ignore[assignment]
                tokens_out = _add(tokens_out, reply.tokens_out)  # type: ignore[assignment]
                reported_cost = _add(reported_cost, reply.cost_usd)
                all_reported = all_reported and reply.cost_usd is not None
                try:
                    parsed, changed = apply_answer(root, reply.text, editable)
                except EditError as exc:
                    problem = str(exc)
                    if reply.truncated:
                        problem += (f" (the answer was cut off at max_tokens={self.max_tokens}: use short "
                                    "SEARCH/REPLACE blocks instead of long ones)")
                    log.write(f"--- answer {answer_no} could not be applied: {problem}\n")
                    log.flush()
                    if answer_no > BAD_EDIT_RETRIES:
                        failure = ProposerError("bad-edit", f"the model's answer could not be applied twice; "
                                                            f"last error: {problem}")
                        failure.tokens_in, failure.tokens_out = tokens_in, tokens_out  # type: ignore[attr-defined]
                        failure.cost_usd = self._cost(  # type: ignore[attr-defined]
                            tokens_in, tokens_out, reported_cost, all_reported)
                        raise failure from None
                    messages += [
                        {"role": "assistant", "content": reply.text or "(empty answer)"},
                        {"role": "user", "content": (
                            f"Your answer could not be applied: {problem}\nNothing was changed; the files are as shown "
                            "above. Answer again with the complete edit (the DESCRIPTION line and every block), "
                            "following the format exactly.")},
                    ]
                    continue
                description = parsed.description or f"edit {', '.join(changed) or 'files'}"
                log.write(f"--- applied answer {answer_no}: changed {', '.join(changed) or 'nothing'}; "
                          f"description: {description}\n")
                return Proposal(description=description, tokens_in=tokens_in, tokens_out=tokens_out,
                                cost_usd=self._cost(tokens_in, tokens_out, reported_cost, all_reported),
                                model_driven=True)
        raise AssertionError("unreachable")  # pragma: no cover

    def _cost(self, tokens_in: int | None, tokens_out: int | None, reported: float | None,
              all_reported: bool) -> float | None:
        if reported is not None and all_reported:
            return reported
        return estimate_cost(self.model, tokens_in, tokens_out)

    # -- the prompt ------------------------------------------------------------------------

    def user_prompt(self, ctx: ProposeContext) -> str:
        root = ctx.workspace.root
        parts = [ctx.brief.rstrip(), "", "## Editable files (current content)", ""]
        for rel in ctx.editable_files:
            text = (root / rel).read_text(encoding="utf-8", errors="replace")
            if len(text) > FILE_MAX_CHARS:
                text = text[:FILE_MAX_CHARS] + "\n[cut here: the file is longer; edit only the part shown]"
            parts += [f"### {rel}", "````", text.rstrip("\n"), "````", ""]
        readonly = [p for p in self.config.readonly_files(root) if p not in ctx.editable_files]
        if readonly:
            parts += ["## Read-only harness files (for context; never edit them)", ""]
            budget = READONLY_CONTEXT_MAX_CHARS
            for rel in readonly:
                text = (root / rel).read_text(encoding="utf-8", errors="replace")
                if budget <= 0:
                    parts += [f"### {rel}", "(not shown: over the context budget)", ""]
                    continue
                if len(text) > budget:
                    text = text[:budget] + "\n[cut: over the context budget]"
                budget -= len(text)
                parts += [f"### {rel}", "````", text.rstrip("\n"), "````", ""]
        fix = ctx.fix
        if fix is not None and fix.commit_sha and fix.parent:
            try:
                diff = ctx.workspace.diff(fix.parent, fix.commit_sha, ctx.editable_files)
            except Exception:  # noqa: BLE001 - context only; a missing commit must not fail the proposal
                diff = ""
            if diff.strip():
                if len(diff) > FIX_DIFF_MAX_CHARS:
                    diff = diff[:FIX_DIFF_MAX_CHARS] + "\n[diff cut]"
                parts += [f"## The change of seq {fix.seq} that crashed (diff against its parent)", "```diff",
                          diff.rstrip("\n"), "```", ""]
        parts += ["Answer now: the DESCRIPTION line, then the edit blocks, in the format of the instructions."]
        return "\n".join(parts)

    # -- the request, with retries ---------------------------------------------------------

    def complete(self, messages: list[dict[str, str]], deadline: float, log: TextIO) -> Reply:
        """One answer from the model. Transient failures are retried with backoff."""
        sdk = self.sdk
        attempt = 0
        adjustments = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProposerError("agent-timeout", f"no answer from {self.provider} within the agent timeout")
            log.write(f"--- request (attempt {attempt}) to {self.provider} model {self.model} ---\n")
            if self.provider == "openai":
                log.write(f"[system]\n{SYSTEM_PROMPT}\n")
            log.writelines(f"[{message['role']}]\n{message['content']}\n" for message in messages)
            log.flush()
            began = time.monotonic()
            try:
                reply = self._call(messages, remaining)
            except sdk.APIStatusError as exc:
                status = exc.status_code
                detail = _error_text(exc)
                log.write(f"--- HTTP {status} after {time.monotonic() - began:.2f} s: {detail}\n")
                if status == 400 and adjustments < 2 and self._adjust(detail):
                    adjustments += 1
                    attempt -= 1
                    log.write("--- retrying with adjusted parameters\n")
                    continue
                if status not in TRANSIENT_STATUS and status < 500:
                    raise ProposerError("agent-error", f"{self.provider} API error {status}: {detail}") from None
                problem = f"HTTP {status}: {detail}"
            except sdk.APIConnectionError as exc:  # also the SDK's timeout error
                problem = f"{type(exc).__name__}: {exc}"
                if exc.__cause__ is not None and str(exc.__cause__):
                    # the SDK says only "Connection error."; the transport's reason (refused,
                    # disconnected, body cut short) is what a user can act on
                    problem += f" ({exc.__cause__})"
                log.write(f"--- {problem} after {time.monotonic() - began:.2f} s\n")
                if deadline - time.monotonic() <= 0:
                    raise ProposerError("agent-timeout", f"no answer from {self.provider} within the agent "
                                                         "timeout") from None
            except sdk.APIError as exc:  # a response the SDK could not read
                log.write(f"--- {type(exc).__name__}: {exc}\n")
                raise ProposerError("agent-error", f"{self.provider} API: {exc}") from None
            else:
                log.write(f"--- response after {time.monotonic() - began:.2f} s (tokens in {reply.tokens_in}, "
                          f"out {reply.tokens_out}{', cut at max_tokens' if reply.truncated else ''}) ---\n"
                          f"{reply.text}\n")
                log.flush()
                return reply
            if attempt >= HTTP_ATTEMPTS:
                raise ProposerError("agent-error", f"{self.provider} API failed {attempt} times; last: {problem}")
            wait = min(self.backoff_s * 2 ** (attempt - 1), max(0.0, deadline - time.monotonic()))
            log.write(f"--- retrying in {wait:.1f} s\n")
            log.flush()
            time.sleep(wait)

    def _adjust(self, detail: str) -> bool:
        """Adapt to an OpenAI model that rejects a parameter (reasoning models); True if changed."""
        text = detail.lower()
        if self.provider != "openai":
            return False
        if "max_completion_tokens" in text and self.token_param != "max_completion_tokens":
            self.token_param = "max_completion_tokens"
            return True
        if "temperature" in text and self.temperature is not None:
            self.temperature = None
            return True
        return False

    def _call(self, messages: list[dict[str, str]], timeout: float) -> Reply:
        client = self.client()
        if self.provider == "openai":
            kwargs: dict[str, Any] = {self.token_param: self.max_tokens}
            if self.temperature is not None:
                kwargs["temperature"] = self.temperature
            response = client.chat.completions.create(
                model=self.model, messages=[{"role": "system", "content": SYSTEM_PROMPT}, *messages],
                timeout=timeout, **kwargs)
            choice = response.choices[0] if response.choices else None
            text = (choice.message.content if choice is not None and choice.message is not None else None) or ""
            usage = response.usage
            return Reply(text=text, tokens_in=_int(usage, "prompt_tokens"), tokens_out=_int(usage, "completion_tokens"),
                         cost_usd=_number(usage, "cost") if _number(usage, "cost") is not None else _number(response, "cost"),
                         truncated=choice is not None and choice.finish_reason == "length")
        kwargs = {}
        if self.temperature is not None and _accepts(client.messages.create, "temperature"):
            # Anthropic's range is [0, 1]; recent SDKs dropped sampling parameters, so it is sent only
            # where the SDK still takes it.
            kwargs["temperature"] = min(1.0, max(0.0, self.temperature))
        response = client.messages.create(model=self.model, system=SYSTEM_PROMPT, messages=messages,
                                          max_tokens=self.max_tokens, timeout=timeout, **kwargs)
        text = "".join(getattr(block, "text", "") for block in response.content or []
                       if getattr(block, "type", "") == "text")
        usage = response.usage
        tokens_in = _int(usage, "input_tokens")
        if tokens_in is not None:  # prompt caching reports the cached part separately
            tokens_in += (_int(usage, "cache_creation_input_tokens") or 0) + (_int(usage, "cache_read_input_tokens") or 0)
        return Reply(text=text, tokens_in=tokens_in, tokens_out=_int(usage, "output_tokens"),
                     cost_usd=_number(usage, "cost"), truncated=response.stop_reason == "max_tokens")


def _accepts(fn: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _error_text(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
    return str(getattr(exc, "message", exc))[:500]


def _split_agent(agent: str) -> tuple[str | None, str | None]:
    """`api` -> (None, None); `api:MODEL` -> (None, MODEL); `api:anthropic:MODEL` -> (anthropic, MODEL)."""
    spec = agent.partition(":")[2].strip()
    if not spec:
        return None, None
    head, _, rest = spec.partition(":")
    if head in PROVIDERS:
        return head, rest.strip() or None
    return None, spec


def make_api_proposer(config: TaskConfig, agent: str) -> ApiProposer:
    """The factory the registry calls for `--agent api[:[provider:]model]`."""
    provider, model = _split_agent(agent)
    provider = provider or config.agent.provider
    if provider not in PROVIDERS:
        raise ProposerError("agent-error", f"unknown API provider {provider!r}; use one of {', '.join(PROVIDERS)}")
    model = model or config.agent.model or DEFAULT_MODELS[provider]
    base_url = config.agent.base_url.strip() or None
    if base_url and provider == "anthropic" and base_url.rstrip("/").endswith("/v1"):
        base_url = base_url.rstrip("/")[:-3]  # the Anthropic SDK adds /v1 itself; accept the OpenAI habit
    key_env = config.agent.api_key_env or DEFAULT_KEY_ENV[provider]
    api_key = os.environ.get(key_env, "")
    if not api_key:
        if base_url or os.environ.get(BASE_URL_ENV[provider]):
            api_key = DUMMY_KEY  # a local server without authentication
        else:
            raise ProposerError("agent-error", f"no API key: set {key_env} (or [agent] api_key_env), or point "
                                               "[agent] base_url / --base-url at a local server")
    return ApiProposer(config, provider=provider, model=model, base_url=base_url, api_key=api_key)


__all__ = ["PRICES_PER_MTOK", "SYSTEM_PROMPT", "ApiProposer", "estimate_cost", "make_api_proposer", "price_for"]
