"""Native `autoresearch experiment` against the hand loop it replaces, as whole processes.

Why: the original's loop is a few shell commands (`git commit`, run, grep the metric, `git
reset`); an agent runs `autoresearch experiment -m ...` hundreds of times a night instead, so
on a fast task what the command adds around the run is the tool's own cost (issue 13: within
2x of the hand loop, wall and CPU).

What it does:
  1. Builds a no-op task (`autoresearch init --template example`; train.py only prints the
     metric, run by `python3 train.py` or, with --run sed, a `sed` that prints the metric line
     from train.py and nothing else; the template's evaluate phase goes) and a
     twin copy of it for the hand loop, with `hand_loop.sh`: git commit, run, grep the metric,
     git reset (what the original's agent types).
  2. Each experiment is a real one: train.py's constant X alternates between 1 and 2 (the best
     has 0), the metric stays the same, so both sides take the discard path every time (A: a
     `not-better` verdict and the folder reset to best; B: `git reset --hard HEAD~1`).
  3. Times both as whole processes in alternation, A B A B ... (PAIRS pairs after WARMUP), each
     started with Popen and reaped with os.wait4, so its CPU (user + sys of the process and
     every child it waited for) comes from the kernel. Prints median wall and CPU per side and
     the ratios A / B.
  4. --profile: where the native command's time goes. `-X importtime` (cumulative and self time
     by module, ranked), every subprocess the command starts (strace -f -e trace=execve when
     strace is there; else a subprocess wrapper), grouped by git subcommand, and a cProfile of
     the command run in-process (cumulative, autoresearch functions).

Bytecode is cached for the CLI (PYTHONPYCACHEPREFIX in the work folder), as an installed package
has it; this checkout may set PYTHONDONTWRITEBYTECODE, which would recompile every module.

Run: .venv/bin/python benchmarks/native_overhead.py [--pairs 15] [--sandbox auto|none] [--run python|sed]
                                                      [--profile] [--no-timing]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

WARMUP = 2  # untimed pairs first (page cache, bytecode cache)
PAIRS = 15
GOAL_RATIO = 2.0
# The no-op run prints `val_loss: 1.000000` and nothing else. "python": train.py is a Python
# file that prints it, as the original's train.py is Python (the real interpreter, not a pyenv
# shim, which costs ~250 ms by itself); "sed": no interpreter at all, the floor of any run.
PYTHON = str(Path(sys.base_prefix) / "bin" / "python3")
RUNS = {"python": f"{PYTHON} train.py", "sed": "sed -n 's/^#: //p' train.py"}
TRAIN = '#: val_loss: 1.000000\nX = 0\nprint("val_loss: 1.000000")\n'
RUN = RUNS["python"]
# The floors, in the same rounds: what any Python command pays, the standard library the native
# experiment cannot do without (SQLite journal, TOML config, dataclasses, subprocesses, paths,
# hashes, temp files), and every module `autoresearch experiment -m` loads (cli._native, trial
# and branch pull in the rest).
STDLIB = ("import sqlite3, tomllib, dataclasses, subprocess, pathlib, json, hashlib, tempfile, shutil, "
          "threading, select, signal, fnmatch, glob, math, random, re")
OURS = "import autoresearch.cli._native, autoresearch.trial, autoresearch.branch"
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}

HAND_LOOP = """#!/bin/sh
# The original's loop, one experiment: commit the edit, run, read the metric, go back.
git commit -q -a -m "$1" || exit 1
{run} > run.log 2>&1
grep '^val_loss:' run.log
git reset -q --hard HEAD~1
"""


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cli_argv() -> list[str]:
    """What an agent calls: the installed console script next to this interpreter, else -m."""
    script = Path(sys.executable).parent / "autoresearch"
    return [str(script)] if script.exists() else [sys.executable, "-m", "autoresearch"]


def cli_env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    env["AUTORESEARCH_CACHE"] = str(work / "cache")
    return env


def run_checked(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"`{' '.join(argv)}` failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def with_x(text: str, value: int) -> str:
    return re.sub(r"^X = \d+$", f"X = {value}", text, count=1, flags=re.M)


def build(work: Path, sandbox: str, env: dict[str, str]) -> tuple[Path, Path]:
    """The no-op task (native side) and its hand-loop twin."""
    task = work / "native"
    run_checked([*cli_argv(), "init", str(task), "--template", "example"], work, env)
    config = (task / "autoresearch.toml").read_text()
    config = config.replace('run = "python train.py"', f'run = "{RUN}"')
    config = config.replace('evaluate = "python evaluate.py"\n', "")
    config += f'\n[sandbox]\nkind = "{sandbox}"\n'
    (task / "autoresearch.toml").write_text(config)
    (task / "train.py").write_text(TRAIN)
    git_env = {**env, **GIT_ENV}
    run_checked(["git", "commit", "-qam", "bench: no-op run"], task, git_env)
    hand = work / "hand"
    shutil.copytree(task, hand, symlinks=True)  # before lock/start: a plain repository with the same files
    (hand / "hand_loop.sh").write_text(HAND_LOOP.format(run=RUN))
    (hand / "hand_loop.sh").chmod(0o755)
    (hand / ".gitignore").write_text("run.log\nhand_loop.sh\n")
    run_checked(["git", "add", ".gitignore"], hand, git_env)
    run_checked(["git", "commit", "-qm", "ignore the loop's own files"], hand, git_env)
    served = work / "served"
    shutil.copytree(task, served, symlinks=True)  # S: the same task, its own `autoresearch serve`
    for folder in (task, served):
        for args in (["lock"], ["start", "--tag", "bench"], ["baseline"]):
            run_checked([*cli_argv(), *args], folder, env)
    return task, hand, served


def start_server(served: Path, env: dict[str, str]) -> subprocess.Popen:
    """`autoresearch serve` for the S side, up when its socket is."""
    if GROUPS is not None:
        GROUPS.enter("served")  # the server, its copies and their runs count against S
    proc = subprocess.Popen([*cli_argv(), "serve", "--idle", "0"], cwd=served, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sock = served / ".autoresearch" / "serve.sock"
    deadline = time.monotonic() + 30
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"`autoresearch serve` did not start: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    return proc


def served_cpu(served: Path) -> float:
    """The server's CPU for the last request, from its log: the forked copy (with everything it
    waited for) plus the server process's own share. (Used without cgroups only.)"""
    last = (served / ".autoresearch" / "serve.log").read_text().splitlines()[-1].split("\t")
    return float(last[4]) + float(last[5])


