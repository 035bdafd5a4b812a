"""A loopback HTTP server that speaks the real wire formats of OpenAI chat completions
(POST /v1/chat/completions) and Anthropic messages (POST /v1/messages), answering from a
queue of scripted replies and recording every request it receives.

    with FakeLLMServer() as server:
        server.queue("DESCRIPTION: ...\\n...")          # a text answer
        server.queue_error(500, "overloaded")           # an HTTP error
        server.queue_drop("body", "DESCRIPTION: ...")   # the connection dies mid-answer
        ...  # point a client at server.openai_base_url or server.anthropic_base_url
        server.requests[0].body["messages"]

An empty queue answers HTTP 500 with a message that says so, so a test that asks more often
than it scripted fails loudly instead of hanging.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Scripted:
    text: str = ""
    status: int = 200
    error: str = ""
    usage: tuple[int, int] | None = None  # (input, output); None: count words
    cost: float | None = None  # a provider-reported cost field in usage (OpenRouter style)
    finish: str = ""  # "" = natural stop; "length" = cut at max_tokens
    omit_usage: bool = False
    delay: float = 0.0  # seconds before answering (timeouts)
    drop: str = ""  # "" = answer in full; else where the connection is cut (see DROP_STAGES)


# Where `queue_drop` cuts the connection: before any byte of the response, right after the
# headers of a 200 answer, or halfway through its body (Content-Length promises the rest).
DROP_STAGES = ("request", "headers", "body")


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict[str, Any]
    at: float = field(default_factory=time.time)

    def all_text(self) -> str:
        """Every message's text (and the Anthropic system prompt), joined."""
        parts = []
        system = self.body.get("system")
        if isinstance(system, str):
            parts.append(system)
        for message in self.body.get("messages", []):
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts += [c.get("text", "") for c in content if isinstance(c, dict)]
        return "\n".join(parts)


def _count(text: str) -> int:
    return max(1, len(text.split()))


