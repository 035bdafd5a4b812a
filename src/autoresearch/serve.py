"""`autoresearch serve`: a warm process that runs native experiments for one task.

Why: an agent runs `autoresearch experiment -m ...` hundreds of times a night, and on a fast
task most of a fresh process's cost is the interpreter and the standard library (issue 13).
The server imports the experiment's modules once and forks a copy of itself for every
request; the copy runs the same function a fresh process runs (`_native.native_experiment`),
so locks, the journal's write order and the verdict are the command's own. The client side,
and the wire format, are in cli/_warm_client.py.

What it guarantees:
- Nothing differs but speed: the copy takes the caller's argv, working folder, environment,
  umask and standard streams. Two requests at once are two processes, and the task's lock
  decides between them as it would between two commands.
- Kill semantics: the caller's Ctrl-C and SIGTERM reach the copy as the same signals; a caller
  that dies (SIGKILL) gets its copy SIGTERM, as the command would have died. Stopping the
  server (Ctrl-C, SIGTERM, `serve --stop`) interrupts running copies, waits for them, removes
  the socket.
- Only its owner: the socket is 0600 and every connection's peer uid is checked.
- Never stale: a request after the package's source files changed is refused (the client runs
  the command itself) and the server exits.
- It leaves when idle (`--idle`, seconds with no request; 0: never) and is never started
  implicitly: no command leaves a process behind that the user did not start.

Each request is a line in `.autoresearch/serve.log`: when, the caller's pid, the exit code,
wall seconds, CPU seconds of the copy (with everything it waited for) and of the server itself,
so `benchmarks/native_overhead.py` counts the server's CPU against the command.
"""

from __future__ import annotations

import _socket
import gc
import os
import resource
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cli._warm_client import MAGIC, MAX_PATH, RUNNING, SOCKET, STALE, connect
from .errors import StateError

# What a native experiment imports (cli._native's and trial's lazy imports included), loaded
# once here so a request's copy starts with them.
PRELOAD = ("autoresearch.cli._native", "autoresearch.branch", "autoresearch.trial", "autoresearch.session",
           "autoresearch.task", "autoresearch.journal", "autoresearch.workspace", "autoresearch.harness",
           "autoresearch.sandbox", "autoresearch.measure", "autoresearch.verdict", "autoresearch.results",
           "autoresearch.reference", "autoresearch.scratch")
IDLE = 3600.0  # seconds without a request before the server leaves
# The journal's keeper: a connection held open beside the server, in a process of its own
# (SQLite connections are not fork-safe, so never one the copies inherit). When the last
# connection to a database in WAL mode closes, SQLite folds the log into the database and
# deletes it, and the next write creates and syncs a new one and its folder: four fdatasyncs per
# served experiment. While the keeper's connection is open a copy's close is never the last,
# so the log stays (SQLite's own auto-checkpoint still folds it every 1000 pages). The keeper
# leaves when its stdin closes, however the server ends, and closes last, which folds the log.
KEEPER = ("import signal, sqlite3, sys\n"
          "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
          "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
          "db.execute('SELECT count(*) FROM sqlite_master').fetchone()\n"
          "print('ready', flush=True)\n"
          "sys.stdin.buffer.read()\n"
          "db.close()\n")
MAX_REQUEST = 1 << 20  # bytes: argv and environment; more is not a command line
LOG = "serve.log"
LOCK = "serve.lock"


@dataclass
class Request:
    """One caller's experiment: its connection and the copy running it."""

    conn: socket.socket
    pid: int
    pidfd: int
    caller: int
    started: float = field(default_factory=time.monotonic)
    cpu_self: float = 0.0  # the server's own CPU seconds at fork


def socket_path(root: Path) -> Path:
    return root / ".autoresearch" / SOCKET


