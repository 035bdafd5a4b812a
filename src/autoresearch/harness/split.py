"""The evaluate phase split in two: the scorer, and the model processes that run the agent's code.

With `[task] model` set, the process that computes the metric (`[task] evaluate`, the scorer)
never runs anything the agent can edit. The harness starts `model_processes` copies of the
model command first, each in the sandbox it is given (the run phase's: no evaluation data, no
network, the run's outputs read-only), then the scorer in the evaluate sandbox. The two sides
share nothing but one socket per model process, made here as a socketpair and handed over as
inherited file descriptors: $AUTORESEARCH_MODEL_FD in a model process, $AUTORESEARCH_MODEL_FDS
(comma-separated, in order) in the scorer. Everything else (shared buffers, the request stream)
the scorer sets up over those sockets. Model processes end when the scorer closes its end, and
are stopped when the scorer ends, whatever they are doing; their output goes to their own logs,
and no metric line in them counts.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from autoresearch.harness.process import RunResult, run_command
from autoresearch.harness.sandbox import SandboxSpec

MODEL_EXIT_GRACE_S = 2.0  # after the scorer, how long a model process may take to end before it is stopped


@dataclass(frozen=True)
class ModelProcesses:
    """What the harness starts beside the scorer: COMMAND, COUNT times, under SANDBOX, logging
    to LOG_PATHS[i]."""

    command: str
    count: int
    sandbox: SandboxSpec | None
    log_paths: list[Path]


def run_split(scorer: str, models: ModelProcesses, *, cwd: Path, env: dict[str, str], timeout: float,
              log_path: Path, log_max_bytes: int, sandbox: SandboxSpec | None,
              stop: threading.Event | None = None,
              on_start: Callable[[int], None] | None = None) -> tuple[RunResult, list[RunResult]]:
    """Run the SCORER command joined to MODELS; returns the scorer's result and each model's."""
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(models.count)]
    scorer_fds = tuple(mine.detach() for mine, _ in pairs)
    model_fds = [theirs.detach() for _, theirs in pairs]
    finished = threading.Event()  # the scorer has ended: so must the model processes
    results: list[RunResult | None] = [None] * models.count
    threads = []
    for i, fd in enumerate(model_fds):
        model_env = {**env, "AUTORESEARCH_PHASE": "model", "AUTORESEARCH_MODEL_FD": str(fd)}

        def serve(i: int = i, fd: int = fd, model_env: dict[str, str] = model_env) -> None:
            results[i] = run_command(models.command, cwd=cwd, env=model_env, timeout=timeout,
                                     log_path=models.log_paths[i], log_max_bytes=log_max_bytes,
                                     sandbox=models.sandbox, stop=finished, pass_fds=(fd,))

        threads.append(threading.Thread(target=serve, name=f"model-{i}", daemon=True))
    for thread in threads:
        thread.start()
    try:
        scored = run_command(scorer, cwd=cwd, env={**env, "AUTORESEARCH_MODEL_FDS": ",".join(map(str, scorer_fds))},
                             timeout=timeout, log_path=log_path, log_max_bytes=log_max_bytes, sandbox=sandbox,
                             stop=stop, on_start=on_start, pass_fds=scorer_fds)
    finally:
        ends = time.monotonic() + MODEL_EXIT_GRACE_S  # the scorer closed its sockets: they end by themselves
        for thread in threads:
            thread.join(max(0.0, ends - time.monotonic()))
        finished.set()
        for thread in threads:
            thread.join()
    return scored, [r for r in results if r is not None]
