"""The `tune` proposer: TPE over the knobs, seeded from the journal, on real `example` tasks."""

from __future__ import annotations

import gc
import random
import re
import threading
from pathlib import Path

import pytest
from conftest import ar, git, make_task
from optuna.trial import TrialState

from autoresearch.config.task import load_config
from autoresearch.git.workspace import Workspace
from autoresearch.proposers import ProposeContext, ProposerError
from autoresearch.proposers.knobs import find_knobs, knob_values
from autoresearch.proposers.tune import PastPoint, TuneOptions, TuneProposer, in_flight, make_tune_proposer
from autoresearch.proposers.tune_space import normalize
from autoresearch.trial.lifecycle import ProposalInfo, experiment
from autoresearch.trial.session import Session

CHANGE = re.compile(r"^([A-Z][A-Z0-9_]*) (\S+) -> (\S+)$")
PROPOSALS = 12


def context(session: Session) -> ProposeContext:
    tag = session.require_tag()
    seq = session.journal.next_seq()
    run_dir = session.run_dir(seq)
    return ProposeContext(config=session.config, workspace=session.ws, brief="(brief)",
                          brief_path=run_dir / "brief.md", log_path=run_dir / "agent.log", seq=seq,
                          best_commit=session.best_commit(tag), best_metric=None,
                          history=session.journal.experiments(tag, limit=15))


