"""Orchestration overhead per experiment: everything an experiment costs except running the
experiment's own command, measured through the real paths.

What it does, top to bottom:
  1. For each sandbox kind (SANDBOXES) and history length (HISTORIES) it makes a fresh task with
     the CLI (`autoresearch init --template example`), swaps the run for a no-op shell command
     (`sed` printing the metric from a comment line of train.py; the template's evaluate phase
     goes), commits, locks, starts and runs the baseline. Then it fakes HISTORY-1 prior
     experiments cheaply but realistically: one git commit each (written by `git fast-import`;
     keeps chained on the branch, every commit under refs/autoresearch/<tag>/<seq>, a note each
     under refs/notes/autoresearch), a journal row each, a runs-table row, a run.log folder,
     results.tsv regenerated. Copies of that task serve the three modes.
  2. Modes:
     native  `trial.experiment(session, ...)` on one open session: snapshot of the folder, the
             `running` record, commit + ref, guard, a fresh export of the commit, the run,
             settle (journal, branch, results.tsv, note, pruning), the folder back at best.
     loop    `loop.run_loop` (one slot, local executor) in a thread, with an in-process
             proposer that edits train.py in its scratch copy. The proposer waits at a gate;
             one step opens it and waits for the next proposal to arrive, so a step is one full
             cycle: propose, collect, commit, guard, export, run, settle, the next `running`
             record, the next scratch copy (export + a private git repository), history, brief.
     cli     `python -m autoresearch experiment -m ...` as a whole process (wall time), minus
             the run command's own seconds as the journal's runs table records them.
     Steps go round robin over the cells (so a burst of load elsewhere hits all alike). Edits
     alternate keep and discard. Overhead = step time - `measure.run_command` (in-process) or
     the runs' recorded seconds (cli).
  3. Floors: the bare run command, one git call, python start, the modules `experiment` loads.
  4. For the longest history: where the in-process overhead goes (self time per part: git
     subprocesses, exports, scratch, SQLite journal, results.tsv, harness hashes), which git
     subcommands an experiment spawns and from where, and a cProfile of native experiments.

How to read it: medians in milliseconds. `run cmd` is the harness's run_command (process start,
sandbox, capped log, /proc sweep); compare it with the bare-command floor to see what the harness
and the sandbox add around the user's process, and the `none` rows with the `auto` rows for the
sandbox's share. The goal (issue 13) is an in-process overhead under GOAL_MS, flat in the history
length: compare the rows at 10 and 1,000 (differences of ~20 % between cells are noise on a
loaded 2-core machine; the load average is printed before and after).

CLI subprocesses run with cached bytecode (BYTECODE_CACHE), as an installed package would; this
checkout may set PYTHONDONTWRITEBYTECODE, which makes every CLI call recompile every module.

Run: .venv/bin/python benchmarks/overhead.py            (a few minutes on 2 cores)
     .venv/bin/python benchmarks/overhead.py --quick    (sandbox none only, fewer repeats)
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from _gitcalls import git_subcommand  # noqa: E402 - beside this script

import autoresearch.harness.process as H  # noqa: E402
import autoresearch.loop.driver as L  # noqa: E402
import autoresearch.spawn as SP  # noqa: E402
import autoresearch.trial.lifecycle as T  # noqa: E402
import autoresearch.trial.measure as M  # noqa: E402
import autoresearch.trial.scratch as S  # noqa: E402
from autoresearch.config.task import LoopSection  # noqa: E402
from autoresearch.executors.local import LocalExecutor  # noqa: E402
from autoresearch.git.workspace import NOTES_REF, Workspace, branch_name, experiment_ref  # noqa: E402
from autoresearch.harness.sandbox import bwrap_works  # noqa: E402
from autoresearch.journal.results import write_tsv  # noqa: E402
from autoresearch.journal.store import Journal  # noqa: E402
from autoresearch.proposers import Proposal, ProposeContext  # noqa: E402
from autoresearch.trial.session import Session  # noqa: E402

# -- knobs ----------------------------------------------------------------------------------------
HISTORIES = [10, 1000]  # prior experiments on the branch (baseline included)
SANDBOXES = ["none", "auto"]  # [sandbox] kind; "auto" is bwrap where it works, else none
MODES = ["native", "loop", "cli"]
WARMUP = 2  # untimed experiments first (imports, caches, page cache)
REPEATS = 12  # timed in-process experiments per cell
CLI_REPEATS = 5  # timed `autoresearch experiment` subprocesses per cell
BARE_REPEATS = 30  # starts of the bare command, for the floor
PROFILE_EXPERIMENTS = 8  # native experiments under cProfile in the breakdown
PROFILE_TOP = 15  # rows of the cProfile table
IMPORT_TOP = 8  # packages listed in the CLI's import-time breakdown
GOAL_MS = 100.0  # the goal for in-process overhead per experiment
TAG = "bench"
RUN = "sed -n 's/^# bench //p' train.py"  # the no-op run: prints `val_loss: X` from train.py
CLI = [sys.executable, "-m", "autoresearch"]
SWEEP = "run_command: /proc sweep"
BYTECODE_CACHE = True  # CLI subprocesses use cached bytecode, as an installed package does
# what `autoresearch experiment -m` loads (cli._native, trial and branch pull in the rest)
NATIVE_IMPORTS = "import autoresearch.cli._native, autoresearch.trial, autoresearch.branch"


def ms(seconds: float) -> float:
    return seconds * 1000.0


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- a task with a long history -------------------------------------------------------------------

def cli_env() -> dict[str, str]:
    """The CLI's environment. An installed package has its bytecode compiled; this checkout may
    run with PYTHONDONTWRITEBYTECODE set, which would recompile every module on every call, so
    the bytecode goes to a cache folder of our own (PYCACHE_PREFIX) unless BYTECODE_CACHE is off."""
    env = dict(os.environ)
    if BYTECODE_CACHE:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = os.environ["AUTORESEARCH_BENCH_PYCACHE"]
    return env


def cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, env=cli_env())
    if check and proc.returncode != 0:
        raise SystemExit(f"`autoresearch {' '.join(args)}` failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


def git(cwd: Path, *args: str, input: str | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
    proc = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def train_py(template_text: str, value: float, salt: str = "") -> str:
    """The template's train.py with the metric line the no-op run prints (salt: a distinct tree)."""
    return f"# bench val_loss: {value:.6f}\n# {salt}\n{template_text}"


