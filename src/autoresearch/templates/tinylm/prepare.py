"""
Data and tokenizer for the tinylm task. Read-only: the agent never edits this file.

    python prepare.py            # build the corpus and train the tokenizer (seconds; no network)
    python prepare.py --force    # throw the prepared data away and build it again

One-time preparation; a second call only checks that everything is there and returns at once.

The corpus needs no network: the Python source files of the standard library of the Python
that runs this script (site-packages excluded). A file belongs to one split for good, by a
hash of its path relative to the standard library folder:

    crc32(path) % 20 == 0  ->  val       (scored by evaluate.py: the metric)
    crc32(path) % 20 == 1  ->  holdout   (scored too, but no decision is ever based on it)
    otherwise              ->  train

so no line of a validation or holdout file is ever trained on. Files are cut at line ends into
documents of at most DOC_CHARS characters, and each split is shuffled with a fixed seed. Other
Python versions ship other files, so compare numbers made with the same Python.

With a network, set DATA_SOURCE = "tinystories" below (before the first baseline: the data
must not change under a running search) for TinyStories (roneneldan/TinyStories on the Hugging
Face hub): the first TINYSTORIES_TRAIN_BYTES of the GPT-4 training stories for training, the
validation stories split alternately into val and holdout. Downloads retry with exponential
backoff, resume partial files and rename into place only when complete.

The tokenizer is a byte-level BPE trained with rustbpe (VOCAB_SIZE tokens, the last 4 reserved
special tokens, the first of which is BOS), stored as plain JSON: base64 token bytes and integer
ranks. Nothing is ever unpickled.

Layout under $AUTORESEARCH_CACHE/tinylm/ (default ~/.cache/autoresearch/tinylm/). One folder per
role, so a sandbox can show the training run only what it may see:
    train/  tokenizer/  val/  holdout/   (and raw/ for TinyStories downloads)

Environment:
    AUTORESEARCH_CACHE     root of the data cache (default ~/.cache/autoresearch)
    AUTORESEARCH_DATA_URL  TinyStories only: the http(s) URL of a folder holding the two .txt
                           files instead of the hub, or file:///some/dir for a local copy

train.py and evaluate.py import the constants, the Tokenizer and the packing dataloader from here
(evaluate.py its numpy rows, packed_rows: the scorer never needs torch on a CPU).
"""

from __future__ import annotations

import argparse
import base64
import bisect
import json
import os
import random
import shutil
import sys
import sysconfig
import time
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.parquet as pq

if TYPE_CHECKING:
    import torch

# ---------------------------------------------------------------------------
# Constants (fixed: the harness and every experiment agree on these)
# ---------------------------------------------------------------------------

TASK_NAME = "tinylm"
MAX_SEQ_LEN = 256  # context length of training and evaluation
TIME_BUDGET = 60  # seconds of training; the harness passes its own as AUTORESEARCH_BUDGET_S
EVAL_TOKENS = 128 * 256  # validation tokens scored by evaluate.py: a few seconds on a laptop CPU
HOLDOUT_TOKENS = 64 * 256  # holdout tokens scored by evaluate.py
EVAL_BATCH_SIZE = 16  # rows per forward pass in evaluate.py; the metric does not depend on it

VOCAB_SIZE = 2048  # including the special tokens
SPECIAL_TOKENS = [f"<|reserved_{i}|>" for i in range(4)]
BOS_TOKEN = SPECIAL_TOKENS[0]  # every document starts with it
# GPT-4 style split pattern, with numbers split into runs of at most 2 digits (instead of 3)
SPLIT_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
TOKENIZER_MAX_CHARS = 20_000_000  # characters of training text the tokenizer learns from (a few seconds)
TOKENIZER_DOC_CAP = 10_000  # characters taken from any one document for the tokenizer

DATA_SOURCE = "stdlib"  # or "tinystories" (downloads once; needs a network)
DOC_CHARS = 2000  # stdlib files are cut at line ends into documents of at most this many characters
SPLIT_SEED = 0  # the fixed shuffle of each split's documents

DATA_URL = "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main"
TINYSTORIES_TRAIN = "TinyStoriesV2-GPT4-train.txt"
TINYSTORIES_VALID = "TinyStoriesV2-GPT4-valid.txt"
TINYSTORIES_TRAIN_BYTES = 100_000_000  # the first 100 MB of the 2 GB training file: plenty for minutes on a CPU
DOWNLOAD_ATTEMPTS = 5
RETRY_BASE_S = 1.0  # waits 1, 2, 4, 8 s between attempts

# ---------------------------------------------------------------------------
# From here to the data source section, nanochat and tinylm share this file line for line.
# ---------------------------------------------------------------------------

