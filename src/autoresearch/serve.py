"""`autoresearch serve`: a warm process that runs native experiments for one task.

Why: an agent runs `autoresearch experiment -m ...` hundreds of times a night, and on a fast
task most of a fresh process's cost is the interpreter and the standard library (issue 13).
The server imports the experiment's modules once and forks copies of itself that run the
requests; a copy runs the same function a fresh process runs (`_native.native_experiment`), so
locks, the journal's write order and the verdict are the command's own. A copy stays for the
next request while it is as clean as a fresh one (served.py: what a copy does, why it stays and
when it does not), and the journal keeps a connection open beside the server (KEEPER). The
client side, and the wire format, are in cli/_warm_client.py.

What it guarantees:
- Nothing differs but speed: each request starts as the caller's process, with its argv,
  working folder, environment, umask and standard streams, and nothing of the request before;
  the caller's streams are let go when its request ends. Two requests at once are two
  processes, and the task's lock decides between them as it would between two commands.
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
and the copy's pid.
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
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cli._warm_client import MAX_PATH, RUNNING, SOCKET, STALE, connect, frame, send_with_fds
from .errors import StateError
from .served import DONE, read_request, work

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
LOG = "serve.log"
LOCK = "serve.lock"


@dataclass
class Worker:
    """A forked copy of the server that runs requests one after another (see work)."""

    pid: int
    pidfd: int
    chan: socket.socket  # the server's end of the pair the copy reads its requests from
    request: "Request | None" = None


@dataclass
class Request:
    """One caller's experiment: its connection and the copy running it."""

    conn: socket.socket
    worker: Worker
    caller: int
    started: float = field(default_factory=time.monotonic)
    cpu_self: float = 0.0  # the server's own CPU seconds when it was handed over


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


