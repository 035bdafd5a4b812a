"""`review`, `show` and `diff` on a real repository made through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import git
from report.test_report import PLAN, rep, research_copy

from autoresearch.journal.records import Experiment
from autoresearch.report.review import closest_misses

pytestmark = pytest.mark.slow  # a real run through the CLI


@pytest.fixture(scope="module")
def research(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return research_copy(tmp_path_factory, "review")


def test_review_json_kept_crashes_by_reason_and_closest(research: Path) -> None:
    data = json.loads(rep(research, "review", "--json").stdout)
    assert data["tag"] == "t" and data["metric"] == "val_loss" and data["goal"] == "minimize"
    assert [k["seq"] for k in data["kept"]] == [2, 6, 7]
    assert all(k["delta"] < 0 for k in data["kept"])
    assert data["crashes"] == [{"reason": "exit-1", "count": 1, "seqs": [4], "example": PLAN[4][1]}]
    assert data["rejections"][0]["reason"] == "harness-modified" and data["rejections"][0]["seqs"] == [5]
    assert [c["seq"] for c in data["closest"]] == [3]
    s = data["summary"]
    assert s["counts"] == {"keep": 4, "discard": 1, "crash": 1, "rejected": 1, "running": 0}
    assert s["baseline_seq"] == 1 and s["best_seq"] == 7
    assert s["improvement"] == pytest.approx(s["baseline"] - s["best"])
    assert s["keep_rate"] == pytest.approx(0.5)
    assert data["since_last_keep"] == 0


def test_review_text(research: Path) -> None:
    out = rep(research, "review").stdout
    assert "autoresearch/t: 7 experiments" in out
    assert "baseline" in out and "-> best" in out
    assert "raise the learning rate to 0.1" in out  # a keep
    assert "exit-1 x1: seq 4" in out  # crashes grouped by reason
    assert "harness-modified x1: seq 5" in out
    assert "closest without a keep" in out and "fewer steps" in out


def test_show_json_has_record_metrics_log_and_diff(research: Path) -> None:
    data = json.loads(rep(research, "show", "2", "--json").stdout)
    assert data["seq"] == 2 and data["status"] == "keep" and data["description"] == PLAN[2][1]
    assert data["ref"] == "refs/autoresearch/t/2"
    assert data["commit"] == git(research, "rev-parse", "refs/autoresearch/t/2").strip()
    assert data["parent"] == git(research, "rev-parse", "refs/autoresearch/t/1").strip()
    assert data["metrics"]["val_loss"] == pytest.approx(data["metric"])
    assert data["delta"] == pytest.approx(data["metric"] - data["best_before"])
    assert "val_loss:" in data["log_tail_lines"]
    assert "-LEARNING_RATE = 0.05" in data["diff"] and "+LEARNING_RATE = 0.1" in data["diff"]

    crash = json.loads(rep(research, "show", "4", "--json").stdout)
    assert crash["status"] == "crash" and "SyntaxError" in crash["log_tail_lines"]
    assert "+x = (" in crash["diff"]
    rejected = json.loads(rep(research, "show", "5", "--json").stdout)
    # every attempt is a commit, a rejected one too (never on the branch): its diff shows the cheat
    assert rejected["commit"] == git(research, "rev-parse", "refs/autoresearch/t/5").strip()
    assert "+# the agent was here" in rejected["diff"]


def test_show_text_and_diff(research: Path) -> None:
    out = rep(research, "show", "3").stdout
    assert out.startswith("seq 3  discard (not-better)")
    assert "refs/autoresearch/t/3" in out and "val_loss" in out and "vs best" in out
    assert "+STEPS = 50" in out
    # diff: exactly git's diff of the experiment's commit against its parent.
    diff = rep(research, "diff", "3").stdout
    assert diff == git(research, "diff", "--no-color", "refs/autoresearch/t/2", "refs/autoresearch/t/3")
    stat = rep(research, "diff", "3", "--stat").stdout
    assert "train.py" in stat and "1 file changed" in stat
    assert rep(research, "diff", "1").stdout == ""  # the baseline changed nothing
    rejected = rep(research, "diff", "5", check=False)
    assert rejected.returncode == 0 and "+# the agent was here" in rejected.stdout
    missing = rep(research, "show", "99", check=False)
    assert missing.returncode == 1 and "no experiment 99" in missing.stderr


def test_without_a_re_measurement_every_headline_is_best_minus_baseline(research: Path) -> None:
    # No re-measurement in this run: the chain of keeps telescopes, and review, status and the
    # JSON state the same figures as before gains.py existed (a regression changes these digits).
    s = json.loads(rep(research, "review", "--json").stdout)["summary"]
    base, best = s["baseline"], s["best"]
    assert (base, best) == (0.041446, 0.00912)  # the example task is deterministic
    assert s["remeasured"] is False and s["gain_note"] == ""
    assert s["improvement"] == s["raw_improvement"] == base - best
    assert s["improvement_pct"] == 100.0 * (base - best) / abs(base)
    out = rep(research, "review").stdout
    pct = 100.0 * (base - best) / base
    assert (f"val_loss (lower is better): baseline {base:.6f} -> best {best:.6f} "
            f"(improved by {base - best:.6g}, {pct:+.2f}%) at seq 7") in out
    assert "baseline 0.041446 -> best 0.009120 (improved by 0.032326, +78.00%) at seq 7" in out  # as before
    assert "like-for-like" not in out and "note:" not in out
    status = rep(research, "status").stdout
    assert f"gain     improved by {base - best:.6g}, {pct:+.2f}% vs the baseline {base:.6f} (seq 1)" in status
    assert "note " not in status


def test_a_duplicate_is_not_a_second_near_miss() -> None:
    original = Experiment(seq=2, tag="t", status="discard", started_at=0.0, metric=1.01, best_before=1.0)
    repeat = Experiment(seq=3, tag="t", status="discard", started_at=0.0, metric=1.01, best_before=1.0,
                        reason="duplicate", details={"duplicate_of": 2})
    assert [e.seq for e in closest_misses([original, repeat], maximize=False)] == [2]