TOKENIZER_FORMAT = "autoresearch-bpe-v1"
CACHE_DIR = Path(os.path.expanduser(os.environ.get("AUTORESEARCH_CACHE") or "~/.cache/autoresearch")) / TASK_NAME
TRAIN_DIR = CACHE_DIR / "train"
TOKENIZER_DIR = CACHE_DIR / "tokenizer"
VAL_DIR = CACHE_DIR / "val"
HOLDOUT_DIR = CACHE_DIR / "holdout"
SPLIT_DIRS = {"train": TRAIN_DIR, "val": VAL_DIR, "holdout": HOLDOUT_DIR}

# ---------------------------------------------------------------------------
# The budget clock and the thread pools (what the harness measures, the run can read)
# ---------------------------------------------------------------------------

BUDGET_CLOCK = os.environ.get("AUTORESEARCH_BUDGET_CLOCK") or "wall"  # "wall" or "cpu", from [budget] clock


def budget_clock() -> Callable[[], float]:
    """A clock in budget seconds: wall time, or on clock = "cpu" the CPU seconds of this run's
    whole process tree (every thread and child), read from the cgroup file the harness counts
    (AUTORESEARCH_CPU_USAGE). Without one (run by hand), this process's and its children's CPU
    time. Time the training steps with it, so the run stops where the harness will charge it."""
    if BUDGET_CLOCK != "cpu":
        return time.perf_counter
    usage = os.environ.get("AUTORESEARCH_CPU_USAGE") or ""

    def cgroup_seconds() -> float:
        text = Path(usage).read_text().strip()  # v2 cpu.stat: "usage_usec N ..."; v1 cpuacct.usage: ns
        return int(text.split()[1]) / 1e6 if text.startswith("usage_usec") else int(text.split()[0]) / 1e9

    try:
        cgroup_seconds()
        return cgroup_seconds
    except (OSError, ValueError, IndexError):
        def own_seconds() -> float:
            t = os.times()
            return t.user + t.system + t.children_user + t.children_system
        return own_seconds


def cpu_threads() -> int:
    """The cores this run may use, as the harness sized them (AUTORESEARCH_CPUS: the slot's cores,
    a CPU quota); a thread pool bigger than that spins on cores the run does not get."""
    given = os.environ.get("AUTORESEARCH_CPUS") or os.environ.get("OMP_NUM_THREADS") or ""
    if given.isdigit() and int(given) > 0:
        return int(given)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def data_url(default: str) -> str:
    """The folder the raw data comes from: AUTORESEARCH_DATA_URL when set, else DEFAULT."""
    return (os.environ.get("AUTORESEARCH_DATA_URL") or default).rstrip("/")


def _fetch_http(url: str, partial: Path, max_bytes: int | None) -> None:
    """Append the missing bytes of URL to PARTIAL, resuming with a Range request."""
    import requests  # only needed for http(s) sources

    have = partial.stat().st_size if partial.exists() else 0
    if max_bytes is not None and have >= max_bytes:
        return
    headers = {}
    if have or max_bytes is not None:
        headers["Range"] = f"bytes={have}-" + ("" if max_bytes is None else str(max_bytes - 1))
    with requests.get(url, headers=headers, stream=True, timeout=(15, 60)) as response:
        if response.status_code == 416 and have:
            return  # nothing left to fetch: the partial file is already whole
        response.raise_for_status()
        if response.status_code != 206:
            have = 0  # the server sent the whole file: start over rather than append
        written = have
        with open(partial, "ab" if have else "wb") as fh:
            for chunk in response.iter_content(chunk_size=1 << 20):
                if max_bytes is not None:
                    chunk = chunk[: max_bytes - written]
                fh.write(chunk)
                written += len(chunk)
                if max_bytes is not None and written >= max_bytes:
                    break


def _copy_local(url: str, partial: Path, max_bytes: int | None) -> None:
    """file:// sources: copy (the first MAX_BYTES of) a local file."""
    source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    with open(source, "rb") as src, open(partial, "wb") as dst:
        if max_bytes is None:
            shutil.copyfileobj(src, dst, 1 << 20)
        else:
            dst.write(src.read(max_bytes))