def make_task(root: Path, sandbox: str, history: int) -> tuple[Path, float]:
    """A locked task at ROOT on branch autoresearch/TAG with HISTORY prior experiments. Returns
    it and the best metric so far."""
    where = root.parent
    cli("init", str(root), "--template", "example", cwd=where)
    template = (root / "train.py").read_text()
    config = (root / "autoresearch.toml").read_text().replace('run = "python train.py"', f'run = "{RUN}"')
    config = config.replace('evaluate = "python evaluate.py"\n', "")  # the run prints the metric itself
    config += f'\n[sandbox]\nkind = "{sandbox}"\n'
    (root / "autoresearch.toml").write_text(config)
    (root / "train.py").write_text(train_py(template, 100.0))
    git(root, "commit", "-qam", "bench: no-op run")
    cli("lock", cwd=root)
    cli("start", "--tag", TAG, cwd=root)
    cli("baseline", cwd=root)
    best = fake_history(root, template, history - 1)
    return root, best


def fake_history(root: Path, template: str, n: int) -> float:
    """N experiments after the baseline, as a real run would leave them: commits (keeps on the
    branch, discards and crashes beside it), refs, notes, journal rows, runs rows, log folders."""
    with Session.open(root) as s:
        base = s.best_commit(TAG)
        first_seq = s.journal.next_seq()
        # Plan: every 4th experiment a keep, one in 10 a crash, the rest discards.
        plan, best, t0 = [], 100.0, time.time() - 400.0 * (n + 1)
        for i in range(n):
            seq = first_seq + i
            if i % 10 == 7:
                status, value = "crash", None
            elif i % 4 == 0:
                status, value = "keep", best - 0.01
            else:
                status, value = "discard", best + 0.5 + (i % 7) * 0.01
            plan.append((seq, status, value, best))
            if status == "keep":
                best = value
        # One fast-import stream: blob + commit per experiment, parent = best at that time; then
        # one notes commit with a note per experiment (fast-import picks the notes fan-out).
        stream, parent_mark = [], None
        for k, (seq, status, value, _) in enumerate(plan):
            content = train_py(template, value if value is not None else 0.0, f"seq {seq}").encode()
            message = f"experiment {seq}\n\nautoresearch-seq: {seq}\nautoresearch-tag: {TAG}\n".encode()
            stream.append(b"blob\nmark :%d\ndata %d\n%s\n" % (2 * k + 1, len(content), content))
            stream.append(b"commit %s\nmark :%d\ncommitter bench <bench@localhost> %d +0000\ndata %d\n%s\n"
                          % (experiment_ref(TAG, seq).encode(), 2 * k + 2, int(t0) + 400 * k, len(message), message))
            stream.append(b"from %s\n" % (parent_mark.encode() if parent_mark else base.encode()))
            stream.append(b"M 100644 :%d train.py\n\n" % (2 * k + 1))
            if status == "keep":
                parent_mark = f":{2 * k + 2}"
        if plan:
            previous_notes = s.ws.git("rev-parse", "-q", "--verify", NOTES_REF, check=False).strip()
            note_lines = []
            for k, (seq, status, value, _) in enumerate(plan):
                text = f'{{"seq": {seq}, "status": "{status}", "metric": {value if value is not None else "null"}}}\n'
                note_lines.append(b"N inline :%d\ndata %d\n%s\n" % (2 * k + 2, len(text), text.encode()))
            stream.append(b"commit %s\ncommitter bench <bench@localhost> %d +0000\ndata 6\nnotes\n"
                          % (NOTES_REF.encode(), int(time.time())))
            if previous_notes:
                stream.append(b"from %s\n" % previous_notes.encode())
            stream.extend(note_lines)
            stream.append(b"\n")
        marks = root / ".autoresearch" / "bench-marks"
        proc = subprocess.run(["git", "fast-import", "--quiet", f"--export-marks={marks}"], cwd=root,
                              input=b"".join(stream), capture_output=True)
        if proc.returncode != 0:
            raise SystemExit(f"git fast-import failed: {proc.stderr.decode()}")
        sha = dict(line.split() for line in marks.read_text().splitlines()) if marks.exists() else {}
        marks.unlink(missing_ok=True)
        best_sha, parent = base, base
        for k, (seq, status, value, before) in enumerate(plan):
            commit = sha[f":{2 * k + 2}"]
            exp = s.journal.begin(TAG, f"LEARNING_RATE 0.05 -> {0.05 + k * 1e-4:.4f}, STEPS 200 -> {200 + k}",
                                  "tune", parent, program_hash=s.lock().program_hash, propose_seconds=0.4)
            assert exp.seq == seq, (exp.seq, seq)
            run_dir = s.run_dir(seq)
            run_dir.mkdir(parents=True, exist_ok=True)
            log = run_dir / "run.log"
            log.write_text(f"$ {RUN}\nval_loss: {value}\n" if value is not None else f"$ {RUN}\nTraceback: boom\n")
            exp.status = status
            exp.reason = {"keep": "improved", "discard": "not-better", "crash": "exit-1"}[status]
            exp.commit_sha, exp.best_before, exp.metric = commit, before, value
            exp.metrics = {"val_loss": value} if value is not None else {}
            exp.details = {"files": ["train.py"]}
            exp.log_path, exp.log_tail = str(log), "" if value is not None else "Traceback: boom"
            exp.started_at, exp.finished_at = t0 + 400 * k, t0 + 400 * k + 300.5
            exp.run_seconds, exp.lines_delta = 300.0, 0
            s.journal.update(exp)
            s.journal.add_run(seq=seq, tag=TAG, role="candidate", commit_sha=commit, seed=seq * 1000,
                              status="ok" if value is not None else "crash", reason="" if value else "exit-1",
                              metric=value, metrics=exp.metrics, seconds=300.0, log_path=str(log))
            if status == "keep":
                best_sha = parent = commit
        if best_sha != base:
            s.set_best(TAG, best_sha)
            s.ws.restore(branch_name(TAG), best_sha, s.state.preexisting, None)
        write_tsv(s.results_path(), s.journal.experiments(TAG), "val_loss", s.config.resource.scale)
        return best