def measured_points(session: Session) -> list[tuple]:
    """The knob values of every experiment commit of the tag, as comparable tuples."""
    points = []
    for exp in session.journal.experiments("t"):
        if exp.commit_sha:
            values = knob_values(session.ws.show_file(exp.commit_sha, "train.py") or "")
            points.append(tuple(normalize(values[k]) for k in sorted(values)))
    return points


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An `example` task (CLI: init, start, baseline) after PROPOSALS tune experiments."""
    root = make_task(tmp_path_factory.mktemp("tune"))
    session = Session.open(root)
    proposer = make_tune_proposer(session.config, "tune")
    baseline = session.journal.experiments("t")[0]
    proposals, experiments = [], []
    for _ in range(PROPOSALS):
        ctx = context(session)
        before = (root / "train.py").read_text()
        proposal = proposer.propose(ctx)
        after = (root / "train.py").read_text()
        proposals.append((proposal, before, after, ctx.log_path))
        experiments.append(experiment(session, proposal.description, info=ProposalInfo(proposer="tune")))
    session.close()
    return {"root": root, "baseline": baseline, "proposals": proposals, "experiments": experiments,
            "proposer": proposer}


@pytest.mark.slow
def test_tune_beats_the_baseline_with_readable_one_to_three_knob_changes(tuned: dict) -> None:
    baseline, experiments = tuned["baseline"], tuned["experiments"]
    assert baseline.is_baseline and baseline.status == "keep"
    assert len(experiments) == PROPOSALS
    metrics = [e.metric for e in experiments if e.status in ("keep", "discard")]
    assert min(metrics) < baseline.metric  # found a better val_loss than the baseline
    assert any(e.status == "keep" for e in experiments)
    for proposal, before, after, log_path in tuned["proposals"]:
        assert proposal.model_driven is False
        changes = [CHANGE.match(part) for part in proposal.description.split(", ")]
        assert all(changes) and 1 <= len(changes) <= 3, proposal.description
        old_values, new_values = knob_values(before), knob_values(after)
        changed = {name for name in old_values if normalize(old_values[name]) != normalize(new_values[name])}
        assert changed == {m.group(1) for m in changes}  # the description lists exactly what changed
        for m in changes:
            assert repr(old_values[m.group(1)]) == m.group(2) or str(old_values[m.group(1)]) == m.group(2)
            assert f"{m.group(1)} = {m.group(3)}" in after
        # only the changed values differ, line by line
        differing = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
        assert len(differing) == len(changes) and len(before.splitlines()) == len(after.splitlines())
        assert "past trials" in log_path.read_text()
    # every measured point is distinct: tune never re-proposed a tried point
    session = Session.open(tuned["root"])
    try:
        points = measured_points(session)
        assert len(points) == PROPOSALS + 1 and len(set(points)) == len(points)
    finally:
        session.close()


@pytest.mark.slow
def test_restart_continues_the_study(tuned: dict) -> None:
    root = tuned["root"]
    session = Session.open(root)
    try:
        original = (root / "train.py").read_text()
        tried = set(measured_points(session))
        fresh = make_tune_proposer(session.config, "tune")
        assert fresh is not tuned["proposer"]
        first = fresh.propose(context(session))
        # the new instance's study holds every past experiment of the tag, values read from git
        journal = [e for e in session.journal.experiments("t") if e.commit_sha]
        trials = [t for t in fresh.study.trials if t.state != TrialState.RUNNING]  # not the points it asked for
        assert len(trials) == len(journal) == PROPOSALS + 1
        assert [t.user_attrs["seq"] for t in trials] == [e.seq for e in journal]
        worst = max(e.metric for e in journal if e.metric is not None)
        for trial, exp in zip(trials, journal):
            values = knob_values(session.ws.show_file(exp.commit_sha, "train.py") or "")
            assert trial.params["DEGREE"] == values["DEGREE"] and trial.params["STEPS"] == values["STEPS"]
            assert trial.value == (exp.metric if exp.status in ("keep", "discard") else worst)
        # and it proposes a point never measured
        now = knob_values((root / "train.py").read_text())
        assert tuple(normalize(now[k]) for k in sorted(now)) not in tried
        # the same journal and seed give the same proposal; another seed may differ but is also new
        (root / "train.py").write_text(original)
        fresh.release()  # its point is no longer in flight, so another instance may propose it
        again_proposer = make_tune_proposer(session.config, "tune")
        again = again_proposer.propose(context(session))
        assert again.description == first.description
        again_proposer.release()
        (root / "train.py").write_text(original)
        other = make_tune_proposer(session.config, "tune:seed=5,max_changes=1").propose(context(session))
        assert CHANGE.match(other.description)  # exactly one change
        now = knob_values((root / "train.py").read_text())
        assert tuple(normalize(now[k]) for k in sorted(now)) not in tried
        (root / "train.py").write_text(original)
    finally:
        session.close()
    assert git(root, "status", "--porcelain", "--untracked-files=no") == ""


def write_task(root: Path, train: str) -> ProposeContext:
    root.mkdir(parents=True, exist_ok=True)
    (root / "autoresearch.toml").write_text(
        '[task]\nname = "t"\neditable = ["train.py", "notes.txt"]\nrun = "python train.py"\n'
        '[metric]\nname = "loss"\n')
    (root / "train.py").write_text(train)
    (root / "notes.txt").write_text("LR = 0.1\n")  # not Python: never searched for knobs
    config = load_config(root)
    return ProposeContext(config=config, workspace=Workspace(root), brief="", brief_path=root / "brief.md",
                          log_path=root / "agent.log", seq=1, best_commit="", best_metric=None)


def test_no_knobs_is_a_clear_error_at_the_factory_and_in_the_log(tmp_path: Path) -> None:
    ctx = write_task(tmp_path / "a", "lr = 0.1\n\ndef main():\n    STEPS = 10\n    return STEPS\n")
    with pytest.raises(ProposerError) as info:
        make_tune_proposer(ctx.config, "tune")  # the loop builds its proposer before the baseline
    assert info.value.reason == "no-knobs"
    message = str(info.value)
    assert "no knobs found in the editable files (notes.txt, train.py)" in message
    assert "UPPER_CASE" in message and "`# search:` comment" in message and "autoresearch knobs" in message
    assert "\n" not in message
    # a proposer made anyway (or whose files lost their knobs mid-run) fails each proposal with
    # the same one-line message, and says so in the agent.log the failure line points to
    with pytest.raises(ProposerError) as info:
        TuneProposer(ctx.config).propose(ctx)
    assert info.value.reason == "agent-error" and str(info.value) == message
    assert ctx.log_path.read_text() == f"tune failed (agent-error): {message}\n"

    ctx = write_task(tmp_path / "b", 'MODE = "fast"\nOFFSET = -1\n')
    with pytest.raises(ProposerError, match="MODE, OFFSET all have a fixed space"):
        make_tune_proposer(ctx.config, "tune")

    ctx = write_task(tmp_path / "c", "LR = 0.1  # search: log(0, 1)\n")
    with pytest.raises(ProposerError, match=r"train.py:1 LR: bad `# search:` comment 'log\(0, 1\)'"):
        make_tune_proposer(ctx.config, "tune")


def test_an_unexpected_error_is_one_line_and_its_traceback_goes_to_agent_log(tmp_path: Path) -> None:
    ctx = write_task(tmp_path / "h", "LR = 0.1\n")
    proposer = make_tune_proposer(ctx.config, "tune")
    state = tmp_path / "h" / ".autoresearch"
    state.mkdir()
    (state / "journal.db").write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(ProposerError) as info:
        proposer.propose(ctx)
    assert info.value.reason == "agent-error"
    assert str(info.value).startswith("tune: ") and "\n" not in str(info.value)
    assert "database" in str(info.value)
    log = ctx.log_path.read_text()
    assert log.startswith("tune failed:\nTraceback") and "journal" in log
    assert (tmp_path / "h" / "train.py").read_text() == "LR = 0.1\n"  # nothing was edited


def point_of(root: Path) -> tuple:
    values = knob_values((root / "train.py").read_text(), "train.py")
    return tuple(normalize(values[k]) for k in sorted(values))


def test_two_proposers_of_one_task_never_propose_a_point_in_flight(tmp_path: Path) -> None:
    source = "A = 1  # search: [1, 2, 3]\nB = True\n"
    ctx = write_task(tmp_path / "i", source)
    root = tmp_path / "i"
    first, second = make_tune_proposer(ctx.config, "tune"), make_tune_proposer(ctx.config, "tune")
    first.propose(ctx)
    first_point = point_of(root)
    (root / "train.py").write_text(source)
    second.propose(ctx)
    second_point = point_of(root)
    # same journal, same seed: only the in-flight registry keeps the second off the first's point
    assert second_point != first_point and second_point != point_of_source(source)
    assert sorted(in_flight(root), key=repr) == sorted([{("train.py", "A"): p[0], ("train.py", "B"): p[1]}
                                                        for p in (first_point, second_point)], key=repr)
    # once the first's experiment has ended, its point is free again: a third instance picks it
    first.release()
    (root / "train.py").write_text(source)
    third = make_tune_proposer(ctx.config, "tune")
    third.propose(ctx)
    assert point_of(root) == first_point
    assert "1 in flight; this is trial 1" in ctx.log_path.read_text().splitlines()[-3]
    for p in (second, third):
        p.release()
    assert in_flight(root) == []


def point_of_source(source: str) -> tuple:
    values = knob_values(source, "train.py")
    return tuple(normalize(values[k]) for k in sorted(values))


def test_parallel_slots_each_with_a_proposer_pick_distinct_points(tmp_path: Path) -> None:
    """Four slots' proposers, in four threads on four copies of the files, as the parallel loop runs them."""
    source = "A = 1  # search: [1, 2, 3]\nB = True\nC = 4  # search: [4, 5]\n"
    ctx = write_task(tmp_path / "j", source)
    slots = []
    for i in range(4):
        copy = tmp_path / f"slot{i}"
        copy.mkdir()
        for name in ("train.py", "notes.txt"):
            (copy / name).write_text((tmp_path / "j" / name).read_text())
        slots.append((make_tune_proposer(ctx.config, "tune"),
                      ProposeContext(config=ctx.config, workspace=Workspace(copy), brief="", brief_path=copy / "b.md",
                                     log_path=copy / "agent.log", seq=i + 1, best_commit="", best_metric=None)))
    errors: list[BaseException] = []

    def work(proposer: TuneProposer, slot_ctx: ProposeContext) -> None:
        try:
            proposer.propose(slot_ctx)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=slot) for slot in slots]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    points = [point_of(slot_ctx.workspace.root) for _, slot_ctx in slots]
    assert len(set(points)) == 4 and point_of_source(source) not in points
    assert len(in_flight(tmp_path / "j")) == 4
    del slots, threads, work  # a proposer that is gone releases its point
    gc.collect()
    assert in_flight(tmp_path / "j") == []


