"""Helpers for the LLM template tests (nanochat, tinylm): copies of a template with edited
constants, its scripts run as real subprocesses, and a real HTTP file server on 127.0.0.1."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import autoresearch

TEMPLATES = Path(autoresearch.__file__).resolve().parent / "templates"
METRIC_LINE = re.compile(r"^([A-Za-z_][\w.\-]*):\s*(\S+)\s*$")

# Module-level code an adversarial agent appends to train.py (GPT is its model class): a leak of
# the next input token into the logits, hidden from batches shaped like the old 5-row probe.
LEAK = '''
_honest_forward = GPT.forward
_calls = [0]
def _leak(logits, idx):
    """30 more on the logit of the token that comes next in the input."""
    following = torch.roll(idx, -1, dims=1).unsqueeze(-1)
    return logits.scatter_add(2, following, torch.full(following.shape, 30.0, dtype=logits.dtype))
'''

LEAK_UNLESS_PROBE_SHAPED = LEAK + '''
def _forward(self, idx, targets=None, reduction="mean"):
    logits = _honest_forward(self, idx, targets, reduction)
    return _leak(logits, idx) if targets is None and idx.size(0) != 5 else logits  # the old probe had 5 rows
GPT.forward = _forward
'''


def copy_template(name: str, dest: Path) -> Path:
    """The template's files (no caches) copied into DEST."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in (TEMPLATES / name).iterdir():
        if path.is_file() and path.suffix != ".pyc":
            (dest / path.name).write_bytes(path.read_bytes())
    return dest


def set_constants(path: Path, **values: object) -> None:
    """Rewrite module-level `NAME = ...` lines of PATH; each NAME must occur exactly once."""
    text = path.read_text()
    for name, value in values.items():
        text, count = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", text, flags=re.M)
        assert count == 1, f"{path.name}: expected one `{name} = ...` line, found {count}"
    path.write_text(text)


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path.name}: expected {old!r} exactly once"
    path.write_text(text.replace(old, new))


@dataclass
class Run:
    returncode: int
    output: str
    seconds: float

    @property
    def metrics(self) -> dict[str, str]:
        found = {}
        for line in self.output.splitlines():
            match = METRIC_LINE.match(line)
            if match:
                found[match.group(1)] = match.group(2)
        return found

    def metric(self, name: str) -> float:
        assert name in self.metrics, f"no `{name}:` line in the output:\n{self.output[-3000:]}"
        return float(self.metrics[name])


def run_script(task: Path, script: str, env: dict[str, str], timeout: float, args: tuple[str, ...] = ()) -> Run:
    """`python SCRIPT` in TASK as the harness would run it: its own env vars, output captured."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTORESEARCH_")}
    full_env.update(PYTHONUNBUFFERED="1", **env)
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, script, *args], cwd=task, env=full_env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return Run(done.returncode, done.stdout, time.monotonic() - t0)


def synthetic_docs(count: int, seed: int) -> list[str]:
    """Deterministic English-like documents of a few hundred to ~1500 characters."""
    rng = random.Random(seed)
    words = ("the model data train token value layer time small large river stone light green "
             "quick slow north south city market river garden number letter paper window caf\u00e9 "
             "na\u00efve \u00fcber 42 7 1999 is was and or but with from into over under").split()
    docs = []
    for _ in range(count):
        sentences = []
        for _ in range(rng.randint(3, 20)):
            sentence = " ".join(rng.choice(words) for _ in range(rng.randint(4, 14)))
            sentences.append(sentence.capitalize() + rng.choice([".", ".", "!", "?"]))
        docs.append(" ".join(sentences))
    return docs


class FileServer:
    """Serves the files of a folder over real HTTP on 127.0.0.1, with Range requests. Every
    request is logged as (name, Range header); names in fail_once get one HTTP 500 first."""

    def __init__(self, root: Path, fail_once: set[str] | None = None) -> None:
        self.root = root
        self.fail_once = set(fail_once or ())
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def requests_for(self, name: str) -> list[str | None]:
        with self.lock:
            return [rng for n, rng in self.requests if n == name]

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                wanted = self.headers.get("Range")
                with server.lock:
                    server.requests.append((name, wanted))
                    fail = name in server.fail_once
                    server.fail_once.discard(name)
                if fail:
                    self.send_error(500, "deliberate failure")
                    return
                path = server.root / name
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                status, start, end = 200, 0, len(data) - 1
                if wanted:
                    match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted)
                    assert match, wanted
                    start = int(match.group(1))
                    end = min(int(match.group(2)), len(data) - 1) if match.group(2) else len(data) - 1
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                body = data[start : end + 1]
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