def package_fingerprint() -> frozenset[tuple[str, int, int, int]]:
    """(path, inode, mtime_ns, size) of every source file of the package: changed code (an edit,
    or a new install that replaced the files), a stale server. os.scandir, not Path.rglob:
    this runs before every request (~0.3 ms for the package's ~90 files)."""
    items = set()
    folders = [os.path.dirname(os.path.abspath(__file__))]
    while folders:
        try:
            entries = list(os.scandir(folders.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name != "__pycache__":
                    folders.append(entry.path)
            elif entry.name.endswith(".py"):
                try:
                    st = entry.stat()
                except OSError:
                    continue
                items.add((entry.path, st.st_ino, st.st_mtime_ns, st.st_size))
    return frozenset(items)


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _bind(path: Path) -> socket.socket:
    """Listen on PATH (0600). The caller holds the server lock, so a socket already there is
    a dead server's."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    name = str(path)
    here = None
    if len(name) >= MAX_PATH:  # as the client does: bind by a name relative to the folder
        here = os.getcwd()
        os.chdir(path.parent)
        name = path.name
    try:
        path.unlink(missing_ok=True)
        old = os.umask(0o177)
        try:
            sock.bind(name)
        finally:
            os.umask(old)
        sock.listen(16)
    finally:
        if here is not None:
            os.chdir(here)
    return sock


def _lock(folder: Path) -> int:
    """The one-server-per-task lock (flock: released by the kernel when the server dies)."""
    import fcntl

    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateError("a server already runs for this task; stop it with `autoresearch serve --stop`") from None
    return fd


def _peer(sock: _socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end (SO_PEERCRED)."""
    import struct

    pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return pid, uid


def stop(root: Path) -> int | None:
    """SIGTERM the server of the task at ROOT; its pid, or None when none runs."""
    path = socket_path(root)
    sock = connect(str(path)) if path.exists() else None  # the client's own way in
    if sock is None:
        return None
    try:
        pid, uid = _peer(sock)
    except OSError:
        return None
    finally:
        sock.close()
    if uid != os.getuid():
        return None
    os.kill(pid, signal.SIGTERM)
    return pid


def _read_request(conn: socket.socket) -> tuple[list[int], bytes] | None:
    """The fds and payload of one request; None for anything malformed."""
    conn.settimeout(5.0)  # a caller sends its request at once; a silent one is not waited for
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


def _child(listener: socket.socket, conn: socket.socket, server_fds: list[int], fds: list[int], payload: bytes,
           blocked: set[signal.Signals]) -> None:
    """In the forked copy: become the caller's process, run its experiment, exit with its code."""
    code = 1
    try:
        listener.close()
        conn.close()  # the server answers the caller; the copy only does the work
        for fd in server_fds:  # its lock (a copy left running must not hold it), the keeper's pipe
            os.close(fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
        # A copy lives for one experiment: the collector's passes would only touch (and so copy)
        # the server's pages; what a cycle holds is freed when the copy exits.
        gc.disable()
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
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - a bug: its traceback goes to the caller, as it would have
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed pipe: nothing more to say
                pass
        os._exit(code)


class Server:
    """The accept loop: one listening socket, one forked copy per request."""

    def __init__(self, root: Path, idle: float = IDLE) -> None:
        self.root = root
        self.idle = idle
        self.path = socket_path(root)
        self.path.parent.mkdir(exist_ok=True)
        self.fingerprint = package_fingerprint()
        self.requests: dict[int, Request] = {}  # by pidfd
        self.by_conn: dict[int, Request] = {}  # by connection fd
        self.stopping = False
        self.lock_fd = _lock(self.path.parent)
        self.log = open(self.path.parent / LOG, "a", encoding="utf-8")
        self.keeper: subprocess.Popen | None = None

    def _own_fds(self) -> list[int]:
        """What a copy must not keep of the server's: its lock, the keeper's pipe."""
        keeper = [self.keeper.stdin.fileno()] if self.keeper and self.keeper.stdin else []
        return [self.lock_fd, *keeper]

    def _start_keeper(self) -> None:
        journal = self.path.parent / "journal.db"
        if not journal.exists():
            return
        try:
            self.keeper = subprocess.Popen([sys.executable, "-c", KEEPER, str(journal)], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
            ready = self.keeper.stdout.readline() if self.keeper.stdout else b""
        except OSError as exc:
            self._log(f"no journal keeper: {exc}")
            return
        if ready.strip() != b"ready":  # a journal it cannot read: the copies will say what is wrong
            self._stop_keeper()
            return
        self._log(f"keeper\tpid {self.keeper.pid}")

    def _stop_keeper(self) -> None:
        if self.keeper is None:
            return
        keeper, self.keeper = self.keeper, None
        for stream in (keeper.stdin, keeper.stdout):
            if stream:
                stream.close()
        try:
            keeper.wait(timeout=10)
        except subprocess.TimeoutExpired:
            keeper.kill()
            keeper.wait()

    def serve(self) -> None:
        import importlib

        for name in PRELOAD:
            importlib.import_module(name)
        self._warm()
        self._start_keeper()
        # Everything loaded so far goes to the collector's permanent generation: a copy's
        # collections then leave those objects (and their pages, shared with the server) alone.
        gc.collect()
        gc.freeze()
        self.listener = _bind(self.path)
        previous = {s: signal.signal(s, self._on_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        self.poll = select.poll()
        self.poll.register(self.listener.fileno(), select.POLLIN)
        self._log(f"start\tpid {os.getpid()}")
        last = time.monotonic()
        try:
            while not (self.stopping and not self.requests):
                if self.stopping and self.listener.fileno() >= 0:
                    self._unlisten()  # callers from now on run their command themselves
                if self.idle and not self.requests and time.monotonic() - last > self.idle:
                    self._log("idle: leaving")
                    break
                for fd, _ in self.poll.poll(1000):
                    if fd == self.listener.fileno():
                        try:
                            if self._accept() == "stale":
                                self.stopping = True
                        except OSError as exc:  # one caller's broken connection ends nothing else
                            self._log(f"refused a connection: {exc}")
                    elif fd in self.requests:
                        self._finish(self.requests[fd])
                        last = time.monotonic()
                    elif fd in self.by_conn:
                        self._from_caller(self.by_conn[fd])
        finally:
            self._close()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _warm(self) -> None:
        """The read-only first steps of an experiment, once, here: the config and the lock as
        read (cached while their files are unchanged), the journal's schema check, the sandbox
        probe and the temporary folder are then inherited by every copy. Nothing
        stays open across the fork (SQLite connections are not fork-safe); a problem is left for
        the request to report."""
        import tempfile

        from .errors import AutoresearchError
        from .guard import read_lock
        from .sandbox import resolve_kind
        from .session import Session
        from .task import load_config

        try:
            config = load_config(self.root)  # cached for the copies while the file is unchanged
            read_lock(self.root)  # the same
            tempfile.gettempdir()  # found once (it probes the candidates by writing a file)
            resolve_kind(config.sandbox.kind)
            with Session(config) as session:
                session.journal.tags()
        except (AutoresearchError, OSError, sqlite3.Error):
            pass

    def _on_stop(self, signum: int, frame: object) -> None:
        """Stop accepting; interrupt running copies (they record `interrupted`), then leave."""
        self.stopping = True
        for request in list(self.requests.values()):
            _signal_pid(request.pid, signal.SIGINT)

    def _accept(self) -> str:
        conn, _ = self.listener.accept()
        pid, uid = _peer(conn)
        if uid != os.getuid():
            conn.close()
            return "refused"
        received = _read_request(conn)
        if received is None:
            conn.close()
            return "refused"
        fds, payload = received
        if package_fingerprint() != self.fingerprint:
            for fd in fds:
                os.close(fd)
            conn.sendall(STALE)
            conn.close()
            self._log("stale: the package's files changed; leaving")
            return "stale"
        cpu = _self_cpu()
        # Blocked across the fork: a signal must not reach the copy while it still has the
        # server's handlers (which would interrupt the other requests' copies).
        stops = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        child = os.fork()
        if child == 0:
            _child(self.listener, conn, self._own_fds(), fds, payload, stops)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
        for fd in fds:
            os.close(fd)
        try:
            conn.sendall(RUNNING)  # from here on the caller waits for the exit code
        except OSError:
            pass  # the caller is gone already: the copy gets SIGTERM at the next poll
        request = Request(conn=conn, pid=child, pidfd=os.pidfd_open(child), caller=pid, cpu_self=cpu)
        self.requests[request.pidfd] = request
        self.by_conn[conn.fileno()] = request
        self.poll.register(request.pidfd, select.POLLIN)
        self.poll.register(conn.fileno(), select.POLLIN)
        return "started"

    def _from_caller(self, request: Request) -> None:
        """A signal byte from the caller, or its end: the same signal to the copy."""
        try:
            data = request.conn.recv(64)
        except OSError:
            data = b""
        if not data:  # the caller died: as the kernel would have ended the command
            self.poll.unregister(request.conn.fileno())
            del self.by_conn[request.conn.fileno()]
            _signal_pid(request.pid, signal.SIGTERM)
            return
        for byte in data:
            if byte == ord("I"):
                _signal_pid(request.pid, signal.SIGINT)
            elif byte == ord("T"):
                _signal_pid(request.pid, signal.SIGTERM)

    def _finish(self, request: Request) -> None:
        _, status, usage = os.wait4(request.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code  # killed by a signal: the shell's convention
        self.poll.unregister(request.pidfd)
        os.close(request.pidfd)
        del self.requests[request.pidfd]
        fileno = request.conn.fileno()
        if fileno in self.by_conn:
            self.poll.unregister(fileno)
            del self.by_conn[fileno]
        wall = time.monotonic() - request.started
        # logged before the reply: whoever reads the log once the caller has its code finds the line
        self._log(f"{request.caller}\t{code}\t{wall:.6f}\t{usage.ru_utime + usage.ru_stime:.6f}\t"
                  f"{_self_cpu() - request.cpu_self:.6f}")
        try:
            request.conn.sendall(code.to_bytes(4, "little", signed=True))
        except OSError:
            pass
        request.conn.close()

    def _unlisten(self) -> None:
        self.poll.unregister(self.listener.fileno())
        self.listener.close()  # connections still in the backlog get EOF: their callers run locally
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def _log(self, line: str) -> None:
        self.log.write(f"{time.time():.3f}\t{line}\n")
        self.log.flush()

    def _close(self) -> None:
        for request in list(self.requests.values()):  # leaving with copies still running
            _signal_pid(request.pid, signal.SIGINT)
            self._finish(request)
        if self.listener.fileno() >= 0:
            self._unlisten()
        self._stop_keeper()
        self._log(f"stop\tpid {os.getpid()}")
        self.log.close()
        os.close(self.lock_fd)


def _signal_pid(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