def download_file(url: str, dest: Path, max_bytes: int | None = None,
                  check: Callable[[Path], None] | None = None) -> bool:
    """Fetch URL to DEST, at most MAX_BYTES of it. True once DEST exists.

    The bytes go to DEST.partial first and are renamed into place only when complete (and,
    when CHECK is given, when CHECK(path) does not raise), so DEST is never half written. A
    failed attempt keeps the partial file and the next one resumes it; CHECK failing discards it.
    """
    if dest.exists():
        return True
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            if url.startswith("file://"):
                _copy_local(url, partial, max_bytes)
            else:
                _fetch_http(url, partial, max_bytes)
            if check is not None:
                try:
                    check(partial)
                except Exception:
                    partial.unlink(missing_ok=True)  # corrupt: resuming it would not help
                    raise
            os.replace(partial, dest)
            print(f"  downloaded {dest.name}", flush=True)
            return True
        except Exception as exc:  # network errors, HTTP errors, bad files: all worth a retry
            print(f"  {dest.name}: attempt {attempt}/{DOWNLOAD_ATTEMPTS} failed: {exc}", flush=True)
            if attempt < DOWNLOAD_ATTEMPTS:
                time.sleep(RETRY_BASE_S * 2 ** (attempt - 1))
    return False


def write_parquet(texts: list[str], dest: Path, row_group_size: int = 1024) -> None:
    """Documents as a one-column ('text') parquet file, written atomically."""
    import pyarrow as pa

    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    pq.write_table(pa.table({"text": texts}), partial, row_group_size=row_group_size)
    os.replace(partial, dest)


def check_parquet(path: Path) -> None:
    """Raise unless PATH is a readable parquet file with a 'text' column."""
    names = pq.ParquetFile(path).schema_arrow.names
    if "text" not in names:
        raise ValueError(f"{path.name} has no 'text' column (columns: {names})")


