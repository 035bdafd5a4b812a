"""What a copy of `autoresearch serve` does: become the caller's process, run its experiment,
and wait for the next request. serve.py forks the copies and talks to the callers.

Why a copy stays for the next request: a fresh fork writes to ~1,400 pages it shares with the
server (reference counts, the allocator), and each first write copies a page, ~7 us on a
2-core VM: ~18 ms of CPU per experiment, a third of the command's own cost (issue 13). A copy
that stays has its pages. It stays only while it is as clean as a fresh one (see work).

Server -> copy: a request framed as the caller sent it (MAGIC, length, payload) with the
caller's fds 0-2 (SCM_RIGHTS). Copy -> server: DONE, the exit code (4 bytes, signed) and the
request's CPU seconds (8 bytes, a double), or the copy's own end (its exit status says the code).
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import struct
import sys
import threading

from .cli._warm_client import MAGIC

MAX_REQUEST = 1 << 20  # bytes: argv and environment; more is not a command line
MAX_SERVED = 500  # requests one copy runs before it leaves (what it caches stays bounded)
DONE = b"DONE"


def read_request(conn: socket.socket, timeout: float | None = 5.0) -> tuple[list[int], bytes] | None:
    """The fds and payload of one request; None for anything malformed. TIMEOUT: a caller sends
    its request at once, and a silent one is not waited for (a copy waits for the server)."""
    conn.settimeout(timeout)
    try:
        data, ancdata, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(3 * 4))
        fds: list[int] = []
        for level, kind, raw in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += [int.from_bytes(raw[i:i + 4], sys.byteorder) for i in range(0, len(raw) - len(raw) % 4, 4)]
        while 0 < len(data) < 8:  # a stream may split even a short header
            chunk = conn.recv(8 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) < 8 or data[:4] != MAGIC or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            return None
        size = int.from_bytes(data[4:8], "little")
        if size > MAX_REQUEST:
            for fd in fds:
                os.close(fd)
            return None
        payload = data[8:]
        while len(payload) < size:
            chunk = conn.recv(size - len(payload))
            if not chunk:
                for fd in fds:
                    os.close(fd)
                return None
            payload += chunk
    except OSError:
        return None
    finally:
        conn.settimeout(None)
    return fds, payload


def _parse(payload: bytes) -> tuple[str, int, list[str], dict[bytes, bytes]]:
    fields = payload.split(b"\0")
    cwd, umask, argc = os.fsdecode(fields[0]), int(fields[1]), int(fields[2])
    argv = [os.fsdecode(a) for a in fields[3:3 + argc]]
    env = dict(item.split(b"=", 1) for item in fields[3 + argc:] if b"=" in item)
    return cwd, umask, argv, env


def work(chan: socket.socket, fds: list[int], payload: bytes, blocked: set[signal.Signals]) -> None:
    """In a forked copy: run the request, then (as a rule) the next ones the server hands over on
    CHAN, each as the caller's own process; never returns. It stays only while it is as clean
    as a fresh one: no thread left, the same open files as when it started, an experiment that
    ended by itself. An interrupted one, a crash of this code or MAX_SERVED requests, and it
    exits instead: the server forks the next request a fresh copy."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
    baseline = _open_fds() - set(fds)
    served = 0
    while True:
        before = _cpu_with_children()
        code, clean = _run_request(fds, payload)
        served += 1
        cpu = _cpu_with_children() - before
        _release_streams()
        if not clean or code == 130 or served >= MAX_SERVED or threading.active_count() > 1 \
                or _open_fds() != baseline:
            os._exit(code)  # the server sees the copy end and answers the caller from its status
        try:
            chan.sendall(DONE + code.to_bytes(4, "little", signed=True) + struct.pack("<d", cpu))
            received = read_request(chan, timeout=None)  # the next request, or the server's end
        except BaseException:  # noqa: BLE001 - told to go (a signal, the server gone): nothing runs
            os._exit(0)
        if received is None:
            os._exit(0)
        fds, payload = received


def _run_request(fds: list[int], payload: bytes) -> tuple[int, bool]:
    """Become the caller's process (its streams, folder, umask, environment, argv) and run its
    experiment: (exit code, whether it ended by itself)."""
    code, clean = 1, False
    try:
        cwd, umask, argv, env = _parse(payload)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False,
                          encoding="utf-8", errors="backslashreplace")
        sys.stderr = open(2, "w", buffering=1, closefd=False, encoding="utf-8", errors="backslashreplace")
        os.umask(umask)
        os.chdir(cwd)
        os.environb.clear()
        os.environb.update(env)
        sys.argv = argv
        from .cli import native_experiment_args
        from .cli._native import native_experiment

        fast = native_experiment_args(argv[1:])
        if fast is None:
            sys.stderr.write("error: the server runs only `autoresearch experiment -m ...`\n")
            code = 2
        else:
            native_experiment(*fast)
            code = 0
        clean = True
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
        clean = True
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - a bug: its traceback goes to the caller, as it would have
        import traceback

        traceback.print_exc()
        code = 1
    return code, clean


def _release_streams() -> None:
    """Flush what the caller is owed, then let go of its streams (its pipe must see its end)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe: nothing more to say
            pass
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(null, target)
    os.close(null)


def _open_fds() -> set[int]:
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))  # the listing's own descriptor is closed by now
        except OSError:
            continue
        found.add(int(name))
    return found - {0, 1, 2}


def _cpu_with_children() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