class CpuGroups:
    """CPU seconds of everything a side starts, from a cgroup per side (cpuacct.usage, v1; else
    cpu.stat, v2), when this process may make cgroups.

    Why not wait4 alone: a sandboxed run's processes are reaped by bubblewrap's init inside the
    run's PID namespace, and that CPU never reaches the caller's rusage (measured here: a Python
    run of 45 ms CPU shows 1.6 ms through bwrap). A cgroup counts every process in it, whatever
    namespace it lives in; children stay in their parent's group, so the server's copies and
    their runs count against S."""

    def __init__(self) -> None:
        self.base: Path | None = None
        self.groups: dict[str, Path] = {}
        for base, usage in ((Path("/sys/fs/cgroup/cpuacct"), "cpuacct.usage"), (Path("/sys/fs/cgroup"), "cpu.stat")):
            probe = base / f"autoresearch-bench-{os.getpid()}"
            try:
                probe.mkdir()
            except OSError:
                continue
            if (probe / usage).exists():
                self.base, self.usage_file = base, usage
                self.groups["probe"] = probe
                break
            probe.rmdir()

    @property
    def ok(self) -> bool:
        return self.base is not None

    def enter(self, side: str) -> None:
        """Move this process into SIDE's group: what it starts next is born there. (Not a
        preexec_fn: that forces Popen's slow fork path, which would add the same milliseconds to
        every side and flatter the ratios.)"""
        if self.base is None:
            return
        group = self.groups.get(side)
        if group is None:
            group = self.groups[side] = self.base / f"autoresearch-bench-{os.getpid()}-{side}"
            group.mkdir(exist_ok=True)
        (group / "cgroup.procs").write_text(str(os.getpid()))

    def seconds(self, side: str) -> float:
        group = self.groups.get(side)
        if group is None:
            return 0.0
        text = (group / self.usage_file).read_text()
        if self.usage_file == "cpuacct.usage":
            return int(text) / 1e9
        return int(dict(line.split() for line in text.splitlines())["usage_usec"]) / 1e6

    def close(self) -> None:
        if self.base is not None:  # back where this process came from, so the groups can go
            (self.base / "cgroup.procs").write_text(str(os.getpid()))
        for group in self.groups.values():
            try:
                group.rmdir()
            except OSError:
                pass


