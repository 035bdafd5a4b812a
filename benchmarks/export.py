"""What the "Sealed" isolation adds per experiment: the copy (a scratch checkout of best for the
agent), the clean export of the commit under test for the run, and cleaning both up; plus redacting a full-size run log.

What it does:
  1. Makes an `example` task with the real CLI and gives it a history of HISTORIES commits
     (written by `git fast-import`, each changing train.py, like a run of experiments).
  2. Per history, round robin (A B A B, so a burst of load elsewhere hits all alike), REPEATS times:
       checkout         Workspace.export: one `git checkout COMMIT -- :/` into the folder as
                        work tree, through a throwaway index
       checkout-index   read-tree into a throwaway index, then checkout-index (two git calls)
       archive|tar      git archive | tar -x (not exact: applies export-ignore/export-subst)
       copy+export      what one experiment adds: export best into a scratch folder, export the
                        candidate into a run folder, remove both folders
  3. Redaction of a 4 MB log holding one secret, with 20 secret values known.

How to read it: medians in milliseconds. The goal ("Sealed" issue) is copy+export under GOAL_MS,
flat in the history length (compare the rows at 10 and 1,000 commits).

Run: .venv/bin/python benchmarks/export.py   (about 30 seconds)
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from autoresearch.git.workspace import Workspace  # noqa: E402
from autoresearch.redact import redact_file  # noqa: E402

HISTORIES = [10, 1000]
REPEATS = 21
GOAL_MS = 100.0
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}


def git(cwd: Path, *args: str, input: bytes | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, env={**os.environ, **GIT_ENV})
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {proc.stderr.decode()}")
    return proc.stdout.decode()


def make_task(root: Path, history: int) -> Workspace:
    subprocess.run([sys.executable, "-m", "autoresearch", "init", str(root), "--template", "example"],
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    template = (root / "train.py").read_text()
    head = git(root, "rev-parse", "HEAD").strip()
    stream = []
    for i in range(history - 1):
        body = f"# experiment {i}\n{template}".encode()
        message = f"experiment {i}".encode()
        stream.append(b"commit refs/heads/history\n")
        stream.append(f"committer bench <bench@localhost> {1700000000 + i} +0000\n".encode())
        stream.append(b"data %d\n%s\n" % (len(message), message))
        if i == 0:
            stream.append(f"from {head}\n".encode())
        stream.append(b"M 100644 inline train.py\ndata %d\n%s\n" % (len(body), body))
    if stream:
        git(root, "fast-import", "--quiet", input=b"".join(stream))
        git(root, "checkout", "-q", "history")
    # Untracked, ignored and cache files an agent might leave: none may slow or reach an export.
    (root / "__pycache__").mkdir(exist_ok=True)
    (root / "__pycache__" / "prepare.cpython-311.pyc").write_bytes(b"\0" * 4096)
    (root / "notes.txt").write_text("untracked\n")
    return Workspace(root)


def export_checkout_index(ws: Workspace, commit: str, dest: Path) -> None:
    """The two-call alternative: read-tree into a throwaway index, checkout-index from it."""
    index = dest.parent / f".{dest.name}.index"
    env = {"GIT_INDEX_FILE": str(index)}
    ws.git("read-tree", f"{commit}^{{tree}}", env=env)
    ws.git(f"--work-tree={dest}", "checkout-index", "-a", "-f", env=env)
    index.unlink()


def export_archive(ws: Workspace, commit: str, dest: Path) -> None:
    """The streaming alternative: git archive | tar -x."""
    archive = subprocess.Popen(["git", "archive", "--format=tar", commit], cwd=ws.root, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
    assert archive.stdout is not None
    archive.stdout.close()
    if archive.wait() != 0:
        raise SystemExit("git archive failed")


def timed_export(method, ws: Workspace, commit: str, scratch: Path) -> None:
    dest = Path(tempfile.mkdtemp(dir=scratch))
    method(ws, commit, dest)
    shutil.rmtree(dest)


def one_experiment(ws: Workspace, commit: str, scratch: Path) -> None:
    """Copy (the agent's checkout of best) + export (the run's folder) + cleanup."""
    agent = Path(tempfile.mkdtemp(dir=scratch))
    run = Path(tempfile.mkdtemp(dir=scratch))
    ws.export(commit, agent)
    ws.export(commit, run)
    shutil.rmtree(agent)
    shutil.rmtree(run)


def measure(ws: Workspace, scratch: Path) -> dict[str, float]:
    commit = ws.head() or ""
    cells = {
        "checkout": lambda: timed_export(Workspace.export, ws, commit, scratch),
        "checkout-index": lambda: timed_export(export_checkout_index, ws, commit, scratch),
        "archive|tar": lambda: timed_export(export_archive, ws, commit, scratch),
        "copy+export": lambda: one_experiment(ws, commit, scratch),
    }
    for fn in cells.values():  # warm-up: page cache, git's packs
        fn()
    times: dict[str, list[float]] = {name: [] for name in cells}
    for _ in range(REPEATS):
        for name, fn in cells.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def redact_cost(scratch: Path) -> float:
    secrets = {f"K{i}_API_KEY": f"sk-{i:03d}-abcdefghijklmnop" for i in range(20)}
    line = b"step 00042 | loss 3.141592 | lr 0.000300 | tok/s 123456 | mfu 41.2%\n"
    times = []
    for _ in range(REPEATS):
        log = scratch / "run.log"
        log.write_bytes(line * (4 * 1024 * 1024 // len(line)) + b"error: key sk-007-abcdefghijklmnop\n")
        start = time.perf_counter()
        assert redact_file(log, secrets)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="autoresearch-bench-export-") as tmp:
        base = Path(tmp)
        rows = []
        for history in HISTORIES:
            ws = make_task(base / f"task-{history}", history)
            scratch = base / f"scratch-{history}"
            scratch.mkdir()
            rows.append((history, measure(ws, scratch)))
        print(f"\nmedian ms over {REPEATS} rounds (A B A B); files per export: "
              f"{len(git(ws.root, 'ls-files').split())}")
        print(f"{'commits':>8} {'checkout':>9} {'checkout-index':>15} {'archive|tar':>12} {'copy+export':>12}")
        for history, cells in rows:
            print(f"{history:>8} {cells['checkout']:>9.1f} {cells['checkout-index']:>15.1f} "
                  f"{cells['archive|tar']:>12.1f} {cells['copy+export']:>12.1f}")
        worst = max(cells["copy+export"] for _, cells in rows)
        print(f"\ncopy+export per experiment: worst {worst:.1f} ms (goal < {GOAL_MS:.0f} ms): "
              f"{'OK' if worst < GOAL_MS else 'OVER'}")
        print(f"redact_file on a 4 MB log, 20 secrets: {redact_cost(base):.1f} ms")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
