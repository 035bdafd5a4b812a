"""The nanochat template: downloads against a local HTTP server, and the whole baseline (setup,
run, evaluate) on the CPU with its constants shrunk in a copy, so the real code path runs:
download, tokenizer training, packing, the model, both optimizers, the evaluation."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("rustbpe")
pytest.importorskip("tiktoken")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
import torch
from conftest_llm_helpers import (
    LEAK_UNLESS_PROBE_SHAPED,
    TEMPLATES,
    FileServer,
    copy_template,
    run_script,
    set_constants,
    synthetic_docs,
)

NANOCHAT = TEMPLATES / "nanochat"
TINYLM = TEMPLATES / "tinylm"
SUMMARY_KEYS = ("training_seconds", "total_seconds", "peak_vram_mb", "mfu_percent", "tokens_per_sec",
                "total_tokens_M", "num_steps", "num_params_M", "depth")


def between(text: str, start: str, end: str) -> str:
    assert start in text and end in text, (start, end)
    return text[text.index(start) : text.index(end)]


def without_knobs(text: str) -> str:
    knobs = between(text, "# Knobs: edit them here", "# Training\n")
    return text.replace(knobs, "")


def test_train_py_is_shared_with_tinylm_except_the_knobs() -> None:
    nanochat, tinylm = (NANOCHAT / "train.py").read_text(), (TINYLM / "train.py").read_text()
    assert without_knobs(nanochat) == without_knobs(tinylm)
    assert "DEPTH = 8  #" in nanochat and "WINDOW_PATTERN = \"SSSL\"" in nanochat
    assert "DEPTH = 4  #" in tinylm and "WINDOW_PATTERN = \"L\"" in tinylm


def test_evaluate_and_prepare_runtime_are_shared_with_tinylm() -> None:
    assert (NANOCHAT / "evaluate.py").read_bytes() == (TINYLM / "evaluate.py").read_bytes()
    assert (NANOCHAT / "serve.py").read_bytes() == (TINYLM / "serve.py").read_bytes()
    start, end = "# From here to the data source section", "# Data source"
    assert between((NANOCHAT / "prepare.py").read_text(), start, end) == between((TINYLM / "prepare.py").read_text(), start, end)


def test_config_and_program_follow_the_contract() -> None:
    from autoresearch.config.task import load_config

    config = load_config(NANOCHAT)
    assert config.task.editable == ["train.py"] and config.task.evaluate == "python evaluate.py"
    assert config.task.model == "python serve.py" and "serve.py" in config.task.readonly
    assert config.metric.name == "val_bpb" and config.metric.holdout == "holdout_bpb"
    assert config.budget.seconds == 300 and config.resource.name == "peak_vram_mb"
    assert config.sandbox.train_data == ["$AUTORESEARCH_CACHE/nanochat/train", "$AUTORESEARCH_CACHE/nanochat/tokenizer"]
    assert config.sandbox.eval_data == ["$AUTORESEARCH_CACHE/nanochat/val", "$AUTORESEARCH_CACHE/nanochat/holdout"]
    program = (NANOCHAT / "program.md").read_text()
    assert "autoresearch experiment -m" in program and "tee" in program and "results.tsv" in program


def load_prepare(cache: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(cache))
    spec = importlib.util.spec_from_file_location("nanochat_prepare_under_test", NANOCHAT / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.RETRY_BASE_S = 0.01
    return module


def write_shard(path: Path, docs: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": docs}), path, row_group_size=64)


def test_download_resumes_retries_and_refuses_bad_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepare = load_prepare(tmp_path / "cache", monkeypatch)
    hub = tmp_path / "hub"
    write_shard(hub / "shard_00003.parquet", synthetic_docs(200, seed=3))
    (hub / "bad.parquet").write_bytes(b"this is not a parquet file" * 100)
    source = (hub / "shard_00003.parquet").read_bytes()
    dest = tmp_path / "dl" / "shard_00003.parquet"
    partial = dest.with_name(dest.name + ".partial")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(source[:1000])  # left by an interrupted download
    with FileServer(hub, fail_once={"shard_00003.parquet"}) as server:
        assert prepare.download_file(f"{server.url}/shard_00003.parquet", dest, check=prepare.check_parquet)
        # the first try met an HTTP 500 and kept the partial file; the retry resumed it
        assert server.requests_for("shard_00003.parquet") == ["bytes=1000-", "bytes=1000-"]
        assert dest.read_bytes() == source and not partial.exists()
        assert prepare.download_file(f"{server.url}/shard_00003.parquet", dest)  # present: no request
        assert len(server.requests_for("shard_00003.parquet")) == 2

        monkeypatch.setattr(prepare, "DOWNLOAD_ATTEMPTS", 2)
        bad = tmp_path / "dl" / "bad.parquet"
        assert not prepare.download_file(f"{server.url}/bad.parquet", bad, check=prepare.check_parquet)
        assert server.requests_for("bad.parquet") == [None, None]  # a corrupt file is fetched afresh
        assert not bad.exists() and not bad.with_name("bad.parquet.partial").exists()
        assert not prepare.download_file(f"{server.url}/missing.parquet", tmp_path / "dl" / "missing.parquet")


def make_hub(hub: Path) -> None:
    for index, seed in [(0, 10), (1, 11), (6541, 12), (6542, 13)]:
        write_shard(hub / f"shard_{index:05d}.parquet", synthetic_docs(300, seed=seed))


def test_local_directory_source_for_offline_machines(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    make_hub(hub)
    task = copy_template("nanochat", tmp_path / "task")
    set_constants(task / "prepare.py", VOCAB_SIZE=300, NUM_TRAIN_SHARDS=1)
    cache = tmp_path / "cache"
    setup = run_script(task, "prepare.py", {"AUTORESEARCH_CACHE": str(cache), "AUTORESEARCH_DATA_URL": hub.as_uri()}, timeout=300)
    assert setup.returncode == 0, setup.output
    root = cache / "nanochat"
    assert [p.name for p in (root / "train").iterdir()] == ["shard_00000.parquet"]
    assert (root / "val" / "shard_06542.parquet").read_bytes() == (hub / "shard_06542.parquet").read_bytes()
    assert (root / "holdout" / "shard_06541.parquet").read_bytes() == (hub / "shard_06541.parquet").read_bytes()
    assert (root / "tokenizer" / "tokenizer.json").exists()


@pytest.mark.slow
def test_baseline_on_cpu_with_shrunken_constants(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    make_hub(hub)
    task = copy_template("nanochat", tmp_path / "task")
    set_constants(task / "prepare.py", MAX_SEQ_LEN=128, EVAL_TOKENS=16 * 128, HOLDOUT_TOKENS=8 * 128,
                  EVAL_BATCH_SIZE=4, VOCAB_SIZE=384, NUM_TRAIN_SHARDS=2, DOWNLOAD_WORKERS=2, RETRY_BASE_S=0.05)
    # still "SSSL": layer 0 gets a half-context window (the SDPA mask path), the last layer the full one
    set_constants(task / "train.py", DEPTH=2, ASPECT_RATIO=32, HEAD_DIM=32, TOTAL_BATCH_SIZE=1024, DEVICE_BATCH_SIZE=4)
    cache = tmp_path / "cache"
    root = cache / "nanochat"
    env = {"AUTORESEARCH_CACHE": str(cache)}

    # setup: parallel downloads from a local hub, one of which fails once, then the tokenizer
    with FileServer(hub, fail_once={"shard_00001.parquet"}) as server:
        setup = run_script(task, "prepare.py", {**env, "AUTORESEARCH_DATA_URL": server.url}, timeout=300)
        assert setup.returncode == 0, setup.output
        assert len(server.requests_for("shard_00001.parquet")) == 2  # an HTTP 500, then the retry
        for name in ("shard_00000.parquet", "shard_06541.parquet", "shard_06542.parquet"):
            assert len(server.requests_for(name)) == 1
        fetched = len(server.requests)
        again = run_script(task, "prepare.py", {**env, "AUTORESEARCH_DATA_URL": server.url}, timeout=120)
        assert again.returncode == 0, again.output
        assert len(server.requests) == fetched  # idempotent: nothing fetched twice
    assert sorted(p.name for p in (root / "train").iterdir()) == ["shard_00000.parquet", "shard_00001.parquet"]
    assert [p.name for p in (root / "val").iterdir()] == ["shard_06542.parquet"]
    assert [p.name for p in (root / "holdout").iterdir()] == ["shard_06541.parquet"]
    assert not list(cache.rglob("*.partial"))
    tokenizer = json.loads((root / "tokenizer" / "tokenizer.json").read_text())
    assert tokenizer["bos_token"] == "<|reserved_0|>"
    assert tokenizer["special_tokens"]["<|reserved_0|>"] == len(tokenizer["ranks"]) <= 384 - 4
    assert [rank for _, rank in tokenizer["ranks"]] == list(range(len(tokenizer["ranks"])))

    # run phase, with the evaluation data out of reach as under the sandbox
    out = tmp_path / "out"
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for split in ("val", "holdout"):
        shutil.move(root / split, hidden / split)
    run = run_script(task, "train.py", {**env, "AUTORESEARCH_BUDGET_S": "3", "AUTORESEARCH_OUT": str(out),
                                        "AUTORESEARCH_PHASE": "run", "AUTORESEARCH_SEED": "3"}, timeout=300)
    assert run.returncode == 0, run.output
    assert "seed=3" in run.output and "budget=3s" in run.output
    for key in SUMMARY_KEYS:
        assert math.isfinite(run.metric(key)), key
    assert run.metric("training_seconds") >= 3 and run.metric("depth") == 2 and run.metric("num_steps") >= 2
    assert "val_bpb" not in run.metrics  # the run phase has no say in the metric
    checkpoint = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    weights = checkpoint["state_dict"]
    assert checkpoint["config"]["window_pattern"] == "SSSL" and checkpoint["config"]["vocab_size"] <= 384
    # the output projections start at zero and only Muon moves them; x0_lambdas start at 0.1 (AdamW)
    assert weights["blocks.0.attn.c_proj.weight"].abs().sum() > 0
    assert weights["blocks.1.mlp.c_proj.weight"].abs().sum() > 0
    assert not torch.allclose(weights["x0_lambdas"], torch.full_like(weights["x0_lambdas"], 0.1))
    for split in ("val", "holdout"):
        shutil.move(hidden / split, root / split)

    # evaluate phase: the metric, over a fixed number of tokens
    eval_env = {**env, "AUTORESEARCH_OUT": str(out), "AUTORESEARCH_PHASE": "evaluate"}
    evaluation = run_script(task, "evaluate.py", eval_env, timeout=300)
    assert evaluation.returncode == 0, evaluation.output
    assert "reject" not in evaluation.metrics
    val_bpb, holdout_bpb = evaluation.metric("val_bpb"), evaluation.metric("holdout_bpb")
    assert 0 < val_bpb < 10 and 0 < holdout_bpb < 10
    assert evaluation.metric("eval_tokens") == 16 * 128
    # the metric does not depend on the evaluation batch size
    set_constants(task / "prepare.py", EVAL_BATCH_SIZE=3)
    rebatched = run_script(task, "evaluate.py", eval_env, timeout=300)
    assert rebatched.returncode == 0, rebatched.output
    assert rebatched.metric("val_bpb") == pytest.approx(val_bpb, abs=1e-4)

    # the scorer never imports train.py: a leak of the next token, hidden from batches shaped
    # like the old probe, is caught by the probes mixed into the same stream
    honest = (task / "train.py").read_text()
    (task / "train.py").write_text(honest + LEAK_UNLESS_PROBE_SHAPED)
    leaky = run_script(task, "evaluate.py", eval_env, timeout=300)
    assert leaky.returncode == 0, leaky.output
    assert leaky.metrics.get("reject") == "non-causal" and "val_bpb" not in leaky.metrics