# -- timers -------------------------------------------------------------------------------------

class Timers:
    """Wraps the functions an experiment spends its time in. Each label gets its SELF time
    (nested wrapped calls are subtracted, per thread), so the parts add up; `run_command` is
    also kept whole, as the run to subtract from a step's time."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)  # self time per label
        self.calls: Counter = Counter()
        self.run_seconds = 0.0  # run_command, inclusive
        self.git_seconds: dict[str, float] = defaultdict(float)
        self.git_calls: Counter = Counter()
        self.sites: Counter = Counter()  # "caller -> workspace method (git subcommand)" -> calls
        self._undo: list = []
        self._local = threading.local()
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.seconds.clear()
            self.calls.clear()
            self.run_seconds = 0.0
            self.git_seconds.clear()
            self.git_calls.clear()
            self.sites.clear()

    def _enter(self) -> list[float]:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        stack.append(0.0)  # time spent in wrapped children
        return stack

    def _leave(self, label: str, began: float) -> float:
        elapsed = time.perf_counter() - began
        stack = self._local.stack
        children = stack.pop()
        if stack:
            stack[-1] += elapsed
        with self._lock:
            self.seconds[label] += elapsed - children
            self.calls[label] += 1
        return elapsed

    def _wrap(self, owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)
        timers = self

        def timed(*args, **kwargs):
            timers._enter()
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = timers._leave(label, t)
                if label == "run_command":
                    with timers._lock:
                        timers.run_seconds += elapsed
        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def install(self) -> "Timers":
        self._wrap(M, "run_command", "run_command")
        self._wrap(H, "sweep_marked", SWEEP)  # inside run_command: reported, not counted twice
        self._wrap(M, "verify", "verify (harness hashes)")
        self._wrap(T, "sync_tsv", "results.tsv sync")
        self._wrap(T, "tail_lines", "log tail")
        self._wrap(T, "prune_outputs", "prune outputs")
        self._wrap(Workspace, "export", "export (files, index)")
        self._wrap(S, "make", "scratch make (python)")
        self._wrap(S, "collect", "scratch collect (python)")
        self._wrap(L.Loop, "_context", "history + brief")
        self._wrap(T, "_quarantine_oversized", "untracked scan (python)")
        for name in ("begin", "update", "best", "latest_noise", "add_run", "get_meta", "set_meta", "settle",
                     "noted", "experiments", "get", "next_seq"):
            self._wrap(Journal, name, "sqlite journal")
        # Git runs through spawn.capture (Workspace.git) or subprocess.run (everything else).
        timers = self

        def counted(original):  # noqa: ANN001, ANN202
            def call(args, *a, **kw):
                is_git = isinstance(args, (list, tuple)) and args and Path(str(args[0])).name == "git"
                if not is_git:
                    return original(args, *a, **kw)
                timers._enter()
                t = time.perf_counter()
                try:
                    return original(args, *a, **kw)
                finally:
                    elapsed = timers._leave("git subprocesses", t)
                    sub = git_subcommand(args)
                    site = call_site(sub)
                    with timers._lock:
                        timers.git_seconds[sub] += elapsed
                        timers.git_calls[sub] += 1
                        timers.sites[site] += 1
            return call
        for owner, name in ((subprocess, "run"), (SP, "capture")):
            original = getattr(owner, name)
            setattr(owner, name, counted(original))
            self._undo.append((owner, name, original))
        return self

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def call_site(sub: str) -> str:
    """Who asked for this git call: the first autoresearch frame outside workspace.py (and this
    file's wrappers), and the Workspace method it called."""
    frame, method = sys._getframe(2), "?"
    while frame is not None:
        name = frame.f_code.co_filename
        if name.endswith("workspace.py"):
            method = frame.f_code.co_name
        elif "autoresearch" in name and not name.endswith("overhead.py"):
            return f"{Path(name).stem}.{frame.f_code.co_name} -> {method} ({sub})"
        frame = frame.f_back
    return f"? -> {method} ({sub})"


# -- measuring --------------------------------------------------------------------------------------

class Edits:
    """train.py contents that alternate keep (a bit better than best) and discard (worse)."""

    def __init__(self, template: str, best: float) -> None:
        self.template, self.best, self.i = template, best, 0

    def next(self, where: Path) -> str:
        self.i += 1
        if self.i % 2:
            self.best -= 0.001
            value = self.best
        else:
            value = self.best + 1.0
        (where / "train.py").write_text(train_py(self.template, value, f"edit {self.i}"))
        return f"bench edit {self.i} -> {value:.3f}"


class GateProposer:
    """The loop's proposer: it waits at a gate, so the benchmark decides when each cycle starts;
    then it edits train.py in its scratch copy, instantly."""

    name = "bench"
    needs_git = True  # the scratch gets its private repository, as for a coding agent

    def __init__(self, edits: Edits) -> None:
        self.edits = edits
        self.gate = threading.Semaphore(0)
        self.arrived: queue.Queue = queue.Queue()
        self.finishing = False

    def propose(self, ctx: ProposeContext) -> Proposal:
        self.arrived.put(time.perf_counter())
        if not self.finishing:
            self.gate.acquire()
        return Proposal(self.edits.next(ctx.workspace.root), model_driven=False)


def spawn_ms(argv: list[str], cwd: Path, n: int = BARE_REPEATS) -> float:
    """Median wall time of starting ARGV and waiting for it (the floor of any subprocess)."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, cwd=cwd, capture_output=True)
        times.append(time.perf_counter() - t)
    return ms(med(times))


class Cell:
    """One (sandbox, history, mode) combination: its task and what was measured in it."""

    def __init__(self, work: Path, sandbox: str, history: int, mode: str, twin: "Cell | None" = None) -> None:
        self.sandbox, self.history, self.mode = sandbox, history, mode
        t = time.time()
        root = work / f"task-{sandbox}-{history}-{mode}"
        if twin is None:
            self.root, self.best = make_task(root, sandbox, history)
        else:  # a copy of a twin's task, made before anything ran in it (the same history, faster)
            shutil.copytree(twin.root, root, symlinks=True)
            self.root, self.best = root, twin.best
        self.setup_s = time.time() - t
        self.edits = Edits((self.root / "train.py").read_text().split("\n", 2)[2], self.best)
        self.session: Session | None = None  # opened at the first in-process step
        self.proposer: GateProposer | None = None
        self.reader: Journal | None = None  # loop mode: the main thread's view of the journal
        self.thread: threading.Thread | None = None
        self.loop_error: BaseException | None = None
        self.steps_planned = 0
        self.done = 0
        self.total: list[float] = []
        self.run: list[float] = []
        self.statuses: Counter = Counter()
        self.breakdown: dict[str, list[float]] = defaultdict(list)
        self.git_seconds: list[dict[str, float]] = []
        self.git_calls: list[Counter] = []
        self.sites: list[Counter] = []
        self.calls: dict[str, int] = {}  # calls per label in the last experiment

    @property
    def overhead(self) -> list[float]:
        return [t - r for t, r in zip(self.total, self.run)]

    def start_loop(self, steps: int) -> None:
        """The loop in a thread, waiting at the first proposal; STEPS cycles will follow."""
        self.proposer = GateProposer(self.edits)
        self.steps_planned = steps
        limits = LoopSection(max_experiments=steps + 1)
        proposer, root = self.proposer, self.root
        self.reader = Journal(root / ".autoresearch")  # this thread's own connection (SQLite's rule)

        def body() -> None:
            try:
                with Session.open(root) as session:  # opened in the loop's thread, which uses it
                    L.run_loop(session, proposer, limits, LocalExecutor(1))
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                self.loop_error = exc
                proposer.arrived.put(None)
        self.thread = threading.Thread(target=body, name=f"bench-loop-{self.sandbox}-{self.history}", daemon=True)
        self.thread.start()
        self.wait_arrival()

    def wait_arrival(self) -> float:
        assert self.proposer is not None
        arrived = self.proposer.arrived.get(timeout=300)
        if arrived is None:
            raise SystemExit(f"the loop in {self.root} failed: {self.loop_error!r}")
        return arrived

    def finish_loop(self) -> None:
        if self.proposer is not None and self.thread is not None:
            self.proposer.finishing = True
            self.proposer.gate.release()
            self.thread.join(timeout=120)

    def step(self, timers: Timers, warmup: int) -> None:
        if self.mode == "native":
            if self.session is None:
                self.session = Session.open(self.root)
            description = self.edits.next(self.root)
            timers.reset()
            t = time.perf_counter()
            exp = T.experiment(self.session, description)
            total, run = time.perf_counter() - t, timers.run_seconds
        elif self.mode == "loop":
            assert self.proposer is not None
            timers.reset()
            t = time.perf_counter()
            self.proposer.gate.release()
            total, run = self.wait_arrival() - t, timers.run_seconds
            exp = self.reader.last(TAG)  # the next proposal's `running` record; the step's is the one before
            exp = self.reader.get(exp.seq - 1) if exp and exp.status == "running" else exp
        else:
            description = self.edits.next(self.root)
            timers.uninstall()  # the CLI is another process; our wrappers would only time `cli()`
            try:
                t = time.perf_counter()
                cli("experiment", "-m", description, cwd=self.root, check=False)
                total = time.perf_counter() - t
            finally:
                timers.install()
            with Journal(self.root / ".autoresearch") as j:
                exp = j.last(TAG)
                run = sum(r["seconds"] or 0.0 for r in j.runs(seq=exp.seq))
        self.done += 1
        if self.done <= warmup:
            return
        self.statuses[exp.status if exp else "?"] += 1
        self.total.append(ms(total))
        self.run.append(ms(run))
        if self.mode != "cli":
            accounted = 0.0
            with timers._lock:
                seconds = dict(timers.seconds)
            for label, secs in seconds.items():
                if label in (SWEEP, "run_command"):  # inside the run, so not part of the overhead
                    if label == SWEEP:
                        self.breakdown[label].append(ms(secs))
                    continue
                self.breakdown[label].append(ms(secs))
                accounted += secs
            self.breakdown["other python"].append(ms(total - run - accounted))
            self.git_seconds.append(dict(timers.git_seconds))
            self.git_calls.append(Counter(timers.git_calls))
            self.sites.append(Counter(timers.sites))
            self.calls = dict(timers.calls)

    def close(self) -> None:
        self.finish_loop()
        if self.reader is not None:
            self.reader.close()
        if self.session is not None:
            self.session.close()


def floor_step(cwd: Path, samples: dict[str, list[float]]) -> None:
    """One sample each of: bare interpreter start, interpreter + the modules `experiment` loads,
    `autoresearch --version` (timed in the same rounds as the CLI experiments)."""
    for label, argv in (("python start", [sys.executable, "-c", "pass"]),
                        ("python + the experiment's modules", [sys.executable, "-c", NATIVE_IMPORTS]),
                        ("autoresearch --version", [*CLI, "--version"])):
        t = time.perf_counter()
        subprocess.run(argv, cwd=cwd, capture_output=True, env=cli_env())
        samples[label].append(ms(time.perf_counter() - t))


def import_costs(cwd: Path, top: int) -> list[tuple[str, float]]:
    """The top-level packages the native experiment's imports spend their time in (-X importtime)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", NATIVE_IMPORTS], cwd=cwd,
                          capture_output=True, text=True, env=cli_env())
    own: dict[str, float] = defaultdict(float)
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[0].startswith("import time:") and parts[0].split(":")[1].strip().isdigit():
            own[parts[2].strip().split(".")[0]] += int(parts[0].split(":")[1]) / 1000.0  # self time, us -> ms
    return sorted(own.items(), key=lambda kv: -kv[1])[:top]


