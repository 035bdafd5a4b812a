"""A real two-node Ray cluster on one machine, for a test or a benchmark, then a command on it.

    bwrap --dev-bind / / --unshare-net --unshare-pid --die-with-parent --proc /proc \\
        python tests/ray_cluster_driver.py [--cpus 2] [--kill-node2-on-run N] [--summary FILE] \\
        -- COMMAND ARGS...        # "{address}" in ARGS becomes the head's address

Why a namespace: Ray publishes each node under the machine's interface address even when told
127.0.0.1, so a cluster started in the open would talk over the real network. In a network
namespace that has only loopback, both nodes and the driver can only be 127.0.0.1, and with a
pid namespace every process started here dies with it. The script refuses to run anywhere else.

It starts a head (`ray start --head --block`) and a second node (`ray start --address ...
--block`) as separate processes, each with its own temp dir and ports, waits until both are
alive, runs COMMAND, and stops both by pid. With --kill-node2-on-run N it also watches the
second node's process tree and, once the Nth run (a process whose command line holds
--kill-match) has started there, SIGKILLs the whole node mid-run, as if the machine were lost.
Every process gets RAY_AUTH_MODE=token and one fresh RAY_AUTH_TOKEN, as a real cluster should.
The summary (JSON) names both nodes' ids, the killed run's AUTORESEARCH_SEQ and COMMAND's exit.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HEAD_PORT = 6379
ADDRESS = f"127.0.0.1:{HEAD_PORT}"
START_TIMEOUT_S = 120.0
STOP_GRACE_S = 10.0

# Each node its own ports: two raylets share one address here, so nothing may be left to a default.
PORTS = {
    "head": {"--node-manager-port": 6380, "--object-manager-port": 6381, "--min-worker-port": 10000,
             "--max-worker-port": 10099, "--dashboard-agent-listen-port": 6382, "--dashboard-agent-grpc-port": 6383,
             "--runtime-env-agent-port": 6384, "--metrics-export-port": 6385},
    "node2": {"--node-manager-port": 6390, "--object-manager-port": 6391, "--min-worker-port": 10100,
              "--max-worker-port": 10199, "--dashboard-agent-listen-port": 6392, "--dashboard-agent-grpc-port": 6393,
              "--runtime-env-agent-port": 6394, "--metrics-export-port": 6395},
}


def loopback_only() -> bool:
    """True inside a network namespace whose only interface is `lo`."""
    import socket

    # if_nameindex asks the kernel about this process's namespace (/sys may be the host's).
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def ray_bin() -> str:
    here = Path(sys.executable).parent / "ray"
    return str(here) if here.exists() else (shutil.which("ray") or "ray")


def start_node(name: str, temp: Path, cpus: int, log: Path) -> subprocess.Popen:
    args = [ray_bin(), "start", "--block", "--node-ip-address=127.0.0.1", f"--temp-dir={temp}",
            f"--num-cpus={cpus}", "--num-gpus=0", "--object-store-memory=100000000", "--disable-usage-stats",
            "--include-log-monitor=false"]
    args += ["--head", f"--port={HEAD_PORT}", "--include-dashboard=false"] if name == "head" else [f"--address={ADDRESS}"]
    args += [f"{flag}={port}" for flag, port in PORTS[name].items()]
    out = open(log, "ab")
    # The node's own TMPDIR: its workers' scratch folders are named by pids of this namespace.
    tmp = temp / "tmp"
    tmp.mkdir()
    # A session of its own: the node's processes form one group we can kill at once.
    return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "TMPDIR": str(tmp)})


def wait_for_nodes(count: int, procs: list[subprocess.Popen]) -> dict[str, str]:
    """Connect as a driver until COUNT nodes are alive; their ids by node-manager port."""
    import socket

    import ray

    deadline = time.monotonic() + START_TIMEOUT_S

    def check() -> None:
        for p in procs:
            if p.poll() is not None:
                raise SystemExit(f"a Ray node exited while starting ({' '.join(p.args[1:3])}); see its log")
        if time.monotonic() > deadline:
            raise SystemExit(f"the Ray cluster did not come up within {START_TIMEOUT_S:.0f} s")

    while True:  # ray.init would hang for a long time on a head that is not listening yet
        check()
        try:
            socket.create_connection(("127.0.0.1", HEAD_PORT), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    ray.init(address=ADDRESS, log_to_driver=False)
    try:
        while True:
            alive = [n for n in ray.nodes() if n.get("Alive")]
            if len(alive) >= count:
                by_port = {n["NodeManagerPort"]: n["NodeID"] for n in alive}
                return {name: by_port.get(ports["--node-manager-port"], "") for name, ports in PORTS.items()}
            check()
            time.sleep(0.2)
    finally:
        ray.shutdown()


# -- processes, by pid ------------------------------------------------------------------------

def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree(root: int) -> list[int]:
    """ROOT and all its descendants."""
    kids, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            pairs = [item.split(b"=", 1) for item in fh.read().split(b"\0") if b"=" in item]
    except OSError:
        return {}
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def kill_tree(root: int, sig: int = signal.SIGKILL) -> list[int]:
    pids = tree(root)
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return pids


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM a `ray start --block` (it stops its node), then SIGKILL whatever is left of it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    kill_tree(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the node's session: raylet children that were re-parented
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


class Killer(threading.Thread):
    """Watches node2's tree; SIGKILLs the whole node once its Nth matching run has started."""

    def __init__(self, node: subprocess.Popen, nth: int, match: str, delay: float, summary: dict) -> None:
        super().__init__(daemon=True)
        self.node, self.nth, self.match, self.delay, self.summary = node, nth, match, delay, summary
        self.halt = threading.Event()

    def run(self) -> None:
        seen: dict[str, int] = {}  # a run's seq -> its first process seen (a shell, bwrap, python...)
        while not self.halt.is_set():
            for pid in tree(self.node.pid):
                if self.match in cmdline(pid):
                    seq = environ(pid).get("AUTORESEARCH_SEQ")
                    if seq is not None:
                        seen.setdefault(seq, pid)
            if len(seen) >= self.nth:
                seq, pid = list(seen.items())[self.nth - 1]
                time.sleep(self.delay)  # well inside the run, not at its first instruction
                alive = os.path.exists(f"/proc/{pid}")
                killed = kill_tree(self.node.pid)
                try:
                    os.killpg(self.node.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.summary["killed"] = {"seq": seq, "run_pid": pid, "run_alive_at_kill": alive,
                                          "pids": len(killed), "at": time.time()}
                return
            self.halt.wait(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpus", type=int, default=1, help="CPUs each node offers")
    parser.add_argument("--kill-node2-on-run", type=int, default=0, metavar="N")
    parser.add_argument("--kill-match", default="train.py", help="what a run's command line holds")
    parser.add_argument("--kill-delay", type=float, default=0.5)
    parser.add_argument("--summary", type=Path)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = [a.replace("{address}", ADDRESS) for a in args.command if a != "--"] if args.command else []
    if not command:
        parser.error("give the command to run on the cluster after --")
    if not loopback_only():
        print("refusing to start a Ray cluster outside a loopback-only network namespace; run me under "
              "bwrap --dev-bind / / --unshare-net --unshare-pid --die-with-parent --proc /proc", file=sys.stderr)
        return 2
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Token authentication, as a cluster on a real network should have it: every node and the
    # command get the same fresh token (and never read or write ~/.ray/auth_token).
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    # A SIGTERM (a test's timeout) still stops the nodes through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    base = Path(tempfile.mkdtemp(prefix="rc-"))  # short: Ray's socket paths must stay under 107 bytes
    summary: dict = {"address": ADDRESS, "base": str(base)}
    nodes: list[subprocess.Popen] = []
    try:
        for name in ("head", "node2"):
            (base / name).mkdir()
            nodes.append(start_node(name, base / name, args.cpus, base / f"{name}.log"))
            if name == "head":
                wait_for_nodes(1, nodes)
        summary["nodes"] = wait_for_nodes(2, nodes)
        summary["node_pids"] = {"head": nodes[0].pid, "node2": nodes[1].pid}
        killer = None
        if args.kill_node2_on_run:
            killer = Killer(nodes[1], args.kill_node2_on_run, args.kill_match, args.kill_delay, summary)
            killer.start()
        summary["returncode"] = subprocess.call(command)
        if killer:
            killer.halt.set()
            killer.join()
    finally:
        for proc in reversed(nodes):
            stop(proc)
        for name in ("head", "node2"):
            log = base / f"{name}.log"
            if log.exists():
                summary.setdefault("logs", {})[name] = log.read_text(errors="replace")[-3000:]
        shutil.rmtree(base, ignore_errors=True)
        if args.summary:
            args.summary.write_text(json.dumps(summary, indent=1))
    return 0 if summary.get("returncode") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
