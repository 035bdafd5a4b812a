"""Parallel experiments on local slots (`[executor] kind = "local"`): concurrency, pinning,
merge semantics, stopping, and the bookkeeping that must stay consistent throughout.

The task is the `example` template with a train.py made for these tests (below): its run
sleeps as long as the test asks and prints what it saw (seq, worktree slot, devices, cores)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ar, git

from autoresearch.config.task import ExecutorSection, LoopSection
from autoresearch.executors import ExecutorError, make_executor
from autoresearch.executors.local import LocalExecutor, parse_cpus
from autoresearch.git.replay import replay_tree, replay_tree_by_patch
from autoresearch.git.workspace import Workspace, branch_name, experiment_ref
from autoresearch.harness.sandbox import bwrap_works
from autoresearch.journal.results import render_tsv, throughput
from autoresearch.journal.store import Journal
from autoresearch.loop.driver import run_loop as run_parallel
from autoresearch.proposers import Proposal, ProposeContext, ProposerError, get_proposer
from autoresearch.trial.branch import start
from autoresearch.trial.session import Session

TRAIN = '''"""Test task: four knobs on lines apart, a run that sleeps, and what the run saw."""
import os
import signal
import time

A = 0.0


B = 0.0


C = 0.0


D = 0.0


KILL_WORKER = 0


def kill_ray_worker() -> None:
    """SIGKILL the Ray worker that runs this experiment (the nearest ancestor named ray::...)."""
    pid = os.getppid()
    for _ in range(8):
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if fh.read().startswith(b"ray::"):
                os.kill(pid, signal.SIGKILL)
                return
        with open(f"/proc/{pid}/stat") as fh:
            pid = int(fh.read().rsplit(")", 1)[1].split()[1])


seq = os.environ["AUTORESEARCH_SEQ"]
t_start = time.time()
slow = seq in os.environ.get("TEST_SLOW_SEQS", "").split(",")
time.sleep(float(os.environ.get("TEST_SLEEP", "0")) + (float(os.environ.get("TEST_SLOW_S", "0")) if slow else 0.0))
if KILL_WORKER:
    kill_ray_worker()
    time.sleep(5)
cwd = os.getcwd()
cuda = os.environ.get("CUDA_VISIBLE_DEVICES", "")
print(f"t_start: {t_start:.6f}")
print(f"t_end: {time.time():.6f}")
print(f"seen_seq: {seq}")
print(f"seen_slot: {cwd.rsplit('/slots/', 1)[1].split('/')[0] if '/slots/' in cwd else -1}")
print(f"seen_cuda: {cuda if cuda.isdigit() else -1}")
print(f"seen_cpus: {sum(1 << c for c in os.sched_getaffinity(0))}")
print(f"seen_journal: {int(os.path.exists(os.path.join(cwd, '..', '..', '..', 'journal.db')))}")
print(f"val_loss: {(A - 1) ** 2 + (B - 1) ** 2 + (C - 1) ** 2 + (D - 1) ** 2 + 1:.6f}")
'''

AGENT = '''"""A `command:` agent: sets one knob of train.py in its cwd, chosen and valued by the seq."""
import sys
from pathlib import Path

seq = int(sys.argv[1])
knob = "ABCD"[seq % 4]
value = round(1 - 0.5 ** (1 + seq // 4), 4)
path = Path("train.py")
lines = [f"{knob} = {value}" if line.startswith(f"{knob} = ") else line for line in path.read_text().splitlines()]
path.write_text("\\n".join(lines) + "\\n")
print(f"set {knob} to {value}")
'''


# -- helpers (the Ray tests use them too) -------------------------------------------------------

def make_template(base: Path, extra_config: str = "", task_lines: str = "") -> Path:
    """The task folder, committed and locked, not started. EXTRA_CONFIG: more sections;
    TASK_LINES: more keys of [task]."""
    root = base / "template"
    ar(base, "init", str(root), "--template", "example")
    (root / "train.py").write_text(TRAIN)
    config = root / "autoresearch.toml"
    text = config.read_text().replace('evaluate = "python evaluate.py"\n', "")  # TRAIN prints the metric
    # runs see only the variables a task lists: these are the test's knobs
    text = text.replace("[task]\n", '[task]\nenv = ["TEST_SLEEP", "TEST_SLOW_SEQS", "TEST_SLOW_S"]\n', 1)
    if task_lines:
        text = text.replace("[task]\n", "[task]\n" + task_lines.strip() + "\n", 1)
    if extra_config:
        text += "\n" + extra_config.strip() + "\n"
    config.write_text(text)
    git(root, "commit", "-qam", "parallel test task")
    ar(root, "lock")
    return root


def copy_task(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest, symlinks=True)
    return dest


def set_knobs(root: Path, values: dict[str, object]) -> None:
    path = root / "train.py"
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        for name, value in values.items():
            if line.startswith(f"{name} = "):
                lines[i] = f"{name} = {value}"
    path.write_text("\n".join(lines) + "\n")


def knob(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name} = "):
            return float(line.split("=", 1)[1])
    raise KeyError(name)


def all_runs(root: Path) -> list[dict]:
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    db.row_factory = sqlite3.Row
    rows = [dict(r) for r in db.execute("SELECT * FROM runs ORDER BY id")]
    db.close()
    for row in rows:
        row["metrics"] = json.loads(row["metrics_json"])
    return rows


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals that share an instant."""
    events = sorted([(lo, 1) for lo, _ in intervals] + [(hi, -1) for _, hi in intervals])
    best = now = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


