"""An environment you can trust across a session: a package upgraded between two experiments
starts a new epoch, the best is re-measured under the new environment before anything is
compared with it, and `status` and the report say what changed. Natively and in the loop."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import ar, make_task, set_knob
from harness.test_fingerprint import install_dist, make_venv, site_packages

from autoresearch.config.task import LoopSection
from autoresearch.executors.local import LocalExecutor
from autoresearch.loop.driver import run_loop
from autoresearch.proposers import Proposal, ProposeContext
from autoresearch.trial.session import Session


def venv_task(tmp_path: Path) -> tuple[Path, Path]:
    """An `example` task whose runs use a venv of their own (holding tinydist 1.0), and that site."""
    python = make_venv(tmp_path / "venv")
    site = site_packages(python)
    install_dist(site, "tinydist", "1.0")
    # no sandbox: it gives a run a private /tmp, where this venv lives
    root = make_task(tmp_path, config_edits={'run = "python train.py"': f'run = "{python} train.py"',
                                             "[agent]": '[sandbox]\nkind = "none"\n\n[agent]'})
    return root, site


def rows(root: Path) -> list[tuple]:
    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    return db.execute("SELECT seq, status, is_baseline, description, metric, best_before, details_json, "
                      "commit_sha FROM experiments ORDER BY seq").fetchall()


@pytest.mark.slow
def test_an_upgraded_package_starts_an_epoch_and_the_best_is_remeasured_first(tmp_path: Path) -> None:
    root, site = venv_task(tmp_path)
    set_knob(root, "LEARNING_RATE", "0.06")
    ar(root, "experiment", "-m", "same environment")
    before = rows(root)
    assert [r[0] for r in before] == [1, 2] and not before[1][2]
    env_1 = json.loads(before[0][6])["env"]
    assert env_1 and json.loads(before[1][6])["env"] == env_1

    install_dist(site, "tinydist", "2.0")  # between two runs, as `pip install -U tinydist` would
    set_knob(root, "LEARNING_RATE", "0.07")
    record = json.loads(ar(root, "experiment", "-m", "after the upgrade", "--json").stdout)
    after = rows(root)
    remeasured = after[2]
    # seq 3: the best (seq 2's parent chain head) measured again under the new environment
    assert remeasured[1] == "keep" and remeasured[2] == 1
    assert "tinydist 1.0 -> 2.0" in remeasured[3]
    assert json.loads(remeasured[6])["epoch"] == 1 and json.loads(remeasured[6])["env"] != env_1
    # seq 4, the candidate, is compared with that re-measurement, never with the old epoch's best
    assert record["seq"] == 4 and not record["is_baseline"] and record["best_before"] == remeasured[4]
    assert record["parent"] == remeasured[7] and "head_moved" not in record["details"]

    status = json.loads(ar(root, "status", "--json").stdout)
    assert status["epoch"] == 1
    change = status["environment"]["changes"][0]
    assert change["after_seq"] == 2 and change["changes"] == ["packages: tinydist 1.0 -> 2.0"]
    text = ar(root, "status").stdout
    assert "tinydist 1.0 -> 2.0" in text and "env      " in text
    ar(root, "report", "-o", str(tmp_path / "report.html"))
    page = (tmp_path / "report.html").read_text()
    assert 'id="environment"' in page and "tinydist 1.0 -&gt; 2.0" in page

    # an unchanged environment: no new epoch, and no probe either (the cached fingerprint's key holds)
    probe_log = root / ".autoresearch" / "env" / "probe.log"
    probed = probe_log.stat().st_mtime_ns
    set_knob(root, "LEARNING_RATE", "0.08")
    ar(root, "experiment", "-m", "same again")
    assert probe_log.stat().st_mtime_ns == probed
    assert [r[2] for r in rows(root)][4:] == [0]
    assert json.loads(ar(root, "status", "--json").stdout)["epoch"] == 1


class Upgrader:
    """Edits LEARNING_RATE each time; while proposing seq 3 it upgrades tinydist (a mid-session
    `pip install -U` in another terminal)."""

    name = "upgrader"

    def __init__(self, site: Path) -> None:
        self.site = site

    def propose(self, ctx: ProposeContext) -> Proposal:
        if ctx.seq == 3:
            install_dist(self.site, "tinydist", "3.0")
        train = ctx.workspace.root / "train.py"
        train.write_text(train.read_text().replace("LEARNING_RATE = 0.05", f"LEARNING_RATE = 0.0{ctx.seq}"))
        return Proposal(description=f"lr 0.0{ctx.seq}")


@pytest.mark.slow
def test_the_loop_remeasures_the_best_when_the_environment_changes(tmp_path: Path) -> None:
    root, site = venv_task(tmp_path)
    with Session.open(root) as s:
        messages: list[str] = []
        result = run_loop(s, Upgrader(site), LoopSection(max_experiments=3), LocalExecutor(1),
                          on_message=messages.append)
        assert result.stopped_because == "3 experiments done"
    got = rows(root)
    # seq 3 ran while the upgrade happened; before seq 4's proposal the change is seen: seq 4
    # re-measures the best, seq 5 is compared with it
    assert [r[0] for r in got] == [1, 2, 3, 4, 5]
    assert got[3][2] == 1 and "tinydist 1.0 -> 3.0" in got[3][3] and json.loads(got[3][6])["epoch"] == 1
    assert got[4][5] == got[3][4] and not got[4][2]
    assert any("the environment changed" in m for m in messages)
