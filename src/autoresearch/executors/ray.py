"""Ray: each run is a Ray task on whatever node has a free GPU (or CPU).

The driver keeps the journal and git. For each run it ships the commit's tree (a tar from
`git archive`, no history) to a Ray task that asks for `num_gpus`/`num_cpus`. The worker unpacks
it in a scratch folder, runs the task's `setup` if it has one (idempotent and fast once done, so
a fresh node prepares its own data the first time and skips it afterwards), then the same
harness as a local run (`measure.measure`: budget, hard timeout, sandbox when configured,
evaluate phase), and returns the metrics and the logs, which the driver writes into
`.autoresearch/runs/<seq>/`. Artifacts in AUTORESEARCH_OUT stay on the worker and are deleted.

A worker that dies mid-run (killed, its node lost) is a `crash` with reason `worker-lost`: the
machinery failed, not the experiment, so the agent is not asked to fix it, and several in a
row stop the loop like other executor failures. The slot is free again at once and Ray starts
a new worker, on a node that is still alive, for its next run. A worker Ray's memory monitor
kills is `oom`, the experiment's own doing. Tasks are never retried: a retry would silently
run the experiment twice. Each run records where it ran (`details["worker"]`: host, pid, Ray
node id and node address).

Ray is an optional extra: `pip install 'autoresearch[ray]'`. Workers need the task's own
dependencies (torch, ...); autoresearch itself is shipped to a cluster the executor connects to.
"""

from __future__ import annotations

import fcntl
import io
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from autoresearch.config.task import STATE_DIR, TaskConfig
from autoresearch.executors import Done, ExecutorError, Job, OnStart
from autoresearch.harness.guard import lock_path
from autoresearch.trial.measure import SETUP_TIMEOUT_S, executor_failure, measure, setup_command, setup_env
from autoresearch.trial.session import Session
from autoresearch.verdict.flow import Measurement, PhaseCallback

CANCEL_GRACE_S = 10.0  # after a polite cancel (KeyboardInterrupt in the task), force-kill the worker
BACKSTOP_MARGIN_S = 120.0  # the driver gives up on a task this long after its harness should have
WARMUP_TIMEOUT_S = 60.0
SCRATCH_PREFIX = "autoresearch-ray-"  # + the worker's pid: a dead worker's folder is swept
WARMUP_HOLD_S = 0.5
# Runs and warm-ups spread over the nodes: each node gets warm workers, and experiments that
# share no GPU do not crowd one machine's CPUs while another idles (Ray's default packs a node
# half full before it uses the next).
SCHEDULING = "SPREAD"


