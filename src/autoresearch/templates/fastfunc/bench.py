"""Read-only harness of the `fastfunc` task: check solution.edit_distance, then time it.

What it does, in order:
  1. correctness: fixed edge cases, pairs from fixed seeds, and fresh random pairs drawn for
     this run (seeded from AUTORESEARCH_SEED and a per-run nonce), all compared with
     `reference` below. One wrong answer and the run fails.
  2. timing: a batch of long pairs of fixed shapes (WORKLOAD) with fresh random contents,
     REPEATS times, each time in a fresh process. This process measures the wall time from
     sending the batch to reading the answers, checks every answer, and prints the median as
     `seconds` (lower is better). It is a noisy number on purpose: the verdict must tell
     real speedups from luck.

Why it is hard to cheat:
  - The timed contents are new every run, so no answer can be precomputed or embedded, and a
    fresh process per repetition leaves nothing to memoize between repetitions.
  - solution.py never runs in this process, so it cannot touch the clock, the reference or
    the comparison. It runs in `python -I -S bench.py --child`, under an audit hook (PEP 578)
    that allows reading only the standard library and the task folder, and refuses writes,
    processes, sockets, ctypes, changes to sys.path and native modules from elsewhere. So the
    function is pure Python plus the standard library, on one core, as the task intends.
"""

from __future__ import annotations

import json
import os
import random
import resource
import secrets
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

REPEATS = 5  # timed repetitions, each in a fresh process; the median is the metric
# The timed batch: (length of a, how b is made, amount). Contents are fresh every run, shapes are
# not, so timings compare across runs. "edits": b is a with that fraction of random edits;
# "random": b is unrelated text of that length; the alphabet decides how often characters match.
WORKLOAD = [
    (300, "edits", 0.05, "text"),
    (300, "edits", 0.20, "text"),
    (250, "edits", 0.02, "text"),
    (250, "random", 250, "text"),
    (300, "random", 100, "dna"),
    (250, "edits", 0.10, "unicode"),
    (200, "random", 200, "binary"),
    (350, "edits", 0.01, "text"),
]
ALPHABETS = {
    "text": "eeeeetttaaoinshrdlucmfwypvbgkjqxz      ,.ETAOIN\n",
    "dna": "ACGT",
    "binary": "01",
    "unicode": "aäáàâeéèêiïoöuüßçñλπΩжшдя中文字日本語😀🚀€",
}
WARMUP = [("warm up", "the interpreter"), ("x" * 30, "y" * 31)]
MEMORY_LIMIT_BYTES = 4 * 1024**3
BUDGET_S = float(os.environ.get("AUTORESEARCH_BUDGET_S", "20"))  # all timed repetitions together
SEED = int(os.environ.get("AUTORESEARCH_SEED", "0"))
EDITABLE = "solution.py"


