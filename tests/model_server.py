"""A scripted model server on 127.0.0.1 that speaks what the released coding-agent CLIs speak.

The contract tests (test_agents_real.py) run the real Claude Code, Codex, Gemini CLI, opencode
and aider binaries against this server instead of a paid API. It answers, in each CLI's own
wire format:

- Anthropic Messages (``POST /v1/messages``, streamed as SSE or not): Claude Code;
- OpenAI Responses (``POST /v1/responses``, SSE): Codex;
- OpenAI chat completions (``POST /v1/chat/completions``, streamed or not): opencode, aider;
- Gemini ``…:generateContent`` / ``…:streamGenerateContent?alt=sse``: Gemini CLI.

Every "main" request (one that offers tools, or aider's chat) is answered by one script, the
same for every CLI: read the editable file, edit one constant (``MOMENTUM = 0.0`` to ``0.9``),
then answer with a ``summary:`` line. Which step comes next is read from the state of the
task on disk and from the conversation (was the file read yet?), so retries and side
requests (titles, routing, next-speaker checks) do not derail it. Tool names and argument
names are taken from the tool schemas the CLI sent, so a renamed parameter shows up as a
failed edit rather than as a silently skipped step.

Keys: a request whose key (``x-api-key``, ``Authorization: Bearer``, ``x-goog-api-key`` or
``?key=``) is not `TEST_KEY` gets the API's own HTTP 401 answer, as a real provider would
give for an invalid key; `denied()` counts them.

Faults: `fail_next(kind)` makes the next main request fail once, with ``"500"`` (an HTTP 500
with the API's error body) or ``"drop"`` (the stream starts, then the connection closes
before the response is complete). The CLI's retry is then what the test observes.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

EDIT_FILE = "train.py"
OLD_LINE = "MOMENTUM = 0.0"
NEW_LINE = "MOMENTUM = 0.9"
SUMMARY = "Raise MOMENTUM to 0.9 so gradient descent converges faster"
FINAL_TEXT = f"I raised MOMENTUM in train.py.\n\nsummary: {SUMMARY}"
# What each main response reports as usage; the tests compare the journal with these sums.
USAGE_IN = 1000
USAGE_OUT = 50
MAX_MAIN_REQUESTS = 8

READ_TOOLS = ("Read", "read_file", "read")
EDIT_TOOLS = ("Edit", "replace", "edit", "apply_patch")
SHELL_TOOLS = ("shell", "exec_command", "shell_command", "local_shell")
PATH_KEYS = ("file_path", "filePath", "absolute_path", "path")


@dataclass
class Step:
    """The next thing the model says: a tool call or the final text."""

    text: str = ""
    tool: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    custom: bool = False  # a freeform (custom) tool: args["input"] is the raw input


@dataclass
class Tool:
    name: str
    properties: dict[str, Any]
    custom: bool = False


@dataclass
class Record:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    main: bool
    fault: str = ""
    usage: tuple[int, int] | None = None  # what the answer reported (in, out)


class ModelServer:
    """The shared server: start once, `reset(root)` before each test."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.records: list[Record] = []
        self.faults: list[str] = []
        self.revoke_after: int | None = None  # requests with tools answered before the key stops working
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> "ModelServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self, root: Path) -> None:
        with self.lock:
            self.root = root.resolve()
            self.records = []
            self.faults = []
            self.revoke_after = None

    def fail_next(self, kind: str) -> None:
        assert kind in ("500", "drop")
        with self.lock:
            self.faults.append(kind)

    # -- what the tests read --------------------------------------------------------------

    def main_records(self) -> list[Record]:
        return [r for r in self.records if r.main]

    def denied(self) -> int:
        """How many requests were refused for a bad key (HTTP 401)."""
        return sum(1 for r in self.records if r.fault == "401")

    def reported_usage(self) -> tuple[int, int]:
        """Tokens (in, out) the server reported in all completed answers (side requests too)."""
        done = [r.usage for r in self.records if r.usage]
        return sum(u[0] for u in done), sum(u[1] for u in done)

    def prompts(self) -> str:
        """Every user-side text the main requests carried (the brief is in there)."""
        return "\n".join(_texts(r.body) for r in self.main_records())

    # -- the script -----------------------------------------------------------------------

    def take_fault(self) -> str:
        with self.lock:
            return self.faults.pop(0) if self.faults else ""

    def next_step(self, tools: list[Tool], transcript: str) -> Step:
        target = (self.root or Path.cwd()) / EDIT_FILE
        content = target.read_text() if target.exists() else ""
        if NEW_LINE in content:
            return Step(text=FINAL_TEXT)
        if len(self.main_records()) > MAX_MAIN_REQUESTS:  # the CLI's tools keep failing: give up
            return Step(text="I could not edit train.py: my tools failed.")
        by_name = {t.name: t for t in tools}
        has_read = OLD_LINE in transcript and "def train" in transcript  # the file's text came back
        if not has_read:
            read = _pick(by_name, READ_TOOLS)
            if read is not None:
                return Step(tool=read.name, args=self._path_args(read, with_edit=False))
            shell = _pick(by_name, SHELL_TOOLS)
            if shell is not None:
                return Step(tool=shell.name, args=_shell_args(shell, f"cat {EDIT_FILE}"))
        edit = _pick(by_name, EDIT_TOOLS)
        if edit is None:  # Codex offers no apply_patch tool for a model it has no metadata for
            shell = _pick(by_name, SHELL_TOOLS)
            if shell is None:
                return Step(text=FINAL_TEXT)
            sed = f"sed -i 's/^{OLD_LINE}/{NEW_LINE}/' {EDIT_FILE}"
            return Step(tool=shell.name, args=_shell_args(shell, sed))
        if edit.name == "apply_patch":
            patch = (f"*** Begin Patch\n*** Update File: {EDIT_FILE}\n@@\n-{_line(content, OLD_LINE)}\n"
                     f"+{_line(content, OLD_LINE).replace(OLD_LINE, NEW_LINE)}\n*** End Patch\n")
            return Step(tool=edit.name, args={"input": patch}, custom=edit.custom)
        return Step(tool=edit.name, args=self._path_args(edit, with_edit=True))

    def _path_args(self, tool: Tool, with_edit: bool) -> dict[str, Any]:
        props = tool.properties
        key = next((k for k in PATH_KEYS if k in props), "file_path")
        args: dict[str, Any] = {key: str((self.root or Path.cwd()) / EDIT_FILE)}
        if with_edit:
            args["oldString" if "oldString" in props else "old_string"] = OLD_LINE
            args["newString" if "newString" in props else "new_string"] = NEW_LINE
            if "instruction" in props:
                args["instruction"] = "Raise the MOMENTUM constant from 0.0 to 0.9."
        return args