def profile(cell: Cell) -> str:
    profiler = cProfile.Profile()
    for _ in range(PROFILE_EXPERIMENTS):
        description = cell.edits.next(cell.root)
        profiler.enable()
        T.experiment(cell.session, description)  # type: ignore[arg-type]
        profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(PROFILE_TOP)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    return "\n".join("  " + line for line in lines[start:])


# -- main ---------------------------------------------------------------------------------------------

def main() -> None:
    global SANDBOXES, REPEATS, CLI_REPEATS, BARE_REPEATS, PROFILE_EXPERIMENTS
    if "--quick" in sys.argv:
        SANDBOXES, REPEATS, CLI_REPEATS, BARE_REPEATS, PROFILE_EXPERIMENTS = ["none"], 7, 3, 10, 4
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="autoresearch-overhead-"))
    os.environ["AUTORESEARCH_CACHE"] = str(work / "cache")
    os.environ["AUTORESEARCH_BENCH_PYCACHE"] = str(work / "pycache")  # read by cli_env() only
    sandbox_note = "bwrap" if bwrap_works() else "none (bwrap not usable here)"
    print(f"orchestration overhead per experiment; no-op run `{RUN}`; sandbox auto -> {sandbox_note}; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}")
    cells: list[Cell] = []
    timers = Timers()
    repeats = {"native": REPEATS, "loop": REPEATS, "cli": CLI_REPEATS}
    try:
        for sandbox in SANDBOXES:
            for history in HISTORIES:
                first = Cell(work, sandbox, history, MODES[0])
                cells.append(first)
                cells.extend(Cell(work, sandbox, history, mode, twin=first) for mode in MODES[1:])
                print(f"  task for sandbox {sandbox}, history {history} set up in {first.setup_s:.1f} s "
                      f"(and copied in {max(c.setup_s for c in cells[-len(MODES) + 1:]):.1f} s each)", flush=True)
        for cell in cells:
            if cell.mode == "loop":
                cell.start_loop(WARMUP + REPEATS)
        bare = spawn_ms(["/bin/sh", "-c", RUN], cells[0].root)
        git_floor = spawn_ms(["git", "rev-parse", "HEAD"], cells[0].root)
        floors: dict[str, list[float]] = defaultdict(list)
        timers.install()
        # Round robin over the cells, so a burst of load elsewhere on the machine hits all alike.
        for i in range(WARMUP + max(repeats.values())):
            for cell in cells:
                if i < WARMUP + repeats[cell.mode]:
                    cell.step(timers, WARMUP)
            if WARMUP <= i < WARMUP + CLI_REPEATS:
                timers.uninstall()
                floor_step(work, floors)
                timers.install()
        print(f"  measured ({REPEATS} native and loop, {CLI_REPEATS} CLI experiments per cell after {WARMUP} "
              f"warm-up), load average {os.getloadavg()[0]:.1f}", flush=True)
        timers.uninstall()
        for cell in cells:
            if cell.mode == "loop":
                cell.finish_loop()
        floor_import = med(floors["python + the experiment's modules"])

        print()
        print(f"{'history':>7s}  {'sandbox':7s} {'mode':7s} {'total':>8s} {'run cmd':>8s} {'overhead':>8s}  "
              f"goal<{GOAL_MS:.0f}ms  verdicts")
        for c in sorted(cells, key=lambda c: (MODES.index(c.mode), c.sandbox != "none", c.history)):
            ok = "ok" if med(c.overhead) < GOAL_MS else "EXCEEDS"
            verdicts = " ".join(f"{k}={v}" for k, v in sorted(c.statuses.items()))
            print(f"{c.history:7d}  {c.sandbox:7s} {c.mode:7s} {med(c.total):8.1f} {med(c.run):8.1f} "
                  f"{med(c.overhead):8.1f}  {ok:9s} {verdicts}")
        print("(ms, medians; overhead = total - run cmd; in-process `run cmd` is measure.run_command, cli `run cmd` "
              "the journal's run seconds; `loop` is one full cycle of run_loop, proposal and next scratch included)")
        print(f"floors: the bare run command via subprocess {bare:.1f} ms; one `git rev-parse` {git_floor:.1f} ms; "
              + "; ".join(f"{label} {med(v):.1f} ms" for label, v in floors.items())
              + f" (bytecode {'cached' if BYTECODE_CACHE else 'recompiled on each call'})")
        costs = import_costs(work, IMPORT_TOP)
        print("  import self-time by top-level package (ms, -X importtime, one run): "
              + ", ".join(f"{name} {t:.0f}" for name, t in costs))

        def find(history: int, sandbox: str, mode: str) -> Cell:
            return next(c for c in cells if (c.history, c.sandbox, c.mode) == (history, sandbox, mode))

        lo, hi = HISTORIES[0], HISTORIES[-1]
        print()
        for sandbox in SANDBOXES:
            for mode in MODES:
                a, b = med(find(lo, sandbox, mode).overhead), med(find(hi, sandbox, mode).overhead)
                print(f"history {lo} -> {hi} ({sandbox}, {mode}): overhead {a:.1f} -> {b:.1f} ms "
                      f"({b - a:+.1f} ms, x{b / a:.2f})")
        if "none" in SANDBOXES and "auto" in SANDBOXES:
            for history in HISTORIES:
                none, auto = med(find(history, "none", "native").run), med(find(history, "auto", "native").run)
                print(f"history {history}: run cmd {none:.1f} ms (sandbox none) vs {auto:.1f} ms (auto) -> sandbox "
                      f"adds {auto - none:+.1f} ms per run phase; run_command adds {none - bare:+.1f} ms around "
                      f"the bare command without a sandbox")
        for sandbox in SANDBOXES:
            for history in HISTORIES:
                rest = med(find(history, sandbox, "cli").overhead) - med(find(history, sandbox, "native").overhead)
                print(f"cli - native ({sandbox}, history {history}): {rest:+.1f} ms, of which "
                      f"{floor_import:.0f} ms is python start + imports; the rest {rest - floor_import:+.1f} ms "
                      "(session open, config, lock, output; within the noise when near 0 or below)")

        for mode in ("native", "loop"):
            cell = find(hi, SANDBOXES[-1], mode)
            pair = [find(h, cell.sandbox, mode) for h in HISTORIES]
            print()
            print(f"breakdown of the {mode} overhead (sandbox {cell.sandbox}; self time, median ms per experiment; "
                  "calls in one experiment):")
            print(f"  {'':26s} " + " ".join(f"{'history ' + str(c.history):>13s}" for c in pair))
            labels = sorted({k for c in pair for k in c.breakdown}, key=lambda k: -med(cell.breakdown.get(k, [0.0])))
            for label in labels:
                calls = cell.calls.get(label)
                print(f"  {label:26s} " + " ".join(f"{med(c.breakdown.get(label, [0.0])):13.1f}" for c in pair)
                      + (f"  ({calls} calls)" if calls else ""))
            print(f"  {'= overhead':26s} " + " ".join(f"{med(c.overhead):13.1f}" for c in pair))
            if mode == "loop":
                print("  (loop: the driver thread polls its stop conditions while a run goes on, so parts of two "
                      "threads overlap and `other python` can come out below 0)")
            total_calls = [sum(c.values()) for c in cell.git_calls]
            print(f"git subprocesses per experiment: median {med(total_calls):.0f} (min {min(total_calls)}, max "
                  f"{max(total_calls)}), {med(cell.breakdown['git subprocesses']) / med(total_calls):.1f} ms each; "
                  "by subcommand (mean calls, median ms per experiment, at each history):")
            subs = sorted({k for c in cell.git_calls for k in c},
                          key=lambda k: -med([d.get(k, 0.0) for d in cell.git_seconds]))
            for sub in subs:
                print(f"  git {sub:14s} {statistics.mean([c.get(sub, 0) for c in cell.git_calls]):4.1f} calls "
                      + " ".join(f"{ms(med([d.get(sub, 0.0) for d in c.git_seconds])):7.1f} ms" for c in pair))
            print("git calls per experiment by call site (mean calls  caller -> Workspace method (subcommand); "
                  "keeps and discards alternate, so 0.5 is one call in one of the two):")
            sites = sorted({k for c in cell.sites for k in c},
                           key=lambda k: (-statistics.mean([c.get(k, 0) for c in cell.sites]), k))
            for site in sites:
                n = statistics.mean([c.get(site, 0) for c in cell.sites])
                print(f"  {n:3.1f}  {site}")
        cell = find(hi, SANDBOXES[-1], "native")
        print()
        print(f"cProfile of {PROFILE_EXPERIMENTS} native experiments (history {hi}, sandbox {cell.sandbox}), "
              f"top {PROFILE_TOP} by own time:")
        print(profile(cell))
    finally:
        timers.uninstall()
        for cell in cells:
            cell.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\ndone in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