def reference(a: str, b: str) -> int:
    """Levenshtein distance, the plain two-row dynamic program. The ground truth."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


# -- inputs --------------------------------------------------------------------------------------------

def random_text(rng: random.Random, n: int, alphabet: str) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def mutate(rng: random.Random, text: str, rate: float, alphabet: str) -> str:
    """TEXT with about rate * len(TEXT) random insertions, deletions and substitutions."""
    chars = list(text)
    for _ in range(round(rate * len(text))):
        op, at = rng.randrange(3), rng.randrange(len(chars) + 1)
        if op == 0:
            chars.insert(at, rng.choice(alphabet))
        elif op == 1 and at < len(chars):
            del chars[at]
        elif at < len(chars):
            chars[at] = rng.choice(alphabet)
    return "".join(chars)


def edge_cases() -> list[tuple[str, str]]:
    """Small cases with known traps: empty strings, swaps, non-ASCII, lengths around 64 and 128."""
    cases = [("", ""), ("", "abc"), ("abc", ""), ("a", "a"), ("a", "b"), ("kitten", "sitting"),
             ("flaw", "lawn"), ("intention", "execution"), ("ab", "ba"), ("aaaa", "aa"), ("abc", "abc"),
             ("naïve", "naive"), ("日本語", "日本"), ("😀x", "x😀"), ("a" * 64, "a" * 65), ("ab" * 40, "ba" * 40),
             ("x" * 128, "y" * 128), ("abc" * 50, "abd" * 50), ("z" * 63 + "q", "q" + "z" * 63), (" ", "\n")]
    return cases + [(b, a) for a, b in cases]


def random_cases(rng: random.Random, count: int, max_len: int) -> list[tuple[str, str]]:
    cases = []
    for _ in range(count):
        alphabet = ALPHABETS[rng.choice(sorted(ALPHABETS))]
        a = random_text(rng, rng.randint(0, max_len), alphabet[:rng.randint(1, len(alphabet))])
        b = mutate(rng, a, rng.random() * 0.5, alphabet) if rng.random() < 0.7 else random_text(rng, rng.randint(0, max_len), alphabet)
        cases.append((a, b))
    return cases


def timed_batch(rng: random.Random) -> list[tuple[str, str]]:
    batch = []
    for length, kind, amount, alphabet_name in WORKLOAD:
        alphabet = ALPHABETS[alphabet_name]
        a = random_text(rng, length, alphabet)
        b = mutate(rng, a, amount, alphabet) if kind == "edits" else random_text(rng, int(amount), alphabet)
        batch.append((a, b))
    return batch


# -- the sandboxed child -------------------------------------------------------------------------------

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
ALLOWED_OS_EVENTS = ("os.listdir", "os.scandir")  # the import system lists folders
DENIED_PREFIXES = ("os.", "subprocess.", "socket.", "ctypes.", "shutil.", "tempfile.", "mmap.", "resource.",
                   "sqlite3.", "urllib.", "http.", "ftplib.", "smtplib.", "webbrowser.", "pty.", "fcntl.",
                   "sys.addaudithook", "_posixsubprocess", "_thread.", "msvcrt.", "winreg.", "_winapi.")


def _under(path: object, roots: list[str]) -> bool:
    if not isinstance(path, (str, bytes, os.PathLike)):
        return False  # an open file descriptor, say
    real = os.path.realpath(os.fsdecode(path))
    return any(real == root or real.startswith(root + os.sep) for root in roots)


def _make_guard(roots: list[str], path_snapshot: list[str]):
    def guard(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool((flags or 0) & WRITE_FLAGS)
            if writing or not _under(path, roots):
                raise PermissionError(f"fastfunc sandbox: opening {path!r} (mode {mode!r}) is not allowed")
        elif event == "import":
            if args[1] is not None and not _under(args[1], roots):
                raise PermissionError(f"fastfunc sandbox: loading {args[1]!r} is not allowed (standard library only)")
            if list(sys.path) != path_snapshot:
                raise PermissionError("fastfunc sandbox: imports with a changed sys.path are not allowed")
        elif event.startswith(DENIED_PREFIXES) and event not in ALLOWED_OS_EVENTS:
            raise PermissionError(f"fastfunc sandbox: {event!r} is not allowed")
    return guard


def child_main(task_dir: str) -> None:
    """Import solution.py under the sandbox, then answer batches: one JSON line in, one out."""
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")  # the private way back to the parent ...
    os.dup2(2, 1)  # ... while the candidate's prints land on stderr, in the log
    sys.dont_write_bytecode = True
    try:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    except (ValueError, OSError):
        pass  # some systems (macOS) refuse an address-space limit; the time budget still holds
    paths = sysconfig.get_paths()
    roots = sorted({os.path.realpath(p) for p in (paths["stdlib"], paths["platstdlib"], task_dir)})
    sys.path.insert(0, task_dir)
    sys.addaudithook(_make_guard(roots, list(sys.path)))
    from solution import edit_distance  # noqa: E402 - only now, under the guard (scorer-check: child process)

    for line in sys.stdin:
        pairs = json.loads(line)
        channel.write(json.dumps([edit_distance(a, b) for a, b in pairs]) + "\n")
        channel.flush()


class Child:
    """A fresh sandboxed process running solution.py; `ask` times one round trip from here."""

    def __init__(self) -> None:
        argv = [sys.executable, "-I", "-S", "-B", str(Path(__file__).resolve()), "--child", str(Path.cwd().resolve())]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, encoding="utf-8", cwd="/", env={"PATH": os.environ.get("PATH", "")})
        self.stderr: list[str] = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def ask(self, pairs: list[tuple[str, str]], timeout: float) -> tuple[list[int], float]:
        watchdog = threading.Timer(max(timeout, 0.1), self.proc.kill)
        watchdog.start()
        try:
            start = time.perf_counter()
            self.proc.stdin.write(json.dumps(pairs) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            seconds = time.perf_counter() - start
        except BrokenPipeError:
            line, seconds = "", 0.0
        finally:
            watchdog.cancel()
        if not line:
            self.proc.wait(timeout=5)
            time.sleep(0.05)  # let the stderr reader catch up
            tail = "".join(self.stderr)[-3000:]
            sys.stderr.write(tail)
            if "fastfunc sandbox:" in tail:
                print("reject: sandbox-violation")
            if self.proc.returncode == -9:
                sys.exit(f"bench: solution.py did not answer within {timeout:.1f}s")
            sys.exit(f"bench: solution.py failed (exit {self.proc.returncode})")
        try:
            answers = json.loads(line)
        except ValueError:
            sys.exit("bench: solution.py answered garbage; is something writing to file descriptor 1?")
        if not isinstance(answers, list) or len(answers) != len(pairs):
            sys.exit("bench: solution.py answered the wrong number of results")
        return answers, seconds

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)
        if self.stderr:
            sys.stderr.write("".join(self.stderr)[-2000:])


def check(pairs: list[tuple[str, str]], answers: list[int], expected: list[int], what: str) -> None:
    for (a, b), got, want in zip(pairs, answers, expected):
        if type(got) is not int or got != want:
            short = lambda s: repr(s) if len(s) <= 40 else repr(s[:37]) + "..."  # noqa: E731
            sys.exit(f"bench: wrong answer on {what}: edit_distance({short(a)}, {short(b)}) "
                     f"(lengths {len(a)}, {len(b)}) returned {got!r}, expected {want}")


# -- the measurement -----------------------------------------------------------------------------------

def main() -> None:
    nonce = secrets.randbits(64)
    fresh = random.Random(f"{SEED}:{nonce}")
    print(f"inputs = seed {SEED}, nonce {nonce:016x} (fresh every run)")
    cases = edge_cases() + random_cases(random.Random(20240611), 200, 70) \
        + random_cases(random.Random(777), 6, 200) + random_cases(fresh, 100, 100)
    batch = timed_batch(fresh)

    start = time.perf_counter()
    expected_batch = [reference(a, b) for a, b in batch]
    reference_s = time.perf_counter() - start
    expected_cases = [reference(a, b) for a, b in cases]

    child = Child()
    answers, _ = child.ask(cases, BUDGET_S)
    check(cases, answers, expected_cases, "a correctness case")
    child.close()
    print(f"correctness: {len(cases)} cases passed")

    times = []
    deadline = time.perf_counter() + BUDGET_S
    for _ in range(REPEATS):
        child = Child()
        child.ask(WARMUP, deadline - time.perf_counter())
        answers, seconds = child.ask(batch, deadline - time.perf_counter())
        check(batch, answers, expected_batch, "the timed batch")
        child.close()
        times.append(seconds)
    median = statistics.median(times)
    print("times = " + " ".join(f"{t:.4f}" for t in times))
    print(f"seconds_min: {min(times):.6f}")
    print(f"seconds_max: {max(times):.6f}")
    print(f"reference_seconds: {reference_s:.6f}")
    print(f"speedup: {reference_s / median:.3f}")
    print(f"peak_rss_mb: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.1f}")
    print(f"seconds: {median:.6f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child_main(sys.argv[2])
    else:
        main()