GROUPS: CpuGroups | None = None


def timed(argv: list[str], cwd: Path, env: dict[str, str], side: str = "") -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and the exit status of one whole process. CPU: with cgroups,
    everything SIDE's group used meanwhile (a sandboxed run and a server's copy included); else
    user + sys of the process and its reaped children (wait4), which misses a sandboxed run."""
    groups = GROUPS if GROUPS is not None and GROUPS.ok and side else None
    if groups:
        groups.enter(side)
    before = groups.seconds(side) if groups else 0.0
    t = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    cpu = groups.seconds(side) - before if groups else usage.ru_utime + usage.ru_stime
    return wall, cpu, proc.returncode


def measure(task: Path, hand: Path, served: Path, env: dict[str, str], pairs: int) -> dict[str, dict[str, list[float]]]:
    git_env = {**env, **GIT_ENV}
    native_text, hand_text = (task / "train.py").read_text(), (hand / "train.py").read_text()
    results: dict[str, dict[str, list[float]]] = {
        k: defaultdict(list) for k in ("native", "hand", "served", "python", "stdlib", "import")}
    codes: Counter = Counter()
    for i in range(WARMUP + pairs):
        x = 1 + i % 2  # a real change every time: the best has X = 0
        (task / "train.py").write_text(with_x(native_text, x))
        wall_a, cpu_a, code_a = timed([*cli_argv(), "experiment", "-m", f"X = {x}"], task, env, "native")
        (hand / "train.py").write_text(with_x(hand_text, x))
        wall_b, cpu_b, code_b = timed(["./hand_loop.sh", f"X = {x}"], hand, git_env, "hand")
        if code_b != 0 or code_a not in (0, 3, 4):
            raise SystemExit(f"pair {i}: native exit {code_a}, hand loop exit {code_b}; see {task} and {hand}")
        if with_x((task / "train.py").read_text(), 0) != (task / "train.py").read_text() \
                or (hand / "train.py").read_text() != hand_text:
            raise SystemExit(f"pair {i}: a folder was not reset to the best ({task}, {hand})")
        codes[code_a] += 1
        (served / "train.py").write_text(with_x(native_text, x))
        wall_c, cpu_c, code_c = timed([*cli_argv(), "experiment", "-m", f"X = {x}"], served, env, "served")
        if code_c != code_a or with_x((served / "train.py").read_text(), 0) != (served / "train.py").read_text():
            raise SystemExit(f"pair {i}: the served experiment exited {code_c} (cold: {code_a}) or left "
                             f"the folder off the best; see {served}")
        if GROUPS is None or not GROUPS.ok:
            cpu_c += served_cpu(served)  # the server is not this process's child: its log says
        # Floors, in the same rounds: what any Python CLI pays, and what importing ours adds.
        wall_p, cpu_p, _ = timed([sys.executable, "-c", "pass"], task, env, "floor")
        wall_s, cpu_s, _ = timed([sys.executable, "-c", STDLIB], task, env, "floor")
        wall_i, cpu_i, _ = timed([sys.executable, "-c", OURS], task, env, "floor")
        if i < WARMUP:
            continue
        for side, wall, cpu in (("native", wall_a, cpu_a), ("hand", wall_b, cpu_b), ("served", wall_c, cpu_c),
                                ("python", wall_p, cpu_p),
                                ("stdlib", wall_s, cpu_s), ("import", wall_i, cpu_i)):
            results[side]["wall"].append(wall)
            results[side]["cpu"].append(cpu)
    results["native"]["exit codes"] = [float(k) for k in codes.elements()]
    return results


def report(results: dict[str, dict[str, list[float]]], pairs: int, sandbox: str) -> None:
    a, b = results["native"], results["hand"]
    print(f"\n{pairs} pairs (A B alternating, after {WARMUP} warm-up pairs); run `{RUN}`; sandbox {sandbox}; "
          f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}")
    how = ("a cgroup per side: every process, the sandboxed run and the server's copies included"
           if GROUPS is not None and GROUPS.ok else
           "wait4 (no cgroups here): a sandboxed run's CPU is NOT counted, so A and S read low")
    print(f"cpu: {how}")
    print(f"{'side':34s} {'wall ms':>8s} {'cpu ms':>8s}   (medians; min-max wall)")
    for name, side in (("A  autoresearch experiment -m", a), ("B  hand loop (commit run grep reset)", b)):
        print(f"{name:34s} {1000 * med(side['wall']):8.1f} {1000 * med(side['cpu']):8.1f}   "
              f"({1000 * min(side['wall']):.0f}-{1000 * max(side['wall']):.0f})")
    ratio_wall = med(a["wall"]) / med(b["wall"])
    ratio_cpu = med(a["cpu"]) / med(b["cpu"])
    print(f"{'ratio A / B':34s} {ratio_wall:7.2f}x {ratio_cpu:7.2f}x   goal <= {GOAL_RATIO:.1f}x: "
          f"{'met' if max(ratio_wall, ratio_cpu) <= GOAL_RATIO else 'NOT met'}")
    c = results["served"]
    name = "S  the same, `autoresearch serve` up"
    print(f"{name:34s} {1000 * med(c['wall']):8.1f} {1000 * med(c['cpu']):8.1f}   "
          f"({1000 * min(c['wall']):.0f}-{1000 * max(c['wall']):.0f})")
    served_wall, served_cpu = med(c["wall"]) / med(b["wall"]), med(c["cpu"]) / med(b["cpu"])
    print(f"{'ratio S / B':34s} {served_wall:7.2f}x {served_cpu:7.2f}x   goal <= {GOAL_RATIO:.1f}x: "
          f"{'met' if max(served_wall, served_cpu) <= GOAL_RATIO else 'NOT met'}")
    print(f"A's exit codes: {dict(Counter(int(c) for c in a['exit codes']))} (0 keep/discard, 3 crash, 4 rejected)")
    p, sl, i = results["python"], results["stdlib"], results["import"]
    print(f"floors (same rounds, wall / cpu ms): `python -c pass` {1000 * med(p['wall']):.1f} / {1000 * med(p['cpu']):.1f}; "
          f"the standard library it needs {1000 * med(sl['wall']):.1f} / {1000 * med(sl['cpu']):.1f}; "
          f"every module it loads {1000 * med(i['wall']):.1f} / {1000 * med(i['cpu']):.1f}")
    print(f"so A = start {1000 * med(p['wall']):.0f} + standard library {1000 * (med(sl['wall']) - med(p['wall'])):.0f} + "
          f"autoresearch's modules {1000 * (med(i['wall']) - med(sl['wall'])):.0f} + the command's work "
          f"{1000 * (med(a['wall']) - med(i['wall'])):.0f} ms (wall, medians; the run included)")
    print(f"a fresh process that only loads what the command needs costs {med(i['wall']) / med(b['wall']):.2f}x "
          f"the whole hand loop before it does any work")


# -- --profile ------------------------------------------------------------------------------------

def next_edit(task: Path, counter: list[int]) -> None:
    counter[0] += 1
    text = (task / "train.py").read_text()
    (task / "train.py").write_text(with_x(text, 1 + counter[0] % 2))


def import_profile(task: Path, env: dict[str, str], counter: list[int], top: int = 20) -> None:
    """-X importtime of a real `experiment` command: cumulative time of the top-level imports
    and self time summed by top-level package."""
    next_edit(task, counter)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "autoresearch", "experiment", "-m", "imports"],
                          cwd=task, env=env, capture_output=True, text=True)
    rows = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(1)), int(m.group(2)), (len(m.group(3)) - 1) // 2, m.group(4)))
    total = sum(r[0] for r in rows) / 1000
    by_package: dict[str, float] = defaultdict(float)
    for own, _, _, name in rows:
        by_package[name.split(".")[0]] += own / 1000
    print(f"\n== imports of `autoresearch experiment` (-X importtime; {len(rows)} modules, {total:.0f} ms self in all)")
    print("self time by top-level package (ms):")
    for name, ms_ in sorted(by_package.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {ms_:7.1f}  {name}")
    print("largest cumulative imports (ms, nesting level, module; nested rows are inside the one above):")
    for _own, cum, level, name in sorted(rows, key=lambda r: -r[1])[:top]:
        print(f"  {cum / 1000:7.1f}  {'  ' * min(level, 6)}{name}")
    interesting = [r for r in rows if r[3].split(".")[0] not in ("autoresearch",) and r[2] == 0]
    print("top-level imports outside autoresearch, as the command loads them (cumulative ms):")
    for _own, cum, _level, name in sorted(interesting, key=lambda r: -r[1])[:12]:
        print(f"  {cum / 1000:7.1f}  {name}")


def subprocess_profile(task: Path, env: dict[str, str], counter: list[int], runs: int = 3) -> None:
    """Every program one `experiment` starts, via strace (execve), grouped by git subcommand."""
    if not shutil.which("strace"):
        print("\n(strace not found: no subprocess count)")
        return
    per_run: list[Counter] = []
    for _ in range(runs):
        next_edit(task, counter)
        with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
            subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "-o", out.name,
                            *cli_argv(), "experiment", "-m", "strace"], cwd=task, env=env, capture_output=True)
            calls: Counter = Counter()
            for line in Path(out.name).read_text().splitlines():
                m = re.search(r'execve\("([^"]+)", \[(.*?)\]', line)
                if not m or "= -1" in line:
                    continue
                args = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(2))
                prog = Path(m.group(1)).name
                if prog == "git":
                    sub = next((x for x in args[1:] if not x.startswith("-") and "=" not in x), "?")
                    calls[f"git {sub}"] += 1
                else:
                    calls[prog] += 1
            per_run.append(calls)
    keys = sorted({k for c in per_run for k in c}, key=lambda k: (-statistics.mean(c.get(k, 0) for c in per_run), k))
    git_total = [sum(v for k, v in c.items() if k.startswith("git ")) for c in per_run]
    print(f"\n== programs started by one `autoresearch experiment` (strace -f execve; mean of {runs}): "
          f"{statistics.mean(sum(c.values()) for c in per_run):.1f} execs, of which git {statistics.mean(git_total):.1f}")
    for k in keys:
        print(f"  {statistics.mean(c.get(k, 0) for c in per_run):5.1f}  {k}")


def git_sites(task: Path, env: dict[str, str], counter: list[int]) -> None:
    """One `experiment` in-process with subprocess.run wrapped: each git call's time and the
    autoresearch function that asked for it, in order."""
    next_edit(task, counter)
    code = r'''
import os, subprocess, sys, time, traceback
sys.path.insert(0, BENCHMARKS)
from _gitcalls import git_subcommand as subcommand
import autoresearch.spawn as SP
calls = []
def counted(original):
    def call(args, *a, **kw):
        t = time.perf_counter()
        try:
            return original(args, *a, **kw)
        finally:
            if isinstance(args, (list, tuple)) and args and os.path.basename(str(args[0])) == "git":
                site = [f for f in traceback.extract_stack()[:-1] if "autoresearch" in f.filename]
                where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1][:-3]}.{f.name}" for f in site[-1:-4:-1])
                calls.append((time.perf_counter() - t, subcommand(args), where))
    return call
subprocess.run = counted(subprocess.run)  # git outside Workspace.git
SP.capture = counted(SP.capture)  # Workspace.git
import runpy, atexit
def dump():
    total = sum(c[0] for c in calls)
    print(f"@@ {len(calls)} git calls, {1000 * total:.1f} ms", file=sys.stderr)
    for secs, sub, where in calls:
        print(f"@@ {1000 * secs:6.1f} ms  git {sub:12s} {where}", file=sys.stderr)
atexit.register(dump)
sys.argv = ["autoresearch", "experiment", "-m", "sites"]
runpy.run_module("autoresearch", run_name="__main__")
'''
    code = code.replace("BENCHMARKS", repr(str(Path(__file__).resolve().parent)), 1)
    proc = subprocess.run([sys.executable, "-c", code], cwd=task, env=env, capture_output=True, text=True)
    lines = [line[3:] for line in proc.stderr.splitlines() if line.startswith("@@ ")]
    print("\n== git calls of one `experiment`, in order (ms, subcommand, caller <- its callers):")
    for line in lines:
        print(f"  {line}")


def cprofile(task: Path, env: dict[str, str], counter: list[int], top: int = 25) -> None:
    """cProfile of one whole `experiment` command in-process (imports included), cumulative."""
    next_edit(task, counter)
    with tempfile.NamedTemporaryFile(suffix=".prof") as out:
        subprocess.run([sys.executable, "-m", "cProfile", "-o", out.name, "-m", "autoresearch", "experiment", "-m",
                        "cprofile"], cwd=task, env=env, capture_output=True)
        import io
        import pstats

        buf = io.StringIO()
        stats = pstats.Stats(out.name, stream=buf)
        stats.sort_stats("cumulative").print_stats(r"autoresearch/(?!.*_bootstrap)", top)
    lines = [line for line in buf.getvalue().splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    print(f"\n== cProfile of one `experiment` (cumulative; autoresearch functions, top {top}):")
    print("\n".join("  " + line for line in lines[start:]))


# -- main -------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=PAIRS, help="timed A B pairs")
    parser.add_argument("--sandbox", default="auto", choices=["auto", "none", "bwrap"],
                        help="[sandbox] kind of the native side (auto: what a user gets)")
    parser.add_argument("--run", default="python", choices=sorted(RUNS),
                        help="the no-op run: a Python train.py that prints the metric, or a sed (no interpreter)")
    parser.add_argument("--profile", action="store_true", help="also: where the native command's time goes")
    parser.add_argument("--no-timing", action="store_true", help="only the --profile part")
    args = parser.parse_args()
    global RUN
    RUN = RUNS[args.run]
    global GROUPS
    GROUPS = CpuGroups()
    work = Path(tempfile.mkdtemp(prefix="autoresearch-native-overhead-"))
    env = cli_env(work)
    started = time.time()
    try:
        task, hand, served = build(work, args.sandbox, env)
        print(f"no-op run `{RUN}`; A = `{' '.join(Path(a).name for a in cli_argv())} experiment -m ...` "
              f"(python {sys.version.split()[0]}, bytecode cached); B = hand_loop.sh")
        if not args.no_timing:
            server = start_server(served, env)
            try:
                results = measure(task, hand, served, env, args.pairs)
            finally:
                server.terminate()
                server.wait(timeout=30)
            report(results, args.pairs, args.sandbox)
        if args.profile:
            counter = [0]
            import_profile(task, env, counter)
            subprocess_profile(task, env, counter)
            git_sites(task, env, counter)
            cprofile(task, env, counter)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        GROUPS.close()
    print(f"\ndone in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
