"""The tinylm template: the standard-library corpus and its fixed split, the baseline with its
default settings on the CPU, the TinyStories download against a local HTTP server, and the
evaluate phase rejecting a model that is not causal or that reads the evaluation data."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import sys
import zlib
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("rustbpe")
pytest.importorskip("tiktoken")
pq = pytest.importorskip("pyarrow.parquet")

from conftest import ar, git
from conftest_llm_helpers import (
    TEMPLATES,
    FileServer,
    copy_template,
    replace_once,
    run_script,
    set_constants,
    synthetic_docs,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TINYLM = TEMPLATES / "tinylm"


def texts(folder: Path) -> list[str]:
    return [t for path in sorted(folder.glob("*.parquet")) for t in pq.read_table(path).column("text").to_pylist()]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache prepared by the real setup command from this Python's standard library."""
    root = tmp_path_factory.mktemp("tinylm")
    task = copy_template("tinylm", root / "setup-task")
    setup = run_script(task, "prepare.py", {"AUTORESEARCH_CACHE": str(root / "cache")}, timeout=300)
    assert setup.returncode == 0, setup.output
    assert "data: files train=" in setup.output and "tokenizer: 2048 tokens" in setup.output
    return root / "cache"


def test_stdlib_split_is_fixed_by_path_hash(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(tmp_path))
    spec = importlib.util.spec_from_file_location("tinylm_prepare_under_test", TINYLM / "prepare.py")
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    for path in ("json/decoder.py", "asyncio/tasks.py", "email/utils.py", "os.py", "zipfile/__init__.py"):
        bucket = zlib.crc32(path.encode()) % 20
        assert prepare.stdlib_split(path) == ("val" if bucket == 0 else "holdout" if bucket == 1 else "train")
    assert prepare.cut_at_lines("a\nbb\nccc\n", limit=5) == ["a\nbb\n", "ccc\n"]
    assert "".join(prepare.cut_at_lines("x" * 50 + "\n" + "y\n" * 40, limit=20)) == "x" * 50 + "\n" + "y\n" * 40


@pytest.mark.slow
def test_setup_is_idempotent_and_fast_when_done(prepared: Path, tmp_path: Path) -> None:
    root = prepared / "tinylm"
    train, val, holdout = texts(root / "train"), texts(root / "val"), texts(root / "holdout")
    assert len(train) > 10 * len(val) > 0 and len(holdout) > 0
    assert all(len(doc) <= 2000 or "\n" not in doc.rstrip("\n") for doc in val)
    tokenizer = json.loads((root / "tokenizer" / "tokenizer.json").read_text())
    assert tokenizer["source"] == "stdlib" and len(tokenizer["ranks"]) + 4 == 2048
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    task = copy_template("tinylm", tmp_path / "task")
    again = run_script(task, "prepare.py", {"AUTORESEARCH_CACHE": str(prepared)}, timeout=120)
    assert again.returncode == 0 and "present (stdlib)" in again.output, again.output
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_baseline_with_default_settings_fits_its_budget(prepared: Path, tmp_path: Path) -> None:
    task = copy_template("tinylm", tmp_path / "task")
    budget = tomllib.loads((task / "autoresearch.toml").read_text())["budget"]
    root = prepared / "tinylm"
    out = tmp_path / "out"
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for split in ("val", "holdout"):  # the run phase never needs the evaluation data
        shutil.move(root / split, hidden / split)
    try:
        run = run_script(task, "train.py", {"AUTORESEARCH_CACHE": str(prepared), "AUTORESEARCH_OUT": str(out),
                                            "AUTORESEARCH_PHASE": "run", "AUTORESEARCH_BUDGET_S": str(budget["seconds"])},
                         timeout=budget["timeout"] + 30)
    finally:
        for split in ("val", "holdout"):
            shutil.move(hidden / split, root / split)
    assert run.returncode == 0, run.output
    assert run.seconds < budget["timeout"], "the baseline must finish before the harness would kill it"
    assert budget["seconds"] <= run.metric("training_seconds") < budget["timeout"]
    assert run.metric("num_steps") >= 2 and math.isfinite(run.metric("peak_vram_mb"))
    evaluation = run_script(task, "evaluate.py", {"AUTORESEARCH_CACHE": str(prepared), "AUTORESEARCH_OUT": str(out),
                                                  "AUTORESEARCH_PHASE": "evaluate"}, timeout=budget["timeout"])
    assert evaluation.returncode == 0, evaluation.output
    # uniform guessing over 2048 tokens costs about 3.3 bits per byte of Python source
    assert 0 < evaluation.metric("val_bpb") < 3.0
    assert 0 < evaluation.metric("holdout_bpb") < 3.5


