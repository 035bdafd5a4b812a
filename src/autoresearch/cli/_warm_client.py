"""Hand a native `experiment` to the task's warm server, when one is listening.

Why: a fresh Python process pays ~90 ms for the interpreter and the standard library before
the experiment does any work, on a task whose hand loop takes ~80 ms in all (issue 13).
`autoresearch serve` keeps those modules loaded in forked copies of itself (serve.py); this
module is what the command costs when a server is up. It imports nothing but built-in modules
(`_socket`, `_signal`), never `typing`, `re` or the package's own modules.

The server's copy runs exactly what this process would have run (`_native.native_experiment`)
with this process's argv, working folder, environment, umask and standard streams (passed as
file descriptors, so output goes straight to this terminal or pipe). Kill semantics are the
command's own: Ctrl-C here is Ctrl-C there (the experiment records `interrupted` and exits
130); SIGTERM here is SIGTERM there (which the experiment treats as Ctrl-C); if this process
dies (SIGKILL), the server sends the copy SIGTERM, so nothing runs on unwatched. Any doubt (no
socket, a dead server, a server whose code has changed) and the command runs in this process
instead: the server is a speed-up, never a requirement.

Wire format (AF_UNIX stream, `.autoresearch/serve.sock` in the task's root):
  request  b"ARW1" + 4-byte little-endian length + payload, with SCM_RIGHTS fds 0, 1, 2;
           payload = NUL-separated fields: cwd, umask, argc, argv..., then KEY=VALUE env entries
  reply    b"RUNS" once the experiment has started, then 4 bytes: its exit code (signed,
           little-endian); b"STAL" (a stale server) or nothing (a server leaving) before b"RUNS":
           the experiment did not start, the caller runs it itself
  signals  client -> server, one byte each while the experiment runs: b"I" SIGINT, b"T" SIGTERM
"""

from __future__ import annotations

import _signal
import _socket
import os
import sys

MAGIC = b"ARW1"
STALE = b"STAL"
RUNNING = b"RUNS"
SOCKET = "serve.sock"  # in the task's .autoresearch/
CONFIG = "autoresearch.toml"
# Unix socket paths are limited to 108 bytes; longer ones are reached from their folder.
MAX_PATH = 100


def task_socket(start: str) -> str | None:
    """The serve socket of the task at or above START (the same root find_root picks), if any."""
    here = os.path.abspath(start)
    while True:
        if os.path.exists(os.path.join(here, CONFIG)):
            path = os.path.join(here, ".autoresearch", SOCKET)
            return path if os.path.exists(path) else None
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def connect(path: str) -> _socket.socket | None:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        if len(path) < MAX_PATH:
            sock.connect(path)
        else:  # a long path: connect by a name relative to its folder, then come back
            here = os.getcwd()
            os.chdir(os.path.dirname(path))
            try:
                sock.connect(SOCKET)
            finally:
                os.chdir(here)
    except OSError:  # no server behind the file (it was killed): run here
        sock.close()
        return None
    return sock


def request_bytes(argv: list[str]) -> bytes:
    umask = os.umask(0)
    os.umask(umask)
    fields = [os.fsencode(os.getcwd()), str(umask).encode(), str(len(argv)).encode()]
    fields += [os.fsencode(a) for a in argv]
    fields += [k + b"=" + v for k, v in os.environb.items()]
    return frame(b"\0".join(fields))


def frame(payload: bytes) -> bytes:
    """PAYLOAD as a request travels (the client's to the server, the server's to a copy)."""
    return MAGIC + len(payload).to_bytes(4, "little") + payload


def send_with_fds(sock: _socket.socket, data: bytes, fds: tuple[int, ...] | list[int]) -> None:
    """DATA on SOCK, the descriptors FDS riding with its first part (SCM_RIGHTS)."""
    raw = b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)
    sent = sock.sendmsg([data[:4096]], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, raw)])
    sock.sendall(data[sent:])


def _recv_exact(sock: _socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except KeyboardInterrupt:  # Ctrl-C: the experiment is told, and its exit code still comes
            _tell(sock, b"I")
            continue
        if not chunk:
            return data
        data += chunk
    return data


def _tell(sock: _socket.socket, what: bytes) -> None:
    try:
        sock.send(what)
    except OSError:
        pass


def run_served(argv: list[str]) -> int | None:
    """Run ARGV (an `experiment` command line) on the task's warm server; its exit code, or None
    when there is no usable server (the caller runs the command itself)."""
    path = task_socket(".")
    if path is None:
        return None
    sock = connect(path)
    if sock is None:
        return None
    data = request_bytes(argv)
    try:
        send_with_fds(sock, data, (0, 1, 2))
    except OSError:
        sock.close()
        return None
    previous = _signal.signal(_signal.SIGTERM, lambda signum, frame: _tell(sock, b"T"))
    try:
        started = _recv_exact(sock, 4)
        reply = _recv_exact(sock, 4) if started == RUNNING else b""
    finally:
        _signal.signal(_signal.SIGTERM, previous)
        sock.close()
    if started != RUNNING:  # stale, or leaving: nothing ran
        return None
    if len(reply) < 4:  # the server went away mid-experiment
        sys.stderr.write("error: the autoresearch server stopped before the experiment ended; "
                         "`autoresearch status` shows what was recorded\n")
        return 1
    return int.from_bytes(reply, "little", signed=True)
