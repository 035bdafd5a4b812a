"""Bad input gets a clear error that names the key (or flag) and loses nothing.

Each case once slipped through: a NaN budget disabled the timeout, negative limits stopped a
loop at once, NaN targets were ignored, and paths outside the task were accepted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ar, git, make_task

from autoresearch.harness.output import MetricParser


@pytest.mark.parametrize("edit, key", [
    ("seconds = nan", "[budget] seconds"),
    ("seconds = inf", "[budget] seconds"),
    ("seconds = -1", "[budget] seconds"),
    ("seconds = 10\nkeep_outputs = -2", "[budget] keep_outputs"),
])
def test_bad_budget_numbers_name_their_key(tmp_path: Path, edit: str, key: str) -> None:
    root = make_task(tmp_path, start=False)
    path = root / "autoresearch.toml"
    path.write_text(path.read_text().replace("seconds = 10", edit))
    out = ar(root, "verify", check=False)
    assert out.returncode == 2 and key in out.stderr and "Traceback" not in out.stderr, out.stderr


@pytest.mark.parametrize("flags, name", [
    (["--max-experiments", "-1"], "max_experiments"),
    (["--hours", "-1"], "hours"),
    (["--hours", "nan"], "hours"),
    (["--plateau", "-3"], "plateau"),
    (["--target", "nan"], "target"),
    (["--slots", "0"], "--slots"),
])
def test_bad_loop_flags_are_refused_before_anything_runs(tmp_path: Path, flags: list[str], name: str) -> None:
    root = make_task(tmp_path, baseline=False)
    out = ar(root, "run", "-q", "--agent", "tune", *flags, check=False)
    assert out.returncode == 2 and name in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not list((root / ".autoresearch").glob("runs/*"))  # nothing ran


@pytest.mark.parametrize("pattern, why", [
    ("../outside.py", "inside the task folder"),
    ("/etc/passwd", "relative"),
    (".git/config", ".git"),
    (".autoresearch/journal.db", ".autoresearch"),
])
def test_editable_paths_must_lie_inside_the_task(tmp_path: Path, pattern: str, why: str) -> None:
    root = make_task(tmp_path, start=False)
    path = root / "autoresearch.toml"
    path.write_text(path.read_text().replace('editable = ["train.py"]', f'editable = ["train.py", "{pattern}"]'))
    out = ar(root, "verify", check=False)
    assert out.returncode == 2 and "[task] editable" in out.stderr and why in out.stderr, out.stderr


def test_a_literal_name_with_glob_characters_is_itself(tmp_path: Path) -> None:
    root = make_task(tmp_path, start=False)
    (root / "data[1].py").write_text("X = 1\n")
    git(root, "add", "data[1].py")
    git(root, "commit", "-qm", "a file with brackets")
    path = root / "autoresearch.toml"
    path.write_text(path.read_text().replace('readonly = ["prepare.py", "evaluate.py"]',
                                             'readonly = ["prepare.py", "evaluate.py", "data[1].py"]'))
    git(root, "commit", "-qam", "lock it")
    out = ar(root, "lock", check=False)
    assert out.returncode == 0, out.stderr
    assert "data[1].py" in out.stdout


def test_metric_parsing_takes_progress_bars_and_indentation() -> None:
    parser = MetricParser()
    for raw in (b"step 1\r  step 2\rval_loss: 0.5\n", b"   accuracy: 0.9\n", b"\tnote: hello\n"):
        parser.feed(raw)
    assert parser.metrics == {"val_loss": 0.5, "accuracy": 0.9} and parser.texts == {"note": "hello"}


@pytest.mark.slow
def test_ten_million_short_lines_keep_the_orchestrator_small(tmp_path: Path) -> None:
    """The run prints 10 M `name: value` lines; the orchestrator's memory must not follow."""
    (tmp_path / "flood.py").write_text("import sys\nw = sys.stdout.write\n"
                                       "for i in range(10_000_000):\n    w(f'm{i % 5000}: {i}\\n')\n"
                                       "print('val_loss: 1.5')\n")
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys\nfrom pathlib import Path\n"
        "from autoresearch.harness.env import task_env\nfrom autoresearch.harness.process import run_command\n"
        f"here = Path({str(tmp_path)!r})\n"
        f"r = run_command({sys.executable!r} + ' flood.py', cwd=here, env=task_env({{}}, [], home=here, "
        "pycache_prefix=None), timeout=300, log_path=here / 'run.log', log_max_bytes=1 << 20)\n"
        # VmHWM: this process's own peak. (ru_maxrss would report the forking pytest's size:
        # Linux keeps the pre-exec high-water mark across execve.)
        "hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "print(r.metrics.get('val_loss'), len(r.metrics), hwm)\n")
    out = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, timeout=600)
    value, names, rss_kb = out.stdout.split()
    assert value == "1.5" and int(names) <= 1001
    assert int(rss_kb) < 150 * 1024, f"the orchestrator grew to {int(rss_kb) // 1024} MB"
    assert (tmp_path / "run.log").stat().st_size < 2 << 20  # the log keeps its tail


@pytest.mark.parametrize("count", ["0", "-3"])
def test_a_quickstart_without_experiments_is_refused_not_endless(tmp_path: Path, count: str) -> None:
    """`-n 0` meant "no limit" to the loop underneath, so the demo never stopped."""
    out = ar(tmp_path, "quickstart", "-n", count, str(tmp_path / "demo"), check=False, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "-n" in out.stderr and "1" in out.stderr
    assert not (tmp_path / "demo").exists()  # refused before anything was made