def parquet_files(split: str) -> list[Path]:
    files = sorted(SPLIT_DIRS[split].glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no {split} data in {SPLIT_DIRS[split]}: run `python prepare.py` first")
    return files


def iter_texts(split: str, max_chars: int, doc_cap: int) -> Iterator[str]:
    """Documents of SPLIT (each cut to DOC_CAP characters) until MAX_CHARS characters in all."""
    total = 0
    for path in parquet_files(split):
        pf = pq.ParquetFile(path)
        for group in range(pf.num_row_groups):
            for text in pf.read_row_group(group, columns=["text"]).column("text").to_pylist():
                text = text[:doc_cap]
                total += len(text)
                yield text
                if total >= max_chars:
                    return


# ---------------------------------------------------------------------------
# Tokenizer: trained with rustbpe, run with tiktoken, stored as JSON
# ---------------------------------------------------------------------------


def write_json(data: dict, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    partial.write_text(json.dumps(data), encoding="utf-8")
    os.replace(partial, dest)


def train_tokenizer(texts: Iterator[str], source: str) -> None:
    """Learn VOCAB_SIZE - 4 BPE tokens from TEXTS; the 4 special tokens take the last ids."""
    import rustbpe

    t0 = time.time()
    bpe = rustbpe.Tokenizer()
    bpe.train_from_iterator(texts, VOCAB_SIZE - len(SPECIAL_TOKENS), pattern=SPLIT_PATTERN)
    ranks = sorted(bpe.get_mergeable_ranks(), key=lambda item: item[1])
    data = {
        "format": TOKENIZER_FORMAT,
        "source": source,
        "pattern": bpe.get_pattern(),
        # one [base64 of the token's bytes, rank] pair per token; the rank is the token id
        "ranks": [[base64.b64encode(bytes(token)).decode("ascii"), rank] for token, rank in ranks],
        "special_tokens": {name: len(ranks) + i for i, name in enumerate(SPECIAL_TOKENS)},
        "bos_token": BOS_TOKEN,
    }
    write_json(data, TOKENIZER_DIR / "tokenizer.json")
    tokenizer = Tokenizer.from_directory()
    sample = "Hello world! Numbers: 12345. Unicode: \u4f60\u597d, caf\u00e9.\n\tdef f(x): return x"
    assert tokenizer.decode(tokenizer.encode(sample)) == sample, "tokenizer round trip failed"
    print(f"tokenizer: {tokenizer.get_vocab_size()} tokens learned in {time.time() - t0:.1f}s", flush=True)


class Tokenizer:
    """A tiktoken Encoding rebuilt from tokenizer.json, plus what bits per byte needs."""

    def __init__(self, enc, bos_token: str, token_lengths: list[int]) -> None:
        self.enc = enc
        self.bos_token_id = enc.encode_single_token(bos_token)
        self.token_lengths = token_lengths  # UTF-8 bytes per token id; 0 for special tokens

    @classmethod
    def from_directory(cls, directory: Path = TOKENIZER_DIR) -> Tokenizer:
        import tiktoken

        path = Path(directory) / "tokenizer.json"
        if not path.exists():
            raise FileNotFoundError(f"no tokenizer at {path}: run `python prepare.py` first")
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != TOKENIZER_FORMAT:
            raise ValueError(f"{path}: unknown format {data.get('format')!r}")
        ranks = {base64.b64decode(token): rank for token, rank in data["ranks"]}
        enc = tiktoken.Encoding(name=f"autoresearch-{TASK_NAME}", pat_str=data["pattern"],
                                mergeable_ranks=ranks, special_tokens=data["special_tokens"])
        lengths = [0] * enc.n_vocab
        for token, rank in ranks.items():
            lengths[rank] = len(token)
        return cls(enc, data["bos_token"], lengths)

    def get_vocab_size(self) -> int:
        return self.enc.n_vocab

    def get_bos_token_id(self) -> int:
        return self.bos_token_id

    def encode(self, text, prepend: int | None = None):
        """Token ids of a string, or a list of id lists for a list of strings (threaded)."""
        if isinstance(text, str):
            ids = self.enc.encode_ordinary(text)
            return ids if prepend is None else [prepend, *ids]
        rows = self.enc.encode_ordinary_batch(list(text), num_threads=os.cpu_count() or 1)
        return rows if prepend is None else [[prepend, *ids] for ids in rows]

    def decode(self, ids: list[int]) -> str:
        return self.enc.decode(ids)

    def token_bytes(self, device="cpu") -> torch.Tensor:
        """Bytes of text per token id (int32); special tokens have 0 and so do not count."""
        import torch

        return torch.tensor(self.token_lengths, dtype=torch.int32, device=device)


# ---------------------------------------------------------------------------
# Dataloader: BOS-aligned rows, documents packed best-fit
# ---------------------------------------------------------------------------


def iter_documents(split: str, batch_docs: int = 128) -> Iterator[tuple[list[str], int]]:
    """Endless (texts, epoch) batches over the split's parquet files, always in the same order."""
    epoch = 1
    while True:
        for path in parquet_files(split):
            pf = pq.ParquetFile(path)
            for group in range(pf.num_row_groups):
                texts = pf.read_row_group(group, columns=["text"]).column("text").to_pylist()
                for i in range(0, len(texts), batch_docs):
                    yield texts[i : i + batch_docs], epoch
        epoch += 1


def packed_rows(tokenizer: Tokenizer, B: int, T: int, split: str, buffer_size: int = 1000) -> Iterator[tuple[np.ndarray, int]]:
    """Endless (rows, epoch): ROWS is a (B, T + 1) int64 array, refilled in place each time.

    Each row holds T + 1 tokens and starts at a document's BOS. A row is filled from a pool of
    BUFFER_SIZE tokenized documents: always the longest document that still fits; when none
    fits, the shortest is cut to fill the row exactly (its rest is dropped). No padding, and
    documents are rarely cut. Rows come out one after another, so the first N rows of a split
    are the same whatever B is. Needs no torch: evaluate.py reads its rows with it.
    """
    documents = iter_documents(split)
    bos = tokenizer.get_bos_token_id()
    lengths: list[int] = []  # sorted, so the best fit is one bisect away
    pool: list[list[int]] = []
    epoch = 1

    def refill() -> None:
        nonlocal epoch
        texts, epoch = next(documents)
        for ids in tokenizer.encode(texts, prepend=bos):
            at = bisect.bisect_right(lengths, len(ids))
            lengths.insert(at, len(ids))
            pool.insert(at, ids)

    rows = np.empty((B, T + 1), dtype=np.int64)
    while True:
        for r in range(B):
            pos = 0
            while pos <= T:
                while len(pool) < buffer_size:
                    refill()
                room = T + 1 - pos
                at = bisect.bisect_right(lengths, room) - 1
                if at >= 0:
                    doc = pool.pop(at)
                else:
                    at = 0
                    doc = pool.pop(0)[:room]
                lengths.pop(at)
                rows[r, pos : pos + len(doc)] = doc
                pos += len(doc)
        yield rows, epoch


def make_dataloader(tokenizer: Tokenizer, B: int, T: int, split: str, device="cpu", buffer_size: int = 1000):
    """Endless (inputs, targets, epoch) with inputs and targets of shape (B, T) on DEVICE: the
    rows of packed_rows, as torch tensors."""
    import torch  # imported here so that `python prepare.py` starts fast

    device = torch.device(device)
    on_cuda = device.type == "cuda"
    if on_cuda:  # two pinned staging buffers, so filling one never races the copy out of the other
        staging = [torch.empty((B, T + 1), dtype=torch.long).pin_memory() for _ in range(2)]
        copied = [None, None]
    turn = 0
    for rows, epoch in packed_rows(tokenizer, B, T, split, buffer_size):
        if on_cuda:
            slot = turn % 2
            if copied[slot] is not None:
                copied[slot].synchronize()
            staging[slot].copy_(torch.from_numpy(rows))
            batch = staging[slot].to(device, non_blocking=True)
            copied[slot] = torch.cuda.Event()
            copied[slot].record()
            turn += 1
        else:
            batch = torch.from_numpy(rows.copy()).to(device)
        yield batch[:, :-1], batch[:, 1:], epoch


# ---------------------------------------------------------------------------
# Data sources: the Python standard library (default), or TinyStories
# ---------------------------------------------------------------------------


def stdlib_split(relative_path: str) -> str:
    """The split a standard-library file belongs to, fixed by a hash of its relative path."""
    bucket = zlib.crc32(relative_path.encode("utf-8")) % 20
    return "val" if bucket == 0 else "holdout" if bucket == 1 else "train"


def cut_at_lines(text: str, limit: int = DOC_CHARS) -> list[str]:
    """TEXT in consecutive pieces of at most LIMIT characters, cut only at line ends."""
    pieces, current, size = [], [], 0
    for line in text.splitlines(keepends=True):
        if current and size + len(line) > limit:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        pieces.append("".join(current))
    return pieces


def build_stdlib() -> dict[str, list[str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    print(f"data: Python {sys.version.split()[0]} standard library at {root}", flush=True)
    splits: dict[str, list[str]] = {"train": [], "val": [], "holdout": []}
    files = {name: 0 for name in splits}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if "site-packages" in relative.split("/") or "__pycache__" in relative:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):  # a few test files are deliberately not UTF-8
            continue
        split = stdlib_split(relative)
        splits[split].extend(cut_at_lines(text))
        files[split] += 1
    print("data: files " + ", ".join(f"{name}={count}" for name, count in files.items()), flush=True)
    return splits


def stories(text: str) -> list[str]:
    return [story.strip() for story in text.split("<|endoftext|>") if story.strip()]


def build_tinystories() -> dict[str, list[str]]:
    raw = CACHE_DIR / "raw"  # outside train/, val/ and holdout/: no sandbox shows it to a run
    base = data_url(DATA_URL)
    print(f"data: TinyStories from {base}", flush=True)
    got_train = download_file(f"{base}/{TINYSTORIES_TRAIN}", raw / TINYSTORIES_TRAIN, max_bytes=TINYSTORIES_TRAIN_BYTES)
    got_valid = download_file(f"{base}/{TINYSTORIES_VALID}", raw / TINYSTORIES_VALID)
    if not (got_train and got_valid):
        sys.exit("data: download failed; run prepare.py again to resume")
    train = stories((raw / TINYSTORIES_TRAIN).read_bytes().decode("utf-8", "replace"))[:-1]  # the last one is cut off
    valid = stories((raw / TINYSTORIES_VALID).read_bytes().decode("utf-8", "replace"))
    return {"train": train, "val": valid[0::2], "holdout": valid[1::2]}


def prepared_source() -> str | None:
    """The data source the cache was built from, or None when it is not complete."""
    path = TOKENIZER_DIR / "tokenizer.json"  # written last, so it marks a finished preparation
    if not path.exists() or not all(any(folder.glob("*.parquet")) for folder in SPLIT_DIRS.values()):
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("source")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild the data and the tokenizer")
    args = parser.parse_args(argv)
    if DATA_SOURCE not in ("stdlib", "tinystories"):
        sys.exit(f"DATA_SOURCE must be 'stdlib' or 'tinystories', got {DATA_SOURCE!r}")
    print(f"cache: {CACHE_DIR}", flush=True)
    if prepared_source() == DATA_SOURCE and not args.force:
        print(f"data and tokenizer: present ({DATA_SOURCE})\nready", flush=True)
        return
    for folder in [*SPLIT_DIRS.values(), TOKENIZER_DIR]:
        shutil.rmtree(folder, ignore_errors=True)
    splits = build_stdlib() if DATA_SOURCE == "stdlib" else build_tinystories()
    for name, docs in splits.items():
        random.Random(SPLIT_SEED).shuffle(docs)
        write_parquet(docs, SPLIT_DIRS[name] / f"{name}_00000.parquet")
        print(f"data: {name}: {len(docs)} documents, {sum(map(len, docs)) / 1e6:.1f}M characters", flush=True)
    train_tokenizer(iter_texts("train", TOKENIZER_MAX_CHARS, TOKENIZER_DOC_CAP), source=DATA_SOURCE)
    print("ready", flush=True)


if __name__ == "__main__":
    main()