class RayExecutor:
    kind = "ray"

    def __init__(self, slots: int, address: str = "", num_cpus: float = 1.0, num_gpus: float = 0.0) -> None:
        if num_cpus < 0 or num_gpus < 0:
            raise ExecutorError("[executor] num_cpus and num_gpus must not be negative")
        self.slots = slots
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.session: Session | None = None
        self._ray: Any = None
        self._remote: Any = None
        self._owns_ray = False
        self._lock = threading.Lock()
        self._inflight: dict[Any, Job] = {}
        self._cancelled = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock_json = ""

    # -- lifecycle --------------------------------------------------------------------------

    def open(self, session: Session) -> None:
        try:
            import ray
        except ImportError:
            raise ExecutorError("[executor] kind = \"ray\" needs Ray: pip install 'autoresearch[ray]'") from None
        self.session = session
        self._ray = ray
        self._cancelled.clear()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
            if self.address:
                # Ship this very package to the cluster, so workers run the driver's harness.
                kwargs["address"] = self.address
                kwargs["runtime_env"] = {"py_modules": [str(Path(__file__).resolve().parents[1])]}
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            try:
                ray.init(**kwargs)
            except Exception as exc:  # noqa: BLE001 - Ray raises many kinds; the user needs the message
                where = self.address or "a local Ray instance"
                raise ExecutorError(f"could not start or reach {where}: {exc}") from None
            self._owns_ray = True
        self._remote = ray.remote(remote_measure)
        session.lock_forgery()  # a lock.json written by someone else is put back from git first
        lock = lock_path(session.root)
        self._lock_json = lock.read_text() if lock.exists() else ""
        self._warm_up()

    def _warm_up(self) -> None:
        """Have Ray start one worker per slot now (each importing the harness), so the first
        experiments do not wait for worker start-up. Holding each warm-up task a moment makes
        them overlap, so they cannot all land on one worker; spreading them warms every node.
        Best effort: a cluster that has no room for all slots yet simply warms fewer."""
        ray = self._ray
        ready = ray.remote(warm)
        refs = [ready.options(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0,
                              scheduling_strategy=SCHEDULING).remote(WARMUP_HOLD_S)
                for _ in range(self.slots)]
        done, pending = ray.wait(refs, num_returns=len(refs), timeout=WARMUP_TIMEOUT_S)
        for ref in pending:
            ray.cancel(ref, force=True)

    def close(self) -> None:
        for thread in self._threads:
            thread.join(timeout=CANCEL_GRACE_S + 5)
        self._threads = []
        if self._owns_ray and self._ray is not None:
            self._ray.shutdown()
            self._owns_ray = False

    def describe(self) -> str:
        where = self.address or "a local Ray instance"
        return f"{self.slots} Ray slot{'s' if self.slots != 1 else ''} on {where} " \
               f"(num_gpus={self.num_gpus:g}, num_cpus={self.num_cpus:g} each)"

    # -- runs -------------------------------------------------------------------------------

    def submit(self, job: Job, *, on_start: OnStart, on_phase: PhaseCallback, done: Done) -> None:
        if self.session is None or self._remote is None:
            raise ExecutorError("the Ray executor was not opened")
        session = self.session
        config = session.config
        try:
            archive = tree_archive(session, job.commit)
        except Exception as exc:  # noqa: BLE001
            done(executor_failure(session, job.seq, job.label, "executor-error", f"could not archive {job.commit}: {exc}"))
            return
        ref = self._remote.options(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0,
                                   scheduling_strategy=SCHEDULING,
                                   name=f"autoresearch-{job.seq}-{job.label}").remote(
            config, archive, job.seq, job.seed, job.label, self._lock_json)
        with self._lock:
            self._inflight[ref] = job
        on_phase("running", {"seq": job.seq, "label": job.label, "budget": config.budget.seconds,
                             "started": time.time(), "slot": job.slot, "executor": "ray"})
        backstop = config.budget.hard_timeout + config.budget.hard_evaluate_timeout + BACKSTOP_MARGIN_S
        if config.task.setup:
            backstop += SETUP_TIMEOUT_S

        def wait() -> None:
            try:
                done(self._collect(ref, job, backstop))
            finally:
                with self._lock:
                    self._inflight.pop(ref, None)

        thread = threading.Thread(target=wait, name=f"autoresearch-ray-{job.seq}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _collect(self, ref: Any, job: Job, backstop: float) -> Measurement:
        session, ray = self.session, self._ray
        assert session is not None
        from ray import exceptions as rx

        def failed(reason: str, text: str, interrupted: bool = False) -> Measurement:
            return executor_failure(session, job.seq, job.label, reason, text, interrupted)

        try:
            result = ray.get(ref, timeout=backstop)
        except rx.GetTimeoutError:
            ray.cancel(ref, force=True)
            return failed("timeout", f"the Ray task did not answer within {backstop:.0f} s")
        except rx.TaskCancelledError:
            return failed("interrupted", "the Ray task was cancelled", interrupted=True)
        except rx.RayTaskError as exc:  # the task raised: a bug or a broken worker environment
            if self._cancelled.is_set():
                return failed("interrupted", "the Ray task was cancelled", interrupted=True)
            return failed("worker-error", f"the Ray task failed:\n{exc}")
        except rx.RayError as exc:
            if self._cancelled.is_set():
                return failed("interrupted", "the Ray task was cancelled", interrupted=True)
            if isinstance(exc, rx.OutOfMemoryError):  # Ray's memory monitor killed it: the run's own doing
                return failed("oom", f"Ray killed the worker for lack of memory:\n{exc}")
            if isinstance(exc, lost_worker_errors(rx)):
                return failed("worker-lost", f"the Ray worker running this experiment "
                              f"was lost ({type(exc).__name__}):\n{exc}")
            # Not the experiment's fault and no lost machine either: a runtime_env that cannot be
            # set up, an unschedulable request, a broken cluster. Repeated, these stop the loop.
            return failed("executor-error", f"Ray could not run this experiment "
                          f"({type(exc).__name__}):\n{exc}")
        return _measurement_from(session, job, result)

    def cancel(self) -> None:
        """KeyboardInterrupt in every running task (the harness then kills its run), and a
        forced kill of the worker for any that has not answered after a grace period."""
        self._cancelled.set()
        if self._ray is None:
            return
        with self._lock:
            refs = list(self._inflight)
        for ref in refs:
            try:
                self._ray.cancel(ref)
            except Exception:  # noqa: BLE001 - already finished
                pass

        def force() -> None:
            time.sleep(CANCEL_GRACE_S)
            with self._lock:
                left = list(self._inflight)
            for ref in left:
                try:
                    self._ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001
                    pass

        threading.Thread(target=force, daemon=True).start()


def lost_worker_errors(rx: Any) -> tuple[type, ...]:
    """The exceptions with which Ray says the process or machine running a task went away: a
    worker killed, its raylet or node dead, the result's object lost with its owner or node."""
    # ObjectLostError covers OwnerDiedError; RayActorError covers ActorDiedError.
    names = ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError", "ObjectLostError", "RayActorError")
    return tuple(getattr(rx, n) for n in names if hasattr(rx, n))


# -- the driver's side of the wire ------------------------------------------------------------

def tree_archive(session: Session, commit: str) -> bytes:
    """The commit's tree as an uncompressed tar (`git archive`): files only, no history."""
    fd, path = tempfile.mkstemp(prefix="autoresearch-archive-", suffix=".tar")
    os.close(fd)
    try:
        session.ws.git("archive", "--format=tar", "-o", path, commit)
        return Path(path).read_bytes()
    finally:
        os.unlink(path)


def _measurement_from(session: Session, job: Job, result: dict) -> Measurement:
    run_dir = session.run_dir(job.seq)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, data in result.get("logs", {}).items():
        (run_dir / Path(name).name).write_bytes(data)
    log_name = result.get("log_name") or f"{job.label}.log"
    flags = dict(result.get("flags") or {})
    flags["worker"] = {"host": result.get("host", ""), "pid": result.get("pid"), "node": result.get("node", ""),
                       "node_ip": result.get("node_ip", ""), "setup_seconds": result.get("setup_seconds", 0.0)}
    return Measurement(bool(result["ok"]), result.get("reason", ""), rejected=bool(result.get("rejected")),
                       metric=result.get("metric"), metrics=dict(result.get("metrics") or {}),
                       seconds=float(result.get("seconds") or 0.0), log_path=run_dir / log_name, flags=flags,
                       interrupted=bool(result.get("interrupted")))


# -- the worker's side ------------------------------------------------------------------------

class _WorkerSession:
    """What `measure.measure` needs of a session, on a worker that has no journal and no
    repository: the config, the task folder (the unpacked tree, with the driver's lock.json in
    its `.autoresearch/`, so the harness is verified after the run here too), the state folder
    (hidden from the run by the sandbox) and run dirs."""

    def __init__(self, config: TaskConfig, root: Path) -> None:
        self.config = config
        self.root = root
        self.state_dir = root / STATE_DIR

    def run_dir(self, seq: int) -> Path:
        return self.state_dir / "runs" / str(seq)

    def lock_forgery(self, restore: bool = True) -> str:
        """No git here: the lock came from the driver, which checked it against git at open."""
        return ""


def _unpack(archive: bytes, dest: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - Python before 3.11.4
            tar.extractall(dest)


def _setup(config: TaskConfig, tree: Path, log: Path) -> str:
    """Run the task's idempotent setup on this node, one at a time per node. '' when fine."""
    cache = Path(setup_env(config)["AUTORESEARCH_CACHE"])
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".autoresearch-setup.lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # two slots on one node must not download twice
        result = setup_command(config, tree, log)
    if result.interrupted:
        raise KeyboardInterrupt
    return "" if result.ok else "setup-" + result.failure_reason()


def warm(hold: float) -> int:
    """The warm-up task: the worker has imported this module (and the harness) once it runs."""
    time.sleep(hold)
    return os.getpid()


def remote_measure(config: TaskConfig, archive: bytes, seq: int, seed: int, label: str, lock_json: str = "") -> dict:
    """The body of the Ray task: unpack the tree, set up, measure, return numbers and logs."""
    _sweep_scratch()
    scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
    try:
        tree = scratch / "task"
        tree.mkdir()
        _unpack(archive, tree)
        session = _WorkerSession(config, tree)
        session.state_dir.mkdir()
        if lock_json:
            lock_path(tree).write_text(lock_json)
        run_dir = session.run_dir(seq)
        run_dir.mkdir(parents=True)
        setup_seconds = 0.0
        if config.task.setup:
            began = time.monotonic()
            failed = _setup(config, tree, run_dir / f"{label}.setup.log")
            setup_seconds = time.monotonic() - began
            if failed:
                return {"ok": False, "reason": failed, "logs": _logs(run_dir), "log_name": f"{label}.setup.log",
                        "setup_seconds": setup_seconds, **_where()}
        m = measure(session, tree, seq, seed, label)  # a session in all that measure needs
        return {"ok": m.ok, "reason": m.reason, "rejected": m.rejected, "metric": m.metric, "metrics": m.metrics,
                "seconds": m.seconds, "flags": m.flags, "interrupted": m.interrupted, "logs": _logs(run_dir),
                "log_name": m.log_path.name if m.log_path else f"{label}.log", "setup_seconds": setup_seconds,
                **_where()}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _where() -> dict:
    """Which machine ran this: host and pid, and Ray's node id and address (two nodes on one
    host share the host name; the node id tells them apart)."""
    where: dict = {"host": socket.gethostname(), "pid": os.getpid(), "node": "", "node_ip": ""}
    try:
        import ray

        where["node"] = ray.get_runtime_context().get_node_id()
        where["node_ip"] = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - outside a Ray worker (a direct call), or an older Ray
        pass
    return where


def _sweep_scratch() -> None:
    """Remove the scratch folders of workers that died mid-run (they never cleaned up)."""
    for path in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        try:
            pid = int(path.name[len(SCRATCH_PREFIX):].split("-", 1)[0])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def _logs(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.glob("*.log")) if p.is_file()}


def make_ray_executor(section: Any, slots: int) -> RayExecutor:
    return RayExecutor(slots, address=section.address, num_cpus=section.num_cpus, num_gpus=section.num_gpus)