def check_consistent(root: Path, session: Session) -> None:
    """The journal, results.tsv, refs and the branch agree; the best only moved forward;
    the worktrees are gone."""
    tag = session.tag
    exps = session.journal.experiments(tag)
    assert exps and all(e.status != "running" for e in exps)
    tsv = (root / "results.tsv").read_text().splitlines()
    expected = render_tsv(exps, session.config.metric.name, session.config.resource.scale).splitlines()
    assert tsv[0] == expected[0]
    assert sorted(tsv[1:]) == sorted(expected[1:])  # appended in finish order, one row per experiment
    keeps = [e for e in exps if e.status == "keep"]
    for before, after in zip(keeps, keeps[1:]):
        assert after.parent == before.commit_sha, (before.seq, after.seq)  # each keep a child of the last
        assert after.metric < before.metric
    tip = session.ws.rev(f"refs/heads/{branch_name(tag)}")
    assert tip == keeps[-1].commit_sha == session.best_commit(tag)
    assert session.journal.best(tag).seq == keeps[-1].seq
    assert git(root, "rev-parse", "HEAD").strip() == tip and not session.ws.dirty()
    for e in exps:
        if e.commit_sha:
            assert session.ws.rev(experiment_ref(tag, e.seq)) == e.commit_sha
    assert len(git(root, "worktree", "list").splitlines()) == 1
    worktrees = root / ".autoresearch" / "worktrees"
    assert not worktrees.exists() or not any(worktrees.iterdir())


class Scripted:
    """An in-process proposer: the knob values to set for each seq."""

    name = "scripted"

    def __init__(self, edits: dict[int, dict[str, object]]) -> None:
        self.edits = edits
        self.seen: list[tuple[int, str]] = []

    def propose(self, ctx: ProposeContext) -> Proposal:
        self.seen.append((ctx.seq, str(ctx.workspace.root)))
        values = self.edits.get(ctx.seq)
        if values is None:
            raise ProposerError("agent-error", f"nothing scripted for seq {ctx.seq}")
        set_knobs(ctx.workspace.root, values)
        return Proposal(", ".join(f"{k} = {v}" for k, v in values.items()), model_driven=False)


