"""`autoresearch transfer`: the baseline and the best (or every keep) re-measured at another
setting of the knobs or another budget, judged from paired runs, recorded in the journal and
shown in the report; the branch, the task folder, the best and its runs are never touched."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import ar, git, make_task, set_knob

from autoresearch.config.task import load_config
from autoresearch.errors import ConfigError
from autoresearch.loop.transfer import knob_edits
from autoresearch.proposers.knobs import knob_values, list_knobs
from autoresearch.proposers.knobs_write import set_knobs
from autoresearch.scaffold import list_templates
from autoresearch.trial.session import Session


def session_with_two_keeps(tmp_path: Path) -> Path:
    """The deterministic `example` task with its own evaluate phase: more steps, then a larger
    learning rate, both kept."""
    root = make_task(tmp_path, harness_owned=True)
    for name, value in (("STEPS", "400"), ("LEARNING_RATE", "0.1")):
        set_knob(root, name, value)
        record = json.loads(ar(root, "experiment", "-m", f"{name} {value}", "--json", check=False).stdout)
        assert record["status"] == "keep", record
    return root


def runs_table(root: Path) -> list[tuple]:
    return sqlite3.connect(root / ".autoresearch" / "journal.db").execute("SELECT * FROM runs").fetchall()


@pytest.mark.slow
def test_transfer_reports_which_gains_carry_over_and_touches_nothing(tmp_path: Path) -> None:
    root = session_with_two_keeps(tmp_path)
    (root / "train.py").write_text((root / "train.py").read_text() + "\n# the user's unsaved thought\n")
    before = {"head": git(root, "rev-parse", "HEAD"), "status": git(root, "status", "--porcelain"),
              "train": (root / "train.py").read_text(), "runs": runs_table(root),
              "best": json.loads(ar(root, "status", "--json").stdout)["best_commit"]}

    out = ar(root, "transfer", "--set", "STEPS=100", "--set", "DEGREE=2", "-n", "4", "--json")
    check = json.loads(out.stdout)
    assert check["number"] == 1 and check["sets"] == {"STEPS": "100", "DEGREE": "2"}
    (row,) = check["rows"]
    assert (row["from_seq"], row["to_seq"], row["overall"], row["pairs"]) == (1, 3, True, 4)
    baseline_there = [m["metric"] for m in check["measurements"] if m["seq"] == 1]
    assert len(set(baseline_there)) == 1  # deterministic: one value per commit
    # the values were written into the export: at DEGREE=2, STEPS=100 the baseline is another model
    journal = sqlite3.connect(root / ".autoresearch" / "journal.db")
    baseline_metric = journal.execute("SELECT metric FROM experiments WHERE seq = 1").fetchone()[0]
    assert baseline_there[0] != pytest.approx(baseline_metric)
    assert row["verdict"] in ("carries", "reverses", "no gain") and row["gain"] is not None
    # the runs were ABBA, one seed per round shared by both commits
    order = [m["seq"] for m in check["measurements"]]
    assert order == [1, 3, 3, 1, 1, 3, 3, 1]
    assert len({m["seed"] for m in check["measurements"] if m["round"] == 0}) == 1

    after = {"head": git(root, "rev-parse", "HEAD"), "status": git(root, "status", "--porcelain"),
             "train": (root / "train.py").read_text(), "runs": runs_table(root),
             "best": json.loads(ar(root, "status", "--json").stdout)["best_commit"]}
    assert after == before  # branch, folder (with its unsaved edit), the best and its runs

    # --each: every keep against the one before it, then the whole session; on screen a table
    text = ar(root, "transfer", "--budget", "5", "--each", "-n", "2").stdout
    assert "transfer check 2: budget 5 s (session 10 s)" in text
    assert "2 (after 1)" in text and "3 (after 2)" in text and "baseline 1 -> best 3" in text
    assert "carried over" in text
    ar(root, "report", "-o", str(tmp_path / "report.html"))
    page = (tmp_path / "report.html").read_text()
    assert 'id="transfer"' in page and "check 1: STEPS=100, DEGREE=2" in page and "check 2: budget 5 s" in page
    assert page.count('alt="transfer check') == 2


@pytest.mark.slow
def test_transfer_refuses_what_it_cannot_do_and_spends_no_run(tmp_path: Path) -> None:
    root = make_task(tmp_path, harness_owned=True)
    out = ar(root, "transfer", "--set", "STEPS=100", check=False)
    assert out.returncode == 1 and "no keep beyond the baseline" in out.stderr
    set_knob(root, "STEPS", "400")
    ar(root, "experiment", "-m", "more steps")
    for args, words in [
        (["--set", "NOPE=1"], "--set NOPE: no such knob in train.py at seq 1 (knobs: DEGREE, LEARNING_RATE"),
        (["--set", "DEGREE=high"], "DEGREE holds a int"),
        (["--set", "DEGREE"], "expected NAME=VALUE"),
        ([], "nothing to change"),
        (["--budget", "-3"], "--budget -3: must be more than 0"),
    ]:
        out = ar(root, "transfer", *args, check=False)
        assert out.returncode == 2 and words in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr
    assert not list((root / ".autoresearch").glob("transfer/*/*.log"))  # refused before any run


def test_every_template_with_knobs_takes_a_set(tmp_path: Path) -> None:
    """`--set` works on the knobs of every template that has them; the others get a clear refusal."""
    with_knobs = []
    for template in list_templates():
        config = load_config(template.path)
        listing = list_knobs(config)
        if not listing.knobs:
            with pytest.raises(ConfigError, match="no such knob"):
                knob_edits(config, template.path, {"DEPTH": "8"}, 1)
            continue
        with_knobs.append(template.name)
        knob = listing.knobs[0]
        value = knob.value * 2 if isinstance(knob.value, (int, float)) and not isinstance(knob.value, bool) \
            else knob.value
        edits = knob_edits(config, template.path, {knob.qualname: repr(value)}, 1)
        knobs, values = edits[knob.path]
        source = (template.path / knob.path).read_text()
        edited = set_knobs(source, knobs, values)
        assert knob_values(edited, knob.path)[knob.qualname] == value
        assert len(edited.splitlines()) == len(source.splitlines())  # one value changed, nothing else
    assert {"example", "tinylm", "nanochat", "compress", "fastfunc"} <= set(with_knobs)


@pytest.mark.slow
def test_transfer_waits_for_no_one(tmp_path: Path) -> None:
    """A task that is busy (a loop running) refuses a transfer instead of sharing its folders."""
    root = make_task(tmp_path)
    with Session.open(root) as holder:
        holder.acquire("run")
        out = ar(root, "transfer", "--set", "STEPS=100", check=False)
    assert out.returncode == 1 and "busy" in out.stderr