@pytest.mark.slow
def test_non_causal_or_data_peeking_models_are_rejected(prepared: Path, tmp_path: Path) -> None:
    task = copy_template("tinylm", tmp_path / "task")
    set_constants(task / "train.py", DEPTH=2, TOTAL_BATCH_SIZE=2048)
    set_constants(task / "prepare.py", EVAL_TOKENS=16 * 256, HOLDOUT_TOKENS=8 * 256)  # evaluation only: same data
    env = {"AUTORESEARCH_CACHE": str(prepared)}
    out = tmp_path / "out"
    # run by hand (no AUTORESEARCH_PHASE): train.py trains, then runs evaluate.py itself
    run = run_script(task, "train.py", {**env, "AUTORESEARCH_OUT": str(out), "AUTORESEARCH_BUDGET_S": "2",
                                        "AUTORESEARCH_SEED": "7"}, timeout=300)
    assert run.returncode == 0, run.output
    assert "seed=7" in run.output and math.isfinite(run.metric("val_bpb")) and (out / "model.pt").exists()
    eval_env = {**env, "AUTORESEARCH_OUT": str(out), "AUTORESEARCH_PHASE": "evaluate"}

    # the same weights, rebuilt by a train.py whose attention sees the future
    replace_once(task / "train.py", "is_causal=True", "is_causal=False")
    leaky = run_script(task, "evaluate.py", eval_env, timeout=300)
    assert leaky.returncode == 0, leaky.output
    assert leaky.metrics.get("reject") == "non-causal" and "val_bpb" not in leaky.metrics

    # causal again, but the model code lists the validation folder
    replace_once(task / "train.py", "is_causal=False", "is_causal=True")
    replace_once(task / "train.py", "        self.windows = window_sizes(config)\n",
                 "        self.windows = window_sizes(config)\n"
                 "        try:\n"
                 "            os.listdir(os.path.join(os.environ['AUTORESEARCH_CACHE'], 'tinylm', 'val'))\n"
                 "        except OSError:\n"
                 "            pass\n")
    peeking = run_script(task, "evaluate.py", eval_env, timeout=300)
    assert peeking.returncode == 0, peeking.output
    assert peeking.metrics.get("reject") == "reads-eval-data" and "val_bpb" not in peeking.metrics