def _line(content: str, needle: str) -> str:
    return next((line for line in content.splitlines() if line.startswith(needle)), needle)


def _pick(tools: dict[str, Tool], names: tuple[str, ...]) -> Tool | None:
    return next((tools[n] for n in names if n in tools), None)


def _shell_args(tool: Tool, command: str) -> dict[str, Any]:
    props = tool.properties
    if "cmd" in props:
        return {"cmd": command}
    if (props.get("command") or {}).get("type") == "array":
        return {"command": ["bash", "-lc", command]}
    return {"command": command}


def _texts(value: Any) -> str:
    """All strings in a request body, joined: enough to look for the brief and the file."""
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for k, x in v.items():
                if k not in ("tools", "functionDeclarations", "parameters", "input_schema"):
                    walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk({k: v for k, v in value.items() if k not in ("tools",)} if isinstance(value, dict) else value)
    return "\n".join(out)


# -- per-API tool lists ---------------------------------------------------------------------

def _anthropic_tools(body: dict) -> list[Tool]:
    return [Tool(t.get("name", ""), (t.get("input_schema") or {}).get("properties") or {})
            for t in body.get("tools") or [] if isinstance(t, dict)]


def _openai_tools(body: dict) -> list[Tool]:
    tools = []
    for t in body.get("tools") or []:
        if not isinstance(t, dict):
            continue
        if t.get("type") == "function" and isinstance(t.get("function"), dict):  # chat completions
            fn = t["function"]
            tools.append(Tool(fn.get("name", ""), (fn.get("parameters") or {}).get("properties") or {}))
        elif t.get("type") == "function":  # responses
            tools.append(Tool(t.get("name", ""), (t.get("parameters") or {}).get("properties") or {}))
        elif t.get("type") == "custom":
            tools.append(Tool(t.get("name", ""), {"input": {"type": "string"}}, custom=True))
        elif t.get("type") == "local_shell":
            tools.append(Tool("local_shell", {"command": {"type": "array"}}))
    return tools


