"""Orchestration overhead per experiment: everything `autoresearch experiment` does except
running the experiment's own command.

What it does, top to bottom:
  1. For each sandbox kind (SANDBOXES), history length (HISTORIES) and mode (in-process, CLI)
     it makes a fresh task with the CLI (`autoresearch init --template example`), swaps the run
     for a no-op shell command (`sed` printing the metric from a comment line of train.py),
     commits, locks, starts and runs the baseline. Then it fakes HISTORY-1 prior experiments
     cheaply but realistically: one git commit each (written by `git fast-import`; keeps chained
     on the branch, every commit under refs/autoresearch/<tag>/<seq>), a journal row each
     (Journal.begin/update), a runs-table row, a run.log folder, results.tsv regenerated.
  2. It measures round robin over the cells (so a burst of load elsewhere hits all alike). Each
     experiment edits train.py so that keeps and discards alternate.
     In-process: `Experimenter(session).run(...)` on one open session; `harness.run_command`
     is wrapped with a timer, overhead = total - run_command.
     CLI: wall time of `python -m autoresearch experiment -m ...` minus the run command's own
     seconds as the journal's runs table records them.
  3. Floors: the bare run command, one git call, python start, `import autoresearch.cli`.
  4. For the longest history with the default sandbox: where the in-process overhead goes (git
     subprocesses, SQLite journal calls, harness hashing, results.tsv), which git subcommands an
     experiment spawns and from where, and a cProfile of the top functions by own time.

How to read it: medians in milliseconds. `run cmd` is the harness's run_command (process start,
sandbox, capped log, /proc sweep); compare it with the bare-command floor to see what the harness
and the sandbox add around the user's process, and the `none` rows with the `auto` rows for the
sandbox's share. The issue's goal is an in-process overhead under GOAL_MS, flat in the history
length: compare the rows at 10 and 1,000 (differences of ~20 % between cells are noise on a
loaded 2-core machine; the load average is printed before and after).

CLI subprocesses run with cached bytecode (BYTECODE_CACHE), as an installed package would; this
checkout may set PYTHONDONTWRITEBYTECODE, which makes every CLI call recompile every module.

Run: .venv/bin/python benchmarks/overhead.py   (about 2 minutes on 2 cores)
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import autoresearch.experiment as E  # noqa: E402
import autoresearch.harness as H  # noqa: E402
from autoresearch.experiment import Experimenter  # noqa: E402
from autoresearch.journal import Journal, write_tsv  # noqa: E402
from autoresearch.sandbox import bwrap_works  # noqa: E402
from autoresearch.session import Session  # noqa: E402
from autoresearch.workspace import branch_name, experiment_ref  # noqa: E402

# -- knobs ----------------------------------------------------------------------------------------
HISTORIES = [10, 1000]  # prior experiments on the branch (baseline included)
SANDBOXES = ["none", "auto"]  # [sandbox] kind; "auto" is bwrap where it works, else none
WARMUP = 2  # untimed in-process experiments first (imports, caches, page cache)
REPEATS = 12  # timed in-process experiments per cell
CLI_REPEATS = 5  # timed `autoresearch experiment` subprocesses per cell
BARE_REPEATS = 30  # starts of the bare command, for the floor
PROFILE_EXPERIMENTS = 8  # experiments under cProfile in the breakdown
PROFILE_TOP = 15  # rows of the cProfile table
IMPORT_TOP = 8  # packages listed in the CLI's import-time breakdown
GOAL_MS = 100.0  # the goal for in-process overhead per experiment
TAG = "bench"
RUN = "sed -n 's/^# bench //p' train.py"  # the no-op run: prints `val_loss: X` from train.py
CLI = [sys.executable, "-m", "autoresearch"]
SWEEP = "run_command: /proc sweep"
BYTECODE_CACHE = True  # CLI subprocesses use cached bytecode, as an installed package does


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
    branch, discards and crashes beside it), refs, journal rows, runs rows, log folders."""
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
        # One fast-import stream: blob + commit per experiment, parent = best at that time.
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
        marks = root / ".autoresearch" / "bench-marks"
        proc = subprocess.run(["git", "fast-import", "--quiet", f"--export-marks={marks}"], cwd=root,
                              input=b"".join(stream), capture_output=True)
        if proc.returncode != 0:
            raise SystemExit(f"git fast-import failed: {proc.stderr.decode()}")
        sha = dict(line.split() for line in marks.read_text().splitlines())
        marks.unlink()
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
    """Wraps the functions an experiment spends its time in; sums seconds and counts calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: Counter = Counter()
        self.git_seconds: dict[str, float] = defaultdict(float)
        self.git_calls: Counter = Counter()
        self.sites: Counter = Counter()  # "caller -> workspace method (git subcommand)" -> calls
        self._undo: list = []

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()
        self.git_seconds.clear()
        self.git_calls.clear()
        self.sites.clear()

    def _wrap(self, owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - t
                self.calls[label] += 1
        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def install(self) -> "Timers":
        self._wrap(E, "run_command", "run_command")
        self._wrap(E, "verify", "verify (harness hashes)")
        self._wrap(E, "append_tsv", "results.tsv append")
        self._wrap(E, "tail_lines", "log tail")
        self._wrap(H, "sweep_marked", SWEEP)  # inside run_command: reported, not counted twice
        if hasattr(Experimenter, "_repair_tsv"):  # compares results.tsv with the journal each time
            self._wrap(Experimenter, "_repair_tsv", "results.tsv repair check")
        for name in ("begin", "update", "best", "latest_noise", "add_run", "get_meta", "set_meta"):
            self._wrap(Journal, name, "sqlite journal")
        # Every git call the workspace makes goes through subprocess.run.
        original_run = subprocess.run

        def run(args, *a, **kw):
            t = time.perf_counter()
            try:
                return original_run(args, *a, **kw)
            finally:
                if isinstance(args, (list, tuple)) and args and args[0] == "git":
                    sub = next((x for x in args[1:] if not x.startswith("-") and "=" not in x), "?")
                    self.git_seconds[sub] += time.perf_counter() - t
                    self.git_calls[sub] += 1
                    self.sites[call_site(sub)] += 1
                    self.seconds["git subprocesses"] += time.perf_counter() - t
                    self.calls["git subprocesses"] += 1
        subprocess.run = run
        self._undo.append((subprocess, "run", original_run))
        return self

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def call_site(sub: str) -> str:
    """Who asked for this git call: the first autoresearch frame outside workspace.py, and the
    Workspace method it called."""
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

    def __init__(self, root: Path, best: float) -> None:
        self.root, self.best, self.i = root, best, 0
        self.template = (root / "train.py").read_text().split("\n", 2)[2]

    def next(self) -> tuple[str, str]:
        self.i += 1
        if self.i % 2:
            self.best -= 0.001
            value = self.best
        else:
            value = self.best + 1.0
        (self.root / "train.py").write_text(train_py(self.template, value, f"edit {self.i}"))
        return f"bench edit {self.i} -> {value:.3f}", ("keep" if self.i % 2 else "discard")


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
        self.edits = Edits(self.root, self.best)
        self.session: Session | None = None  # opened at the first in-process step (after the twin's copy)
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

    def step(self, timers: Timers, warmup: int) -> None:
        description, _ = self.edits.next()
        if self.mode == "in-process":
            if self.session is None:
                self.session = Session.open(self.root)
            timers.reset()
            t = time.perf_counter()
            exp = Experimenter(self.session).run(description)
            total, run = time.perf_counter() - t, timers.seconds["run_command"]
        else:
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
        self.statuses[exp.status] += 1
        self.total.append(ms(total))
        self.run.append(ms(run))
        if self.mode == "in-process":
            accounted = 0.0
            for label, secs in timers.seconds.items():
                if label == SWEEP:  # inside run_command, so not part of the overhead
                    self.breakdown[label].append(ms(secs))
                elif label != "run_command":
                    self.breakdown[label].append(ms(secs))
                    accounted += secs
            self.breakdown["other python"].append(ms(total - run - accounted))
            self.git_seconds.append(dict(timers.git_seconds))
            self.git_calls.append(Counter(timers.git_calls))
            self.sites.append(Counter(timers.sites))
            self.calls = dict(timers.calls)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


def floor_step(cwd: Path, samples: dict[str, list[float]]) -> None:
    """One sample each of: bare interpreter start, interpreter + `import autoresearch.cli`,
    `autoresearch --version` (timed in the same rounds as the CLI experiments)."""
    for label, argv in (("python start", [sys.executable, "-c", "pass"]),
                        ("python + import autoresearch.cli", [sys.executable, "-c", "import autoresearch.cli"]),
                        ("autoresearch --version", [*CLI, "--version"])):
        t = time.perf_counter()
        subprocess.run(argv, cwd=cwd, capture_output=True, env=cli_env())
        samples[label].append(ms(time.perf_counter() - t))


def import_costs(cwd: Path, top: int) -> list[tuple[str, float]]:
    """The top-level packages `import autoresearch.cli` spends its time in (-X importtime)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import autoresearch.cli"], cwd=cwd,
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
        description, _ = cell.edits.next()
        profiler.enable()
        Experimenter(cell.session).run(description)
        profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(PROFILE_TOP)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    return "\n".join("  " + line for line in lines[start:])