class Server:
    """The accept loop: one listening socket; a waiting copy for a request, else a new one."""

    def __init__(self, root: Path, idle: float = IDLE) -> None:
        self.root = root
        self.idle = idle
        self.path = socket_path(root)
        self.path.parent.mkdir(exist_ok=True)
        self.fingerprint = package_fingerprint()
        self.workers: dict[int, Worker] = {}  # by pidfd
        self.by_chan: dict[int, Worker] = {}  # by the server's end of their pair
        self.by_conn: dict[int, Request] = {}  # by connection fd
        self.stopping = False
        self.lock_fd = _lock(self.path.parent)
        self.log = open(self.path.parent / LOG, "a", encoding="utf-8")
        self.keeper: subprocess.Popen | None = None

    def _forget(self, conn: socket.socket) -> None:
        """In a new copy: close what is the server's (its lock, which a copy left running must
        not hold; the keeper's pipe; the socket; every other caller's connection and copy)."""
        self.listener.close()
        conn.close()  # the server answers the caller; the copy only does the work
        fds = [self.lock_fd]
        if self.keeper is not None:
            fds += [stream.fileno() for stream in (self.keeper.stdin, self.keeper.stdout) if stream]
        for worker in self.workers.values():
            worker.chan.close()
            fds.append(worker.pidfd)
        for request in self.by_conn.values():
            request.conn.close()
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

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
            while not (self.stopping and not self.by_conn):
                if self.stopping and self.listener.fileno() >= 0:
                    self._unlisten()  # callers from now on run their command themselves
                if self.idle and not self.by_conn and time.monotonic() - last > self.idle:
                    self._log("idle: leaving")
                    break
                for fd, _ in self.poll.poll(1000):
                    if fd == self.listener.fileno():
                        try:
                            if self._accept() == "stale":
                                self.stopping = True
                        except OSError as exc:  # one caller's broken connection ends nothing else
                            self._log(f"refused a connection: {exc}")
                    elif fd in self.by_chan:
                        self._from_worker(self.by_chan[fd])
                        last = time.monotonic()
                    elif fd in self.workers:
                        self._worker_ended(self.workers[fd])
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
        for request in list(self.by_conn.values()):
            _signal_pid(request.worker.pid, signal.SIGINT)

    def _accept(self) -> str:
        conn, _ = self.listener.accept()
        pid, uid = _peer(conn)
        if uid != os.getuid():
            conn.close()
            return "refused"
        received = read_request(conn)
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
        worker = self._idle_worker(fds, payload) or self._fork(conn, fds, payload)
        for fd in fds:
            os.close(fd)
        try:
            conn.sendall(RUNNING)  # from here on the caller waits for the exit code
        except OSError:
            pass  # the caller is gone already: the copy gets SIGTERM at the next poll
        request = Request(conn=conn, worker=worker, caller=pid, cpu_self=cpu)
        worker.request = request
        self.by_conn[conn.fileno()] = request
        self.poll.register(conn.fileno(), select.POLLIN)
        return "started"

    def _idle_worker(self, fds: list[int], payload: bytes) -> Worker | None:
        """The copy that waits for a request, handed this one (its streams and payload, as the
        caller sent them); None when none waits (or it cannot take it: it is retired)."""
        for worker in self.workers.values():
            if worker.request is None and worker.chan.fileno() >= 0:
                try:
                    send_with_fds(worker.chan, frame(payload), fds)
                except OSError:
                    self._retire(worker)
                    return None
                return worker
        return None

    def _fork(self, conn: socket.socket, fds: list[int], payload: bytes) -> Worker:
        """A new copy for this request (it then waits for more: work)."""
        mine, its = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # Blocked across the fork: a signal must not reach the copy while it still has the
        # server's handlers (which would interrupt the other requests' copies).
        stops = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        child = os.fork()
        if child == 0:
            try:
                mine.close()
                self._forget(conn)
                gc.enable()  # a copy may live for many requests: its cycles are collected
                work(its, fds, payload, stops)
            finally:
                os._exit(1)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
        its.close()
        worker = Worker(pid=child, pidfd=os.pidfd_open(child), chan=mine)
        self.workers[worker.pidfd] = worker
        self.by_chan[mine.fileno()] = worker
        self.poll.register(worker.pidfd, select.POLLIN)
        self.poll.register(mine.fileno(), select.POLLIN)
        return worker

    def _from_caller(self, request: Request) -> None:
        """A signal byte from the caller, or its end: the same signal to the copy."""
        try:
            data = request.conn.recv(64)
        except OSError:
            data = b""
        if not data:  # the caller died: as the kernel would have ended the command
            self.poll.unregister(request.conn.fileno())
            del self.by_conn[request.conn.fileno()]
            request.conn.close()
            _signal_pid(request.worker.pid, signal.SIGTERM)
            return
        for byte in data:
            if byte == ord("I"):
                _signal_pid(request.worker.pid, signal.SIGINT)
            elif byte == ord("T"):
                _signal_pid(request.worker.pid, signal.SIGTERM)

    def _from_worker(self, worker: Worker) -> None:
        """A copy says its request ended (and waits for the next), or its pair closed."""
        data = b""
        try:
            data = worker.chan.recv(16)
            while data and len(data) < 16:  # sent at once; a stream may still split it
                chunk = worker.chan.recv(16 - len(data))
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        if len(data) < 16 or not data.startswith(DONE) or worker.request is None:
            self._retire(worker)  # its end (a crash, a kill) comes through its pidfd
            return
        request, worker.request = worker.request, None
        self._complete(request, int.from_bytes(data[4:8], "little", signed=True), struct.unpack("<d", data[8:])[0],
                       worker.pid)
        idle = [w for w in self.workers.values() if w.request is None and w.chan.fileno() >= 0]
        if self.stopping or len(idle) > 1:
            self._retire(worker)  # one waiting copy is enough

    def _worker_ended(self, worker: Worker) -> None:
        """A copy's process ended: reaped; its request, if it had one, answered from what it
        said last (a stop can come just after its request ended) or else from its status."""
        if worker.request is not None and worker.chan.fileno() >= 0:
            worker.chan.setblocking(False)
            self._from_worker(worker)
        _, status, usage = os.wait4(worker.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code  # killed by a signal: the shell's convention
        self.poll.unregister(worker.pidfd)
        os.close(worker.pidfd)
        del self.workers[worker.pidfd]
        self._retire(worker)
        if worker.request is not None:
            request, worker.request = worker.request, None
            self._complete(request, code, usage.ru_utime + usage.ru_stime, worker.pid)

    def _retire(self, worker: Worker) -> None:
        """Close the server's end of a copy's pair: a waiting copy leaves (its pidfd says when)."""
        fileno = worker.chan.fileno()
        if fileno >= 0:
            self.poll.unregister(fileno)
            del self.by_chan[fileno]
            worker.chan.close()

    def _complete(self, request: Request, code: int, cpu: float, worker: int) -> None:
        fileno = request.conn.fileno()
        if fileno in self.by_conn:
            self.poll.unregister(fileno)
            del self.by_conn[fileno]
        wall = time.monotonic() - request.started
        # logged before the reply: whoever reads the log once the caller has its code finds the line
        self._log(f"{request.caller}\t{code}\t{wall:.6f}\t{cpu:.6f}\t{_self_cpu() - request.cpu_self:.6f}\t{worker}")
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
        for request in list(self.by_conn.values()):  # leaving with copies still running
            _signal_pid(request.worker.pid, signal.SIGINT)
        for worker in list(self.workers.values()):  # the waiting ones leave when their pair closes
            if worker.request is None:
                self._retire(worker)
            self._worker_ended(worker)
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