def test_without_a_journal_it_still_proposes_and_edits_in_place(tmp_path: Path) -> None:
    source = "import os\n\nLR = 0.1   # the rate\nUSE_BIAS = True\n\nprint(LR)\n"
    ctx = write_task(tmp_path / "d", source)
    proposal = make_tune_proposer(ctx.config, "tune").propose(ctx)
    after = (tmp_path / "d" / "train.py").read_text()
    assert proposal.model_driven is False and proposal.description
    for part in proposal.description.split(", "):
        name, old, new = CHANGE.match(part).groups()
        assert f"{name} = {new}" in after
    assert after.startswith("import os\n\nLR = ") and after.endswith("\n\nprint(LR)\n")
    assert "# the rate\n" in after
    assert (tmp_path / "d" / "agent.log").read_text().startswith("tune: 2 knobs (2 tunable), 0 past trials")


def test_options_from_the_agent_string(tmp_path: Path) -> None:
    ctx = write_task(tmp_path / "e", "LR = 0.1\n")
    assert make_tune_proposer(ctx.config, "tune").options == TuneOptions()
    assert make_tune_proposer(ctx.config, "tune:seed=7, max_changes=1,startup=3").options == TuneOptions(7, 1, 3)
    for bad in ("tune:sead=1", "tune:seed=x", "tune:max_changes=0", "tune:seed"):
        with pytest.raises(ProposerError, match="tune: "):
            make_tune_proposer(ctx.config, bad)


