"""The split evaluate phase: the scorer and the model processes share one socket each, nothing else.

Real processes (and real bubblewrap where it works): a model process that looks for the
evaluation data, writes into the run's outputs, prints a metric line of its own and never
ends by itself; a scorer that reports what each model process told it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from autoresearch.harness.sandbox import SandboxSpec, bwrap_works
from autoresearch.harness.split import ModelProcesses, run_split

MODEL = '''
import json, os, socket, sys, time
sock = socket.socket(fileno=int(os.environ["AUTORESEARCH_MODEL_FD"]))
try:
    seen = os.listdir(sys.argv[1])
except OSError:
    seen = []
try:
    with open(os.path.join(sys.argv[2], "planted.txt"), "w") as fh:
        fh.write("from the model")
    wrote = True
except OSError:
    wrote = False
print("val_bpb: 0.001", flush=True)  # a metric line from the agent's side counts for nothing
sock.send(json.dumps({"seen": seen, "wrote": wrote, "phase": os.environ["AUTORESEARCH_PHASE"]}).encode())
if sys.argv[3] == "stubborn":
    while True:  # ignores the end of its socket: stopped by the harness
        time.sleep(0.1)
sock.recv(16)
'''

SCORER = '''
import json, os, socket
fds = os.environ["AUTORESEARCH_MODEL_FDS"].split(",")
for i, fd in enumerate(fds):
    message = json.loads(socket.socket(fileno=int(fd)).recv(4096))
    print(f"seen_{i}: {len(message['seen'])}")
    print(f"wrote_{i}: {int(message['wrote'])}")
    print(f"model_phase_{i}: {message['phase']}")
print(f"val_bpb: {len(fds)}.5")
'''


@pytest.fixture
def task(tmp_path: Path) -> dict[str, Path]:
    folders = {name: tmp_path / name for name in ("task", "out", "val", "state", "scratch")}
    for folder in folders.values():
        folder.mkdir()
    (folders["val"] / "rows.txt").write_text("the evaluation rows\n")
    (folders["task"] / "model.py").write_text(MODEL)
    (folders["task"] / "scorer.py").write_text(SCORER)
    return folders


def split(task: dict[str, Path], sandboxed: bool, mode: str = "polite", count: int = 2):
    model_spec = scorer_spec = None
    if sandboxed:
        model_spec = SandboxSpec(readonly=[task["out"]], hidden=[task["state"], task["val"]])
        scorer_spec = SandboxSpec(writable=[task["scratch"]], readonly=[task["out"], task["val"]], hidden=[task["state"]])
    command = f"{sys.executable} model.py {task['val']} {task['out']} {mode}"
    logs = [task["state"] / f"model-{i}.log" for i in range(count)]
    return run_split(f"{sys.executable} scorer.py", ModelProcesses(command, count, model_spec, logs),
                     cwd=task["task"], env={"PATH": "/usr/bin:/bin", "AUTORESEARCH_PHASE": "evaluate"}, timeout=60,
                     log_path=task["state"] / "scorer.log", log_max_bytes=1 << 20, sandbox=scorer_spec), logs


def test_each_model_process_talks_to_the_scorer_over_its_own_socket(task: dict[str, Path]) -> None:
    (scored, models), logs = split(task, sandboxed=False, count=3)
    assert scored.ok, (task["state"] / "scorer.log").read_text()
    assert scored.metrics["val_bpb"] == 3.5  # the scorer's line; each model's own `val_bpb: 0.001` stays in its log
    assert [scored.texts[f"model_phase_{i}"] for i in range(3)] == ["model"] * 3
    assert len(models) == 3 and all(m.ok for m in models)
    assert all("val_bpb: 0.001" in log.read_text() for log in logs)


@pytest.mark.slow
def test_a_model_process_that_outlives_the_scorer_is_stopped(task: dict[str, Path]) -> None:
    (scored, models), _ = split(task, sandboxed=False, mode="stubborn")
    assert scored.ok and scored.metrics["val_bpb"] == 2.5
    assert [m.interrupted for m in models] == [True, True]


@pytest.mark.skipif(not bwrap_works(), reason="needs bubblewrap")
def test_in_the_sandbox_a_model_process_sees_no_evaluation_data_and_writes_nothing(task: dict[str, Path]) -> None:
    (scored, models), _ = split(task, sandboxed=True)
    assert scored.ok, (task["state"] / "scorer.log").read_text()
    assert scored.metrics["seen_0"] == scored.metrics["seen_1"] == 0
    assert scored.metrics["wrote_0"] == scored.metrics["wrote_1"] == 0
    assert not (task["out"] / "planted.txt").exists()
    # without the sandbox the same model process sees the rows and writes: the test can fail
    (unsandboxed, _), _ = split(task, sandboxed=False)
    assert unsandboxed.metrics["seen_0"] == 1 and unsandboxed.metrics["wrote_0"] == 1
