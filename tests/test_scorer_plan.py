"""The scorer's secret plan of the request stream (tinylm's evaluate.py, imported as harness code):
every scored row is sent exactly once, every batch is full, a probe is a real row up to its cut
and differs right after it, and a probe never goes to the process that holds its base."""

from __future__ import annotations

import importlib.util
import random
import sys

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("pyarrow")

from conftest_llm_helpers import TEMPLATES


@pytest.fixture
def evaluate(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(tmp_path))
    monkeypatch.syspath_prepend(str(TEMPLATES / "tinylm"))
    monkeypatch.delitem(sys.modules, "prepare", raising=False)
    spec = importlib.util.spec_from_file_location("tinylm_evaluate_under_test", TEMPLATES / "tinylm" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("prepare", None)


@pytest.mark.parametrize("n_scored, batch", [(192, 16), (24, 4), (24, 3), (37, 5)])
def test_the_plan_hides_each_probe_from_its_base(evaluate, monkeypatch: pytest.MonkeyPatch, n_scored: int,
                                                 batch: int) -> None:
    monkeypatch.setattr(evaluate.prepare, "EVAL_BATCH_SIZE", batch)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 2048, size=(n_scored, 65), dtype=np.int64)
    planned, probes, streams = evaluate.plan_stream(n_scored, rows, random.Random(1))
    sent = [r for stream in streams for r in stream]
    assert len(streams) == evaluate.MODEL_PROCESSES
    assert all(len(stream) % batch == 0 for stream in streams)  # every batch has the same shape
    assert sorted(r for r in sent if r < n_scored) == list(range(n_scored))  # each scored row once
    assert len(probes) >= evaluate.MIN_PROBES and len(sent) == n_scored + len(probes)
    owner = {r: i for i, stream in enumerate(streams) for r in stream}
    for base, probe, cut in probes:
        assert owner[base] != owner[probe]
        assert (planned[probe, : cut + 1] == planned[base, : cut + 1]).all()
        assert planned[probe, cut + 1] != planned[base, cut + 1]


def test_another_secret_makes_another_plan(evaluate) -> None:
    rows = np.arange(24 * 65, dtype=np.int64).reshape(24, 65) % 500
    one = evaluate.plan_stream(24, rows, random.Random(1))
    two = evaluate.plan_stream(24, rows, random.Random(2))
    assert one[1] != two[1] and one[2] != two[2]


def test_too_few_rows_for_the_probes_is_a_clear_error(evaluate, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluate.prepare, "EVAL_BATCH_SIZE", 16)
    with pytest.raises(SystemExit, match="too few for .* causality probes"):
        evaluate.plan_stream(2, np.zeros((2, 65), dtype=np.int64), random.Random(0))
