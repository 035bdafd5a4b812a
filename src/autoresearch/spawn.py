"""One short child process with its output captured, cheaply: what every git call runs on.

Why not subprocess.run: a native experiment makes a dozen git calls, and subprocess.run spends
~0.4 ms of Python on each (Popen's setup, communicate's selector loop, newline translation);
os.posix_spawn and one poll loop over the pipes spend ~0.15 ms (benchmarks/native_overhead.py).
The semantics stay subprocess.run's: input is fed while both outputs are read, so neither side
can block the other, and the child is killed if this process is interrupted.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
from typing import Mapping


def capture(argv: list[str], env: Mapping[str, str] | Mapping[bytes, bytes], input: str | None) -> tuple[int, str, str]:
    """Run ARGV (an absolute executable first) and return its exit status, stdout and stderr.

    Output is decoded as UTF-8 without newline translation (paths in -z listings keep a
    carriage return). stdin is /dev/null unless INPUT is given. Falls back to subprocess.run
    when a standard stream of this process is closed (a pipe end would land on fd 0-2)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe() if input is not None else (-1, -1)
    if min(out_w, err_w, *([in_r] if input is not None else [])) < 3:  # a closed std stream here
        _close(out_r, out_w, err_r, err_w, in_r, in_w)
        proc = subprocess.run(argv, env=env, input=input, capture_output=True, text=True, errors="replace")
        return proc.returncode, proc.stdout, proc.stderr
    stdin_action = ((os.POSIX_SPAWN_DUP2, in_r, 0) if input is not None
                    else (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0))
    try:
        pid = os.posix_spawn(argv[0], argv, env, file_actions=[
            stdin_action, (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)])
    except OSError:
        _close(out_r, out_w, err_r, err_w, in_r, in_w)
        raise
    _close(out_w, err_w, in_r)  # the child's ends (the pipes are close-on-exec for it)
    outputs: dict[int, list[bytes]] = {out_r: [], err_r: []}
    reading = {out_r, err_r}
    pending = memoryview(input.encode("utf-8") if input is not None else b"")
    poller = select.poll()
    for fd in reading:
        poller.register(fd, select.POLLIN)
    if in_w >= 0:
        poller.register(in_w, select.POLLOUT)
    try:
        while reading or in_w >= 0:
            for fd, _ in poller.poll():
                if fd == in_w:
                    try:  # at most PIPE_BUF once POLLOUT is set: never blocks
                        pending = pending[os.write(in_w, pending[:select.PIPE_BUF]):]
                    except BrokenPipeError:  # it stopped reading: the rest is not wanted
                        pending = pending[:0]
                    if not pending:  # all fed: its end of input
                        poller.unregister(in_w)
                        os.close(in_w)
                        in_w = -1
                elif fd in reading:
                    data = os.read(fd, 65536)
                    if data:
                        outputs[fd].append(data)
                    else:
                        poller.unregister(fd)
                        reading.discard(fd)
        _, status = os.waitpid(pid, 0)
    except BaseException:  # interrupted: the child goes too, as subprocess.run does it
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        raise
    finally:
        _close(out_r, err_r, in_w)
    out = b"".join(outputs[out_r]).decode("utf-8", "replace")
    err = b"".join(outputs[err_r]).decode("utf-8", "replace")
    return os.waitstatus_to_exitcode(status), out, err


def _close(*fds: int) -> None:
    for fd in fds:
        if fd >= 0:
            os.close(fd)