class FakeLLMServer:
    def __init__(self, api_key: str | None = None) -> None:
        """API_KEY: when set, requests with another key get a real-looking 401."""
        self.api_key = api_key
        self.replies: list[Scripted] = []
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        # a short poll interval: shutdown() waits up to one interval, and every test shuts one down
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # -- scripting ---------------------------------------------------------------------------

    def queue(self, text: str, *, usage: tuple[int, int] | None = None, cost: float | None = None,
              finish: str = "", omit_usage: bool = False, delay: float = 0.0) -> None:
        with self.lock:
            self.replies.append(Scripted(text=text, usage=usage, cost=cost, finish=finish, omit_usage=omit_usage,
                                         delay=delay))

    def queue_error(self, status: int, message: str) -> None:
        with self.lock:
            self.replies.append(Scripted(status=status, error=message))

    def queue_drop(self, stage: str = "body", text: str = "") -> None:
        """The next request gets a connection closed at STAGE (one of DROP_STAGES); for "headers"
        and "body" the promised answer is TEXT, so a half-sent body holds half of a real answer."""
        if stage not in DROP_STAGES:
            raise ValueError(f"drop stage {stage!r}: use one of {', '.join(DROP_STAGES)}")
        with self.lock:
            self.replies.append(Scripted(text=text, drop=stage))

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def openai_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeLLMServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- the HTTP side -----------------------------------------------------------------------

    def _next(self) -> Scripted:
        with self.lock:
            if not self.replies:
                return Scripted(status=500, error="fake server: no scripted reply left")
            return self.replies.pop(0)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: dict[str, Any], drop: str = "") -> None:
                data = json.dumps(payload).encode()
                if drop == "request":
                    self._hang_up()
                    return
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if drop == "headers":
                    self._hang_up()
                    return
                if drop == "body":
                    self.wfile.write(data[: len(data) // 2])
                    self._hang_up()
                    return
                self.wfile.write(data)

            def _hang_up(self) -> None:
                # Flush what was written, then let the server close the socket: the client sees
                # the connection end before the response (or its body) is complete.
                self.wfile.flush()
                self.close_connection = True

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": "fake-model", "object": "model",
                                                                  "created": 0, "owned_by": "test"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    self._send(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
                    return
                path = self.path.split("?", 1)[0]
                headers = {k.lower(): v for k, v in self.headers.items()}
                with server.lock:
                    server.requests.append(Received(path, headers, body))
                if path == "/v1/chat/completions":
                    self._openai(headers, body)
                elif path == "/v1/messages":
                    self._anthropic(headers, body)
                else:
                    self._send(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

            def _openai(self, headers: dict[str, str], body: dict[str, Any]) -> None:
                auth = headers.get("authorization", "")
                if not auth.startswith("Bearer ") or (server.api_key and auth != f"Bearer {server.api_key}"):
                    self._send(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                               "code": "invalid_api_key"}})
                    return
                if not isinstance(body.get("messages"), list) or not body.get("model"):
                    self._send(400, {"error": {"message": "model and messages are required",
                                               "type": "invalid_request_error"}})
                    return
                reply = server._next()
                time.sleep(reply.delay)
                if reply.status != 200:
                    self._send(reply.status, {"error": {"message": reply.error, "type": "server_error"}})
                    return
                prompt = "\n".join(str(m.get("content", "")) for m in body["messages"])
                tin, tout = reply.usage or (_count(prompt), _count(reply.text))
                payload: dict[str, Any] = {
                    "id": f"chatcmpl-fake{len(server.requests)}", "object": "chat.completion",
                    "created": int(time.time()), "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                                 "logprobs": None, "finish_reason": reply.finish or "stop"}],
                }
                if not reply.omit_usage:
                    payload["usage"] = {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}
                    if reply.cost is not None:
                        payload["usage"]["cost"] = reply.cost
                self._send(200, payload, reply.drop)

            def _anthropic(self, headers: dict[str, str], body: dict[str, Any]) -> None:
                # Anthropic SDKs before 1.0 send the key as `x-api-key`; later ones as a Bearer token.
                key = headers.get("x-api-key", "")
                if not key and headers.get("authorization", "").startswith("Bearer "):
                    key = headers["authorization"][len("Bearer "):]
                if not key or (server.api_key and key != server.api_key):
                    self._send(401, {"type": "error", "error": {"type": "authentication_error",
                                                                "message": "invalid x-api-key"}})
                    return
                if not headers.get("anthropic-version"):
                    self._send(400, {"type": "error", "error": {"type": "invalid_request_error",
                                                                "message": "anthropic-version header is required"}})
                    return
                if not isinstance(body.get("messages"), list) or not body.get("model") or "max_tokens" not in body:
                    self._send(400, {"type": "error", "error": {"type": "invalid_request_error",
                                                                "message": "model, messages and max_tokens are required"}})
                    return
                reply = server._next()
                time.sleep(reply.delay)
                if reply.status != 200:
                    kind = "overloaded_error" if reply.status == 529 else "api_error"
                    self._send(reply.status, {"type": "error", "error": {"type": kind, "message": reply.error}})
                    return
                prompt = "\n".join(str(m.get("content", "")) for m in body["messages"])
                tin, tout = reply.usage or (_count(prompt), _count(reply.text))
                usage: dict[str, Any] = {"input_tokens": tin, "output_tokens": tout}
                if reply.cost is not None:
                    usage["cost"] = reply.cost
                self._send(200, {
                    "id": f"msg_fake{len(server.requests)}", "type": "message", "role": "assistant",
                    "model": body["model"], "content": [{"type": "text", "text": reply.text}],
                    "stop_reason": "max_tokens" if reply.finish == "length" else "end_turn",
                    "stop_sequence": None, "usage": usage,
                }, reply.drop)

        return Handler