# -- main ---------------------------------------------------------------------------------------------

def main() -> None:
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="autoresearch-overhead-"))
    os.environ["AUTORESEARCH_CACHE"] = str(work / "cache")
    os.environ["AUTORESEARCH_BENCH_PYCACHE"] = str(work / "pycache")  # read by cli_env() only
    sandbox_note = "bwrap" if bwrap_works() else "none (bwrap not usable here)"
    print(f"orchestration overhead per experiment; no-op run `{RUN}`; sandbox auto -> {sandbox_note}; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}")
    cells: list[Cell] = []
    timers = Timers()
    try:
        for sandbox in SANDBOXES:
            for history in HISTORIES:
                cells.append(Cell(work, sandbox, history, "in-process"))
                cells.append(Cell(work, sandbox, history, "cli", twin=cells[-1]))
                print(f"  task for sandbox {sandbox}, history {history} set up in {cells[-2].setup_s:.1f} s "
                      f"(and copied in {cells[-1].setup_s:.1f} s)", flush=True)
        bare = spawn_ms(["/bin/sh", "-c", RUN], cells[0].root)
        git_floor = spawn_ms(["git", "rev-parse", "HEAD"], cells[0].root)
        floors: dict[str, list[float]] = defaultdict(list)
        timers.install()
        # Round robin over the cells, so a burst of load elsewhere on the machine hits all alike.
        for i in range(WARMUP + max(REPEATS, CLI_REPEATS)):
            for cell in cells:
                n = REPEATS if cell.mode == "in-process" else CLI_REPEATS
                if i < WARMUP + n:
                    cell.step(timers, WARMUP)
            if WARMUP <= i < WARMUP + CLI_REPEATS:
                timers.uninstall()
                floor_step(work, floors)
                timers.install()
        print(f"  measured ({REPEATS} in-process and {CLI_REPEATS} CLI experiments per cell after {WARMUP} "
              f"warm-up), load average {os.getloadavg()[0]:.1f}", flush=True)
        timers.uninstall()
        floor_import = med(floors["python + import autoresearch.cli"])

        print()
        print(f"{'history':>7s}  {'sandbox':7s} {'mode':10s} {'total':>8s} {'run cmd':>8s} {'overhead':>8s}  "
              f"goal<{GOAL_MS:.0f}ms  verdicts")
        for c in sorted(cells, key=lambda c: (c.mode != "in-process", c.sandbox != "none", c.history)):
            ok = "ok" if med(c.overhead) < GOAL_MS else "EXCEEDS"
            verdicts = " ".join(f"{k}={v}" for k, v in sorted(c.statuses.items()))
            print(f"{c.history:7d}  {c.sandbox:7s} {c.mode:10s} {med(c.total):8.1f} {med(c.run):8.1f} "
                  f"{med(c.overhead):8.1f}  {ok:9s} {verdicts}")
        print("(ms, medians; overhead = total - run cmd; in-process `run cmd` is the harness.run_command call, "
              "cli `run cmd` the journal's RunResult.seconds)")
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
            for mode in ("in-process", "cli"):
                a, b = med(find(lo, sandbox, mode).overhead), med(find(hi, sandbox, mode).overhead)
                print(f"history {lo} -> {hi} ({sandbox}, {mode}): overhead {a:.1f} -> {b:.1f} ms "
                      f"({b - a:+.1f} ms, x{b / a:.2f})")
        if "none" in SANDBOXES and "auto" in SANDBOXES:
            for history in HISTORIES:
                none, auto = med(find(history, "none", "in-process").run), med(find(history, "auto", "in-process").run)
                print(f"history {history}: run cmd {none:.1f} ms (sandbox none) vs {auto:.1f} ms (auto) -> sandbox "
                      f"adds {auto - none:+.1f} ms per run phase; run_command adds {none - bare:+.1f} ms around "
                      f"the bare command without a sandbox")
        for sandbox in SANDBOXES:
            for history in HISTORIES:
                rest = med(find(history, sandbox, "cli").overhead) - med(find(history, sandbox, "in-process").overhead)
                print(f"cli - in-process ({sandbox}, history {history}): {rest:+.1f} ms, of which "
                      f"{floor_import:.0f} ms is python start + imports; the rest {rest - floor_import:+.1f} ms "
                      "(session open, config, lock, reconcile, output; within the noise when near 0 or below)")

        cell = find(hi, SANDBOXES[-1], "in-process")
        pair = [find(h, cell.sandbox, "in-process") for h in HISTORIES]
        print()
        print(f"breakdown of the in-process overhead (sandbox {cell.sandbox}; median ms per experiment; calls "
              "in one experiment):")
        print(f"  {'':26s} " + " ".join(f"{'history ' + str(c.history):>13s}" for c in pair))
        labels = sorted({k for c in pair for k in c.breakdown}, key=lambda k: -med(cell.breakdown.get(k, [0.0])))
        for label in labels:
            calls = cell.calls.get(label)
            print(f"  {label:26s} " + " ".join(f"{med(c.breakdown.get(label, [0.0])):13.1f}" for c in pair)
                  + (f"  ({calls} calls)" if calls else ""))
        print(f"  {'= overhead':26s} " + " ".join(f"{med(c.overhead):13.1f}" for c in pair))
        total_calls = [sum(c.values()) for c in cell.git_calls]
        print(f"git subprocesses per experiment: median {med(total_calls):.0f} (min {min(total_calls)}, max "
              f"{max(total_calls)}), {med(cell.breakdown['git subprocesses']) / med(total_calls):.1f} ms each; "
              "by subcommand (mean calls, median ms per experiment):")
        subs = sorted({k for c in cell.git_calls for k in c},
                      key=lambda k: -med([d.get(k, 0.0) for d in cell.git_seconds]))
        for sub in subs:
            print(f"  git {sub:14s} {statistics.mean([c.get(sub, 0) for c in cell.git_calls]):4.1f} calls "
                  f"{ms(med([d.get(sub, 0.0) for d in cell.git_seconds])):7.1f} ms")
        print("git calls per experiment by call site (mean calls  caller -> Workspace method (subcommand); keeps "
              "and discards alternate, so 0.5 is one call in one of the two):")
        sites = sorted({k for c in cell.sites for k in c},
                       key=lambda k: (-statistics.mean([c.get(k, 0) for c in cell.sites]), k))
        for site in sites:
            n = statistics.mean([c.get(site, 0) for c in cell.sites])
            print(f"  {n:3.1f}  {site}")
        print()
        print(f"cProfile of {PROFILE_EXPERIMENTS} in-process experiments (history {hi}, sandbox {cell.sandbox}), "
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