def test_study_values_for_crashes_and_constraints_and_dedupe(tmp_path: Path) -> None:
    """Crashes count as the worst value; a tiny space is walked point by point, never twice."""
    source = 'A = 1  # search: [1, 2, 3]\nB = True\nC = "x"\n'
    ctx = write_task(tmp_path / "f", source)
    proposer = TuneProposer(ctx.config)
    knobs = proposer.discover(ctx.workspace.root, ["train.py"])
    assert sorted(knobs) == ["A", "B", "C"]
    past = [PastPoint(1, {"A": 1, "B": True, "C": "x"}, 0.5),
            PastPoint(2, {"A": 2, "B": True, "C": "x"}, None),  # crashed
            PastPoint(3, {"A": 3, "B": False, "C": "x"}, 0.9)]
    study = proposer.build_study(knobs, past)
    assert [t.value for t in study.trials] == [0.5, 0.9, 0.9]  # the crash gets the worst value seen
    assert study.trials[1].params == {"A": "2", "B": "True"}  # fixed knobs are not parameters
    assert study.best_value == 0.5

    # from best (1, True) the space has 6 points; with 3 tried (best included), 3 remain
    tried = {tuple(normalize(p.values[k]) for k in sorted(knobs)) for p in past}
    remaining = {(2, False), (3, True), (1, False)}
    seen = set()
    for i in range(3):
        changes = proposer.choose(proposer.build_study(knobs, past), knobs, tried, random.Random(i), [])
        point = {"A": 1, "B": True, **changes}
        key = (point["A"], point["B"])
        assert key in remaining and key not in seen
        seen.add(key)
        past.append(PastPoint(10 + i, {**point, "C": "x"}, 1.0))
        tried.add(tuple(normalize(v) for v in (point["A"], point["B"], "x")))
    assert seen == remaining
    with pytest.raises(ProposerError, match="has been measured already"):
        proposer.choose(proposer.build_study(knobs, past), knobs, tried, random.Random(0), [])


def test_maximize_uses_the_lowest_value_for_crashes(tmp_path: Path) -> None:
    write_task(tmp_path / "g", "A = 4\n")
    config_text = (tmp_path / "g" / "autoresearch.toml").read_text().replace('name = "loss"\n',
                                                                                'name = "acc"\ngoal = "maximize"\n')
    (tmp_path / "g" / "autoresearch.toml").write_text(config_text)
    proposer = TuneProposer(load_config(tmp_path / "g"))
    knobs = proposer.discover(tmp_path / "g", ["train.py"])
    study = proposer.build_study(knobs, [PastPoint(1, {"A": 4}, 0.7), PastPoint(2, {"A": 5}, None),
                                         PastPoint(3, {"A": 3}, 0.8)])
    assert [t.value for t in study.trials] == [0.7, 0.7, 0.8] and study.best_value == 0.8
    assert [k.name for k in find_knobs("A = 4\n")] == ["A"]