def test_tinystories_download_from_a_local_server(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    hub.mkdir()
    stories, valid = synthetic_docs(300, seed=1), synthetic_docs(40, seed=2)
    train_file = ("\n<|endoftext|>\n".join(stories) + "\n").encode()
    (hub / "TinyStoriesV2-GPT4-train.txt").write_bytes(train_file)
    (hub / "TinyStoriesV2-GPT4-valid.txt").write_text("\n<|endoftext|>\n".join(valid) + "\n")
    limit = len(train_file) // 2
    task = copy_template("tinylm", tmp_path / "task")
    set_constants(task / "prepare.py", DATA_SOURCE="tinystories", TINYSTORIES_TRAIN_BYTES=limit,
                  VOCAB_SIZE=300, RETRY_BASE_S=0.05)
    cache = tmp_path / "cache"
    with FileServer(hub, fail_once={"TinyStoriesV2-GPT4-valid.txt"}) as server:
        setup = run_script(task, "prepare.py", {"AUTORESEARCH_CACHE": str(cache), "AUTORESEARCH_DATA_URL": server.url},
                           timeout=300)
        assert setup.returncode == 0, setup.output
        assert server.requests_for("TinyStoriesV2-GPT4-train.txt") == [f"bytes=0-{limit - 1}"]  # only what is used
        assert server.requests_for("TinyStoriesV2-GPT4-valid.txt") == [None, None]  # an HTTP 500, then the retry
    root = cache / "tinylm"
    assert (root / "raw" / "TinyStoriesV2-GPT4-train.txt").stat().st_size == limit
    train = texts(root / "train")
    head = train_file[:limit].decode("utf-8", "replace").split("<|endoftext|>")
    complete = [story.strip() for story in head[:-1]]  # the story the limit cuts through is dropped
    assert sorted(train) == sorted(complete) and set(train) <= set(stories) and 0 < len(train) < len(stories)
    assert sorted(texts(root / "val")) == sorted(valid[0::2])
    assert sorted(texts(root / "holdout")) == sorted(valid[1::2])
    assert json.loads((root / "tokenizer" / "tokenizer.json").read_text())["source"] == "tinystories"


@pytest.mark.slow
def test_transfer_at_two_depths_is_recorded_and_reported(prepared: Path, tmp_path: Path) -> None:
    """A short session at depth 2 (a learning rate 100x too small, then the fix, kept), re-measured
    at depths 3 and 1 with `autoresearch transfer`: each check is recorded, and the report shows
    both tables. Shrunk to a 4-second budget and small evaluation sets."""
    env = {"AUTORESEARCH_CACHE": str(prepared)}
    task = tmp_path / "task"
    ar(tmp_path, "init", str(task), "--template", "tinylm", env=env)
    set_constants(task / "train.py", DEPTH=2, TOTAL_BATCH_SIZE=2048, MATRIX_LR=0.0004, EMBEDDING_LR=0.006,
                  UNEMBEDDING_LR=0.00004, SCALAR_LR=0.005)
    set_constants(task / "prepare.py", EVAL_TOKENS=16 * 256, HOLDOUT_TOKENS=8 * 256)
    # a 4 s budget, and room for torch's import on a loaded machine (a slow start is not over-budget)
    replace_once(task / "autoresearch.toml", "seconds = 60", "seconds = 4")
    replace_once(task / "autoresearch.toml", "grace = 15", "grace = 150")
    replace_once(task / "autoresearch.toml", 'confirm = "reference"', 'confirm = "none"')  # one run decides
    git(task, "commit", "-qam", "a short session")
    ar(task, "lock", env=env)
    ar(task, "start", "--tag", "t", env=env)
    ar(task, "baseline", env=env, timeout=600)
    set_constants(task / "train.py", MATRIX_LR=0.04, EMBEDDING_LR=0.6, UNEMBEDDING_LR=0.004, SCALAR_LR=0.5)
    record = json.loads(ar(task, "experiment", "-m", "the learning rates back to sane", "--json", env=env,
                           timeout=600, check=False).stdout)
    assert record["status"] == "keep", record
    for depth, runs in ((3, 2), (1, 1)):
        check = json.loads(ar(task, "transfer", "--set", f"DEPTH={depth}", "-n", str(runs), "--json", env=env,
                              timeout=900).stdout)
        assert [m["ok"] for m in check["measurements"]] == [True] * 2 * runs, check["measurements"]
        (row,) = check["rows"]
        assert (row["from_seq"], row["to_seq"], row["pairs"]) == (1, 2, runs) and row["gain"] is not None
        for m in check["measurements"]:  # the run trained the depth it was given
            run_log = Path(m["log"]).with_name(f"seq{m['seq']}-round{m['round']}.log")
            assert f"'n_layer': {depth}," in run_log.read_text()
    ar(task, "report", "-o", str(tmp_path / "report.html"), env=env)
    page = (tmp_path / "report.html").read_text()
    assert "check 1: DEPTH=3" in page and "check 2: DEPTH=1" in page and page.count('alt="transfer check') == 2