def _gemini_tools(body: dict) -> list[Tool]:
    tools = []
    for group in body.get("tools") or []:
        for fn in (group or {}).get("functionDeclarations") or []:
            schema = fn.get("parametersJsonSchema") or fn.get("parameters") or {}
            tools.append(Tool(fn.get("name", ""), schema.get("properties") or {}))
    return tools


# -- the HTTP side ----------------------------------------------------------------------------

def _handler(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def do_GET(self) -> None:  # model lists (opencode, aider may ask)
            self._json(200, {"object": "list", "data": [{"id": "test-model", "object": "model"}], "models": []})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            path = self.path.split("?", 1)[0]
            headers = {k.lower(): v for k, v in self.headers.items()}
            if path.endswith("/count_tokens") or path.endswith(":countTokens"):
                self._json(200, {"input_tokens": 10, "totalTokens": 10})
                return
            api = ("anthropic" if path.endswith("/messages") else "responses" if path.endswith("/responses")
                   else "chat" if path.endswith("/chat/completions") else
                   "gemini" if ":generateContent" in path or ":streamGenerateContent" in path else "")
            if not api:
                self._json(404, {"error": {"message": f"no such endpoint {path}"}})
                return
            tools = {"anthropic": _anthropic_tools, "responses": _openai_tools, "chat": _openai_tools,
                     "gemini": _gemini_tools}[api](body)
            transcript = _texts(body)
            main = bool(tools) or "SEARCH" in transcript or "train.py" in transcript and api == "chat"
            record = Record(path=self.path, headers=headers, body=body, main=main)
            with server.lock:
                server.records.append(record)
            revoked = server.revoke_after is not None and sum(
                1 for r in server.main_records() if r.body.get("tools")) > server.revoke_after
            if revoked or _key(headers, self.path) != TEST_KEY:
                record.fault = "401"
                self._json(401, _auth_error_body(api))
                return
            if main:
                record.fault = server.take_fault()
                step = server.next_step(tools, transcript) if api != "chat" or tools else _aider_step(server, transcript)
            else:
                step = Step(text=_side_text(body))
            if record.fault == "500":
                self._json(500, _error_body(api))
                return
            stream = (api in ("responses",) or body.get("stream") is True or ":streamGenerateContent" in path)
            record.usage = (USAGE_IN, USAGE_OUT) if record.fault != "drop" else None
            writer = {"anthropic": _anthropic, "responses": _responses, "chat": _chat, "gemini": _gemini}[api]
            writer(self, step, stream, body, drop=record.fault == "drop")

        # -- low-level writers ------------------------------------------------------------

        def _json(self, code: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def sse(self, events: list[tuple[str, Any]], drop: bool) -> None:
            """Send SSE events (name may be ''); on drop, stop half-way and cut the connection."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            if drop:
                events = events[: max(1, len(events) // 2)]
            for name, data in events:
                chunk = (f"event: {name}\n" if name else "") + "data: " + (
                    data if isinstance(data, str) else json.dumps(data)) + "\n\n"
                self.wfile.write(chunk.encode())
                self.wfile.flush()
            if drop:
                time.sleep(0.05)
            self.close_connection = True

    return Handler


def _error_body(api: str) -> dict:
    if api == "anthropic":
        return {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}
    if api == "gemini":
        return {"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}}
    return {"error": {"message": "The server had an error while processing your request.", "type": "server_error",
                      "code": None, "param": None}}


def _key(headers: dict[str, str], path: str) -> str:
    """The API key a request presents, in whichever header its API uses."""
    bearer = headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        return bearer[7:].strip()
    for name in ("x-api-key", "x-goog-api-key"):
        if headers.get(name):
            return headers[name]
    query = path.partition("?")[2]
    return next((v for k, _, v in (p.partition("=") for p in query.split("&")) if k == "key"), "")


def _auth_error_body(api: str) -> dict:
    """Each API's answer to an invalid key (HTTP 401), as the providers word it."""
    if api == "anthropic":
        return {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
    if api == "gemini":
        return {"error": {"code": 401, "message": "API key not valid. Please pass a valid API key.",
                          "status": "UNAUTHENTICATED"}}
    return {"error": {"message": "Incorrect API key provided: sk-wrong. You can find your API key at "
                                 "https://platform.openai.com/account/api-keys.", "type": "invalid_request_error",
                      "code": "invalid_api_key", "param": None}}


def _side_text(body: dict) -> str:
    """A side request (title, topic, next speaker, routing): a short answer of the asked shape."""
    config = body.get("generationConfig") or {}
    if config.get("responseMimeType") == "application/json" or config.get("responseJsonSchema"):
        return json.dumps({"next_speaker": "user", "reasoning": "The task is done.",
                           "model_choice": "flash", "complexity_reasoning": "simple"})
    return "Raise MOMENTUM"


def _aider_step(server: ModelServer, transcript: str) -> Step:
    """aider has no tools: the file is in the chat, the edit is a block in the answer."""
    target = (server.root or Path.cwd()) / EDIT_FILE
    content = target.read_text() if target.exists() else ""
    old = _line(content, OLD_LINE)
    new = old.replace(OLD_LINE, NEW_LINE)
    if "<<<<<<< SEARCH" in transcript:  # the diff edit format
        return Step(text=f"{EDIT_FILE}\n```python\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE\n```\n\n"
                         f"summary: {SUMMARY}")
    whole = content.replace(old, new)  # the whole-file format
    return Step(text=f"{EDIT_FILE}\n```python\n{whole}```\n\nsummary: {SUMMARY}")


# -- Anthropic Messages ---------------------------------------------------------------------

def _anthropic(h: BaseHTTPRequestHandler, step: Step, stream: bool, body: dict, drop: bool) -> None:
    model = body.get("model", "test-model")
    block: dict[str, Any]
    if step.tool:
        block = {"type": "tool_use", "id": f"toolu_{int(time.time() * 1e6)}", "name": step.tool, "input": step.args}
        stop = "tool_use"
    else:
        block = {"type": "text", "text": step.text}
        stop = "end_turn"
    usage = {"input_tokens": USAGE_IN, "output_tokens": USAGE_OUT, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 0}
    message = {"id": "msg_test", "type": "message", "role": "assistant", "model": model, "content": [block],
               "stop_reason": stop, "stop_sequence": None, "usage": usage}
    if not stream:
        h._json(200, message)  # type: ignore[attr-defined]
        return
    start_block = dict(block, input={}) if step.tool else {"type": "text", "text": ""}
    delta = ({"type": "input_json_delta", "partial_json": json.dumps(step.args)} if step.tool
             else {"type": "text_delta", "text": step.text})
    events = [
        ("message_start", {"type": "message_start", "message": dict(message, content=[], stop_reason=None,
                                                                     usage=dict(usage, output_tokens=1))}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": start_block}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                           "usage": {"output_tokens": USAGE_OUT}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    h.sse(events, drop)  # type: ignore[attr-defined]


# -- OpenAI Responses -----------------------------------------------------------------------

def _responses(h: BaseHTTPRequestHandler, step: Step, stream: bool, body: dict, drop: bool) -> None:
    rid = f"resp_{int(time.time() * 1e6)}"
    if step.tool and step.custom:
        item = {"type": "custom_tool_call", "id": "ctc_1", "call_id": f"call_{rid}", "name": step.tool,
                "input": step.args["input"], "status": "completed"}
    elif step.tool:
        item = {"type": "function_call", "id": "fc_1", "call_id": f"call_{rid}", "name": step.tool,
                "arguments": json.dumps(step.args), "status": "completed"}
    else:
        item = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": step.text, "annotations": []}]}
    usage = {"input_tokens": USAGE_IN, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": USAGE_OUT,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": USAGE_IN + USAGE_OUT}
    response = {"id": rid, "object": "response", "created_at": int(time.time()), "status": "completed",
                "model": body.get("model", "test-model"), "output": [item], "usage": usage}
    events: list[tuple[str, Any]] = [
        ("response.created", {"type": "response.created", "response": dict(response, status="in_progress",
                                                                            output=[], usage=None)}),
        ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item}),
    ]
    if not step.tool:
        events.append(("response.output_text.delta", {"type": "response.output_text.delta", "item_id": "msg_1",
                                                      "output_index": 0, "content_index": 0, "delta": step.text}))
    events += [
        ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
        ("response.completed", {"type": "response.completed", "response": response}),
    ]
    if drop:  # cut after the item is announced, before the response completes
        events = events[:2]
    h.sse(events, False)  # type: ignore[attr-defined]


# -- OpenAI chat completions ----------------------------------------------------------------

def _chat(h: BaseHTTPRequestHandler, step: Step, stream: bool, body: dict, drop: bool) -> None:
    model = body.get("model", "test-model")
    usage = {"prompt_tokens": USAGE_IN, "completion_tokens": USAGE_OUT, "total_tokens": USAGE_IN + USAGE_OUT}
    call = {"id": f"call_{int(time.time() * 1e6)}", "type": "function",
            "function": {"name": step.tool, "arguments": json.dumps(step.args)}}
    message: dict[str, Any] = {"role": "assistant", "content": step.text or None}
    if step.tool:
        message["tool_calls"] = [call]
    finish = "tool_calls" if step.tool else "stop"
    if not stream:
        h._json(200, {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),  # type: ignore[attr-defined]
                      "model": model, "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                      "usage": usage})
        return
    base = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    delta: dict[str, Any] = {"role": "assistant"}
    if step.tool:
        delta["tool_calls"] = [dict(call, index=0)]
    else:
        delta["content"] = step.text
    events: list[tuple[str, Any]] = [
        ("", dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": None}])),
        ("", dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": finish}])),
        ("", dict(base, choices=[], usage=usage)),
        ("", "[DONE]"),
    ]
    if drop:
        events = events[:1]
    h.sse(events, False)  # type: ignore[attr-defined]


# -- Gemini ---------------------------------------------------------------------------------

def _gemini(h: BaseHTTPRequestHandler, step: Step, stream: bool, body: dict, drop: bool) -> None:
    part = {"functionCall": {"name": step.tool, "args": step.args}} if step.tool else {"text": step.text}
    usage = {"promptTokenCount": USAGE_IN, "candidatesTokenCount": USAGE_OUT, "totalTokenCount": USAGE_IN + USAGE_OUT}
    doc = {"candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
           "usageMetadata": usage, "modelVersion": "test-model"}
    if not stream:
        h._json(200, doc)  # type: ignore[attr-defined]
        return
    if drop:  # half a text, no finish reason, then the connection goes
        half = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Let me"}]}, "index": 0}]}
        h.sse([("", half)], True)  # type: ignore[attr-defined]
        return
    h.sse([("", doc)], False)  # type: ignore[attr-defined]


# -- pointing each CLI at the server ----------------------------------------------------------

TEST_KEY = "sk-autoresearch-test"
CODEX_HOME_ROOT = Path.home() / ".cache" / "autoresearch-agents" / "codex-homes"
# The --agent value each contract test passes (model names are the server's; any is accepted).
AGENT_ARG = {
    "claude": "claude:claude-sonnet-4-5",
    "codex": "codex:test-model",
    "gemini": "gemini:gemini-2.5-flash",
    "opencode": "opencode:local/test-model",
    "aider": "aider:openai/test-model",
}


def client_env(agent: str, url: str, home: Path, env: dict[str, str]) -> dict[str, str]:
    """ENV plus what AGENT needs to talk to the server at URL, with its config files written
    under HOME (a fresh folder per test, so no user config leaks in or out)."""
    env = dict(env)
    env["HOME"] = str(home)
    env["XDG_CONFIG_HOME"] = str(home / ".config")
    env["XDG_DATA_HOME"] = str(home / ".local" / "share")
    env["XDG_CACHE_HOME"] = str(home / ".cache")
    for key in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "CODEX_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY",
                "OPENAI_BASE_URL", "OPENAI_API_BASE", "ANTHROPIC_BASE_URL", "GOOGLE_GEMINI_BASE_URL"):
        env.pop(key, None)
    if agent == "claude":
        # Claude Code honours ANTHROPIC_BASE_URL; keep it off its update and telemetry hosts.
        env.update(ANTHROPIC_BASE_URL=url, ANTHROPIC_API_KEY=TEST_KEY, DISABLE_AUTOUPDATER="1",
                   CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", DISABLE_TELEMETRY="1")
    elif agent == "codex":
        # OPENAI_BASE_URL alone is ignored: a custom provider in config.toml, key from CODEX_API_KEY.
        # Not under /tmp: Codex refuses to put its sandbox helper (codex-linux-sandbox) on PATH
        # from a CODEX_HOME in a temporary folder, and every shell command then fails.
        codex_home = CODEX_HOME_ROOT / home.parent.name
        codex_home.mkdir(parents=True, exist_ok=True)
        (codex_home / "config.toml").write_text(
            'model = "test-model"\nmodel_provider = "loopback"\n\n[model_providers.loopback]\n'
            f'name = "loopback"\nbase_url = "{url}/v1"\nenv_key = "CODEX_API_KEY"\nwire_api = "responses"\n'
            "request_max_retries = 4\nstream_max_retries = 5\nstream_idle_timeout_ms = 20000\n")
        env.update(CODEX_HOME=str(codex_home), CODEX_API_KEY=TEST_KEY)
    elif agent == "gemini":
        # With a custom base URL the auth method must be chosen in settings.json.
        settings = home / ".gemini" / "settings.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(json.dumps({
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "privacy": {"usageStatisticsEnabled": False},
            "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
        }))
        env.update(GEMINI_API_KEY=TEST_KEY, GOOGLE_GEMINI_BASE_URL=url)
    elif agent == "opencode":
        config = home / "opencode.json"
        config.write_text(json.dumps({
            "$schema": "https://opencode.ai/config.json", "autoupdate": False, "share": "disabled",
            "provider": {"local": {"npm": "@ai-sdk/openai-compatible", "name": "loopback",
                                   "options": {"baseURL": f"{url}/v1", "apiKey": TEST_KEY},
                                   "models": {"test-model": {"name": "test-model"}}}},
        }))
        env.update(OPENCODE_CONFIG=str(config), OPENCODE_DISABLE_AUTOUPDATE="1", OPENCODE_DISABLE_MODELS_FETCH="1",
                   OPENCODE_DISABLE_LSP_DOWNLOAD="true")
    elif agent == "aider":
        env.update(OPENAI_API_BASE=f"{url}/v1", OPENAI_API_KEY=TEST_KEY, LITELLM_LOCAL_MODEL_COST_MAP="True")
    else:
        raise ValueError(agent)
    return env