@pytest.mark.slow
def test_a_failing_tune_says_why_in_the_plain_view_and_its_agent_log_exists(tmp_path: Path) -> None:
    """One boolean knob: after its only other value is measured, every proposal fails, and the
    plain output names the reason instead of only `agent-error`."""
    root = tmp_path / "flag"
    root.mkdir()
    (root / "train.py").write_text('FLAG = True\nprint(f"loss: {0.5 if FLAG else 0.7}")\n')
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "project")
    ar(root, "init", "--editable", "train.py", "--run", "python3 train.py", "--metric", "loss", "--budget", "60")
    (root / "autoresearch.toml").write_text((root / "autoresearch.toml").read_text() + "\n[agent]\nmax_failures = 2\n")
    git(root, "commit", "-qam", "two failures stop the loop")
    ar(root, "lock")
    proc = ar(root, "run", "--agent", "tune", "-n", "5", "--quiet", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "seq 2 discard: loss 0.700000" in lines[1] and lines[1].endswith("| FLAG True -> False")
    why = "tune: every point it tried near the best has been measured already"
    for line in lines[2:4]:
        assert " crash: agent-error (" + why in line and line.endswith("| (tune failed: agent-error)")
    stopped = next(line for line in lines if line.startswith("stopped:"))
    log_path = Path(re.search(r"see (\S+agent\.log)", stopped).group(1))
    assert log_path.read_text() == f"tune failed (agent-error): {why}; widen the knobs' `# search:` spaces or " \
                                   "switch to a model-driven agent\n"


def test_the_live_view_shows_a_failed_proposal_s_reason() -> None:
    from rich.console import Console

    from autoresearch.journal.records import Experiment
    from autoresearch.report.view import ViewState, failure_message, render_state

    failed = Experiment(seq=3, tag="t", status="crash", started_at=0.0, reason="agent-error",
                        description="(tune failed: agent-error)",
                        details={"message": "tune: no knobs found in\nthe editable files (train.py)"})
    measured = Experiment(seq=2, tag="t", status="crash", started_at=0.0, reason="timeout", description="LR 1 -> 2")
    assert failure_message(failed) == "tune: no knobs found in the editable files (train.py)"
    assert failure_message(measured) == ""
    state = ViewState()
    state.record(measured)
    state.record(failed)
    console = Console(record=True, width=200)
    console.print(render_state(state))
    text = console.export_text()
    assert "crash agent-error  " in text and "tune: no knobs found in the editable files (train.py)" in text
    assert "LR 1 -> 2" in text


@pytest.mark.slow
def test_a_running_experiment_in_the_journal_counts_as_in_flight(tmp_path: Path) -> None:
    """Another process's slot (no shared registry): its running row's commit holds the point."""
    root = make_task(tmp_path)
    session = Session.open(root)
    try:
        original = (root / "train.py").read_text()
        tag, best = session.require_tag(), session.best_commit(session.require_tag())
        first = make_tune_proposer(session.config, "tune")
        proposal = first.propose(context(session))
        taken = point_of(root)
        first.release()  # forget it here: only the journal knows it now
        running = session.journal.begin(tag, proposal.description, "tune", best)
        running.commit_sha = session.ws.commit_tree(session.ws.snapshot(best), best, "in flight elsewhere")
        session.journal.update(running)
        (root / "train.py").write_text(original)
        second = make_tune_proposer(session.config, "tune")
        second.propose(context(session))
        assert point_of(root) != taken and second.running and len(second.past) == 1
        assert "1 in flight" in (session.run_dir(running.seq + 1) / "agent.log").read_text()
        second.release()
        (root / "train.py").write_text(original)
    finally:
        session.close()