class BySeq:
    """An in-process proposer like the AGENT script: one knob, chosen and valued by the seq
    (EXTRA: more knob values for some seqs)."""

    name = "byseq"

    def __init__(self, extra: dict[int, dict[str, object]] | None = None) -> None:
        self.extra = extra or {}

    def propose(self, ctx: ProposeContext) -> Proposal:
        values: dict[str, object] = {"ABCD"[ctx.seq % 4]: round(1 - 0.5 ** (1 + ctx.seq // 4), 4)}
        values.update(self.extra.get(ctx.seq, {}))
        set_knobs(ctx.workspace.root, values)
        return Proposal(", ".join(f"{k} = {v}" for k, v in values.items()), model_driven=False)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_template(tmp_path_factory.mktemp("parallel-local"))


def started(template: Path, dest: Path) -> Session:
    session = Session.open(copy_task(template, dest))
    start(session, "t")
    return session


# -- four slots, a real `command:` agent ---------------------------------------------------------

@pytest.mark.slow
@pytest.mark.serial  # four slots at once need the cores to themselves
def test_four_slots_run_four_experiments_at_once(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SLEEP", "1.2")
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    cores = sorted(os.sched_getaffinity(0))
    cpus = [str(cores[i % len(cores)]) for i in range(4)]
    with started(template, tmp_path / "task") as s:
        root = s.root
        spec = f"command:{sys.executable} {agent} {{seq}}"
        executor = LocalExecutor(4, devices=["0", "1", "2", "3"], cpus=cpus)
        began = time.monotonic()
        result = run_parallel(s, lambda slot: get_proposer(s.config, spec), LoopSection(max_experiments=8), executor)
        elapsed = time.monotonic() - began
        assert result.stopped_because == "8 experiments done"
        exps = {e.seq: e for e in s.journal.experiments("t")}
        proposals = [e for e in exps.values() if not e.is_baseline and "replay_of" not in e.details]
        assert len(proposals) == 8 and {e.slot for e in proposals} == {0, 1, 2, 3}
        # Four runs at once, never two in one worktree, each pinned to its slot's devices and cores.
        slot_runs = [r for r in all_runs(root) if not exps[r["seq"]].is_baseline]
        assert len(slot_runs) == len(exps) - 1
        intervals = [(r["metrics"]["t_start"], r["metrics"]["t_end"]) for r in slot_runs]
        assert max_overlap(intervals) == 4
        for r in slot_runs:
            exp, m = exps[r["seq"]], r["metrics"]
            assert m["seen_seq"] == r["seq"]
            assert m["seen_slot"] == exp.slot
            assert m["seen_cuda"] == exp.slot
            assert m["seen_cpus"] == 1 << int(cpus[exp.slot])
            if bwrap_works():  # the sandbox hides .autoresearch even from a worktree inside it
                assert m["seen_journal"] == 0
            assert Path(r["log_path"]) == root / ".autoresearch" / "runs" / str(r["seq"]) / "run.log"
            assert "val_loss:" in Path(r["log_path"]).read_text()
        for a in slot_runs:
            for b in slot_runs:
                overlap = a["metrics"]["t_start"] < b["metrics"]["t_end"] and b["metrics"]["t_start"] < a["metrics"]["t_end"]
                if a is not b and overlap:
                    assert exps[a["seq"]].slot != exps[b["seq"]].slot
        # A replay is the stale candidate's change on the best of its time, in the same slot.
        for e in exps.values():
            if "replay_of" in e.details:
                original = exps[e.details["replay_of"]]
                assert original.status == "discard" and original.reason == "stale-replayed"
                assert original.details["replayed_as"] == e.seq and original.slot == e.slot
                assert e.parent in {k.commit_sha for k in exps.values() if k.status == "keep"}
        assert (root / ".autoresearch" / "runs" / "5" / "agent.log").exists()
        assert any("Running in parallel right now" in (root / ".autoresearch" / "runs" / str(seq) / "brief.md").read_text()
                   for seq in exps if (root / ".autoresearch" / "runs" / str(seq) / "brief.md").exists())
        check_consistent(root, s)
        stats = throughput(s.journal, "t")
        assert stats["experiments"] == len(exps) - 1 and stats["slots"] == 4
        assert stats["concurrency"] > 2.5
        assert elapsed < 1.2 * len(exps)  # far below one run after another


# -- merge semantics, one scenario each ----------------------------------------------------------

# Seq 2 (slot 0) is fast and kept; seq 3 (slot 1) is slow, so it finishes after the best moved.
SCENARIOS = {
    "replayed": {2: {"A": 0.5}, 3: {"B": 0.5}},
    "conflict": {2: {"A": 0.5}, 3: {"A": 0.75}},
    "duplicate": {2: {"A": 0.5}, 3: {"A": 0.5}},
    "not-better": {2: {"A": 0.5}, 3: {"B": -3}},
}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_candidate_that_finishes_after_the_best_moved(scenario: str, template: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SLEEP", "0.1")
    monkeypatch.setenv("TEST_SLOW_SEQS", "3")
    monkeypatch.setenv("TEST_SLOW_S", "1.5")
    with started(template, tmp_path / "task") as s:
        result = run_parallel(s, Scripted(SCENARIOS[scenario]), LoopSection(max_experiments=2), LocalExecutor(2))
        exps = {e.seq: e for e in s.journal.experiments("t")}
        assert exps[2].status == "keep" and exps[2].slot == 0 and exps[3].slot == 1
        late = exps[3]
        if scenario == "replayed":
            assert (late.status, late.reason) == ("discard", "stale-replayed")
            assert late.metric == pytest.approx(4.25)  # better than its parent (5.0), as good as seq 2
            replay = exps[4]
            assert replay.details["replay_of"] == 3 and late.details["replayed_as"] == 4
            assert replay.parent == exps[2].commit_sha and replay.slot == 1
            assert replay.description == "replay #3: B = 0.5"
            text = s.ws.show_file(replay.commit_sha, "train.py")
            assert knob(text, "A") == 0.5 and knob(text, "B") == 0.5  # both changes
            assert (replay.status, replay.metric) == ("keep", pytest.approx(3.5))  # confirmed by its own run
            assert [r["role"] for r in all_runs(s.root) if r["seq"] == 4] == ["candidate"]
            assert sorted(exps) == [1, 2, 3, 4]
        else:
            reason = {"conflict": "stale-conflict", "duplicate": "stale-duplicate", "not-better": "not-better"}[scenario]
            assert (late.status, late.reason) == ("discard", reason)
            assert sorted(exps) == [1, 2, 3] and "replayed_as" not in late.details
            assert s.best_commit("t") == exps[2].commit_sha
        assert result.stopped_because == "2 experiments done"
        check_consistent(s.root, s)


def test_paired_confirmation_and_repeats_run_in_the_slot(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    template = make_template(tmp_path_factory.mktemp("paired"), '[verdict]\nrepeats = 2\nconfirm = "paired"\n')
    with started(template, tmp_path / "task") as s:
        run_parallel(s, Scripted({2: {"A": 0.5}, 3: {"B": -3}}), LoopSection(max_experiments=2), LocalExecutor(2))
        exps = {e.seq: e for e in s.journal.experiments("t")}
        assert (exps[2].status, exps[3].status) == ("keep", "discard")
        runs2 = [r for r in all_runs(s.root) if r["seq"] == 2]
        assert [r["role"] for r in runs2[:2]] == ["candidate", "candidate"]  # the repeats
        confirm = runs2[2:]
        assert [r["role"] for r in confirm[:4]] == ["best", "candidate", "candidate", "best"]  # ABBA
        assert {r["metric"] for r in confirm if r["role"] == "best"} == {5.0}  # the parent's tree, really
        assert {r["metric"] for r in confirm if r["role"] == "candidate"} == {4.25}
        assert {r["commit_sha"] for r in confirm if r["role"] == "best"} == {exps[2].parent}
        assert exps[2].details["confirm"]["pairs"] == 5
        assert len([r for r in all_runs(s.root) if r["seq"] == 3]) == 2
        check_consistent(s.root, s)


# -- stopping -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_stop_now_interrupts_every_slot(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SLOW_SEQS", "2,3")
    monkeypatch.setenv("TEST_SLOW_S", "30")
    with started(template, tmp_path / "task") as s:
        stop = threading.Timer(2.5, lambda: (s.state_dir / "stop").write_text("now"))
        stop.start()
        began = time.monotonic()
        result = run_parallel(s, Scripted({2: {"A": 0.5}, 3: {"B": 0.5}}), LoopSection(), LocalExecutor(2))
        stop.join()
        assert time.monotonic() - began < 15
        assert result.stopped_because == "stopped during an experiment"
        exps = {e.seq: e for e in s.journal.experiments("t")}
        assert sorted(exps) == [1, 2, 3]
        assert {(exps[q].status, exps[q].reason) for q in (2, 3)} == {("crash", "interrupted")}
        assert s.best_commit("t") == exps[1].commit_sha
        check_consistent(s.root, s)


@pytest.mark.slow
def test_stop_now_ends_agents_that_are_still_proposing(template: Path, tmp_path: Path) -> None:
    def agents_alive() -> list[str]:
        alive = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and str(tmp_path) in os.readlink(entry / "cwd"):
                    alive.append(entry.name)
            except OSError:
                pass
        return alive

    with started(template, tmp_path / "task") as s:
        stop = threading.Timer(2.0, lambda: (s.state_dir / "stop").write_text("now"))
        stop.start()
        began = time.monotonic()
        result = run_parallel(s, lambda slot: get_proposer(s.config, "command:sleep 30"), LoopSection(), LocalExecutor(2))
        stop.join()
        assert time.monotonic() - began < 10
        assert result.stopped_because == "stopped during an experiment"
        exps = [e for e in s.journal.experiments("t") if not e.is_baseline]
        assert [(e.status, e.reason, e.description) for e in exps] == [
            ("crash", "interrupted", "(interrupted while proposing)")] * 2
        assert agents_alive() == []
        check_consistent(s.root, s)


def test_a_failing_proposer_stops_the_slots(template: Path, tmp_path: Path) -> None:
    with started(template, tmp_path / "task") as s:
        result = run_parallel(s, lambda slot: Scripted({}), LoopSection(max_experiments=50), LocalExecutor(3))
        assert result.stopped_because.startswith("the proposer failed 5 times in a row (last: agent-error")
        failed = [e for e in s.journal.experiments("t") if not e.is_baseline]
        assert 5 <= len(failed) <= 7 and all((e.status, e.reason) == ("crash", "agent-error") for e in failed)
        check_consistent(s.root, s)


def test_an_executor_that_cannot_run_stops_the_slots(template: Path, tmp_path: Path) -> None:
    class Broken(LocalExecutor):
        def submit(self, job, **callbacks) -> None:  # noqa: ANN001, ANN003
            raise RuntimeError("no GPU today")

    with started(template, tmp_path / "task") as s:
        result = run_parallel(s, lambda slot: BySeq(), LoopSection(max_experiments=50), Broken(2))
        assert result.stopped_because.startswith("the local executor failed 5 times in a row (last: executor-error)")
        crashed = [e for e in s.journal.experiments("t") if not e.is_baseline]
        assert 5 <= len(crashed) <= 6 and all((e.status, e.reason) == ("crash", "executor-error") for e in crashed)
        assert "no GPU today" in Path(crashed[0].log_path).read_text()
        check_consistent(s.root, s)


def test_an_agent_cannot_redirect_its_worktree_or_rewrite_the_results(template: Path, tmp_path: Path) -> None:
    class Tamper(Scripted):
        def propose(self, ctx: ProposeContext) -> Proposal:
            gitdir = ctx.workspace.root / ".git"  # its copy's own repository: pointed elsewhere
            (gitdir / "HEAD" if gitdir.is_dir() else gitdir).write_text(f"gitdir: {tmp_path / 'elsewhere'}\n")
            if ctx.seq == 2:
                (ctx.config.root / "results.tsv").write_text("commit\tval_loss\tmemory_gb\tstatus\tdescription\n"
                                                             "abcdef0\t0.000001\t0.0\tkeep\tsurely the best\n")
            return super().propose(ctx)

    with started(template, tmp_path / "task") as s:
        run_parallel(s, Tamper({2: {"A": 0.5}, 3: {"B": 0.5}}), LoopSection(max_experiments=2), LocalExecutor(1))
        exps = {e.seq: e for e in s.journal.experiments("t")}
        assert [(exps[q].status, exps[q].reason) for q in (2, 3)] == [("keep", "improved"), ("keep", "improved")]
        assert exps[2].details.get("results_tsv_repaired") is True  # found when seq 2 was recorded
        assert "surely the best" not in (s.root / "results.tsv").read_text()
        check_consistent(s.root, s)


# -- pieces -----------------------------------------------------------------------------------------

def test_replay_by_merge_and_by_patch_agree(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "f.py").write_text("A = 0\n\n\nB = 0\n\n\nC = 0\n")
    git(root, "add", "f.py")
    git(root, "commit", "-qm", "base")
    base = git(root, "rev-parse", "HEAD").strip()

    def commit_on(parent: str, text: str) -> str:
        git(root, "checkout", "-q", parent)
        (root / "f.py").write_text(text)
        git(root, "commit", "-qam", "change")
        return git(root, "rev-parse", "HEAD").strip()

    best = commit_on(base, "A = 1\n\n\nB = 0\n\n\nC = 0\n")
    other = commit_on(base, "A = 0\n\n\nB = 2\n\n\nC = 0\n")
    clash = commit_on(base, "A = 3\n\n\nB = 0\n\n\nC = 0\n")
    ws = Workspace(root)
    merged = replay_tree(ws, other, best)
    assert merged is not None and merged == replay_tree_by_patch(ws, other, best)
    assert ws.git("cat-file", "-p", f"{merged}:f.py") == "A = 1\n\n\nB = 2\n\n\nC = 0\n"
    assert replay_tree(ws, clash, best) is None and replay_tree_by_patch(ws, clash, best) is None


def test_throughput_counts_per_slot_over_the_time_in_flight(tmp_path: Path) -> None:
    with Journal(tmp_path / "state") as journal:
        def add(slot: int, lo: float, hi: float, baseline: bool = False) -> None:
            exp = journal.begin("t", "x", "p", "c0", is_baseline=baseline, slot=slot)
            exp.status, exp.started_at, exp.finished_at = "discard", 1000.0 + lo, 1000.0 + hi
            journal.update(exp)

        add(0, -50, -40, baseline=True)  # not counted
        add(0, 0, 10)
        add(0, 10, 20)
        add(1, 0, 20)
        add(0, 100, 110)  # after a pause: the pause does not count
        stats = throughput(journal, "t")
    assert stats["experiments"] == 4 and stats["slots"] == 2
    assert stats["active_hours"] == pytest.approx(30 / 3600)
    assert stats["per_hour"] == pytest.approx(480.0)
    assert stats["per_slot_per_hour"] == pytest.approx(240.0)
    assert stats["by_slot"][0]["per_hour"] == pytest.approx(360.0)
    assert stats["by_slot"][1]["per_hour"] == pytest.approx(120.0)
    assert stats["concurrency"] == pytest.approx(50 / 30)
    with Journal(tmp_path / "empty") as journal:
        assert throughput(journal, "t")["per_hour"] == 0.0


def test_executor_settings_are_checked() -> None:
    assert parse_cpus("0-2,5") == {0, 1, 2, 5}
    for bad in ("x", "3-1", ""):
        with pytest.raises(ExecutorError):
            parse_cpus(bad)
    with pytest.raises(ExecutorError, match="devices: 2 values for 4 slots"):
        LocalExecutor(4, devices=["0", "1"])
    with pytest.raises(ExecutorError, match="cpus: 1 core sets for 2 slots"):
        LocalExecutor(2, cpus=["0"])
    assert make_executor(ExecutorSection(slots=3)).slots == 3
    assert make_executor(ExecutorSection(slots=3), slots=2).slots == 2
    ray_executor = make_executor(ExecutorSection(kind="ray", slots=2, num_gpus=1.0))
    assert (ray_executor.kind, ray_executor.slots) == ("ray", 2)
    assert "num_gpus=1" in ray_executor.describe()
