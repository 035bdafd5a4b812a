"""
The evaluate phase's scorer: the number that counts. Read-only: the agent never edits this file.

    python evaluate.py     (with AUTORESEARCH_OUT pointing at the folder train.py saved model.pt in)

This process computes the metric and never imports train.py, nor anything that imports it: the
agent's code runs in two separate model processes (serve.py), each of which loads the saved
weights and answers "here are B rows of tokens, write their logits into the shared buffer".
Nothing train.py does at import time, to torch, to builtins or to its own process, can reach
the loss code below, the evaluation rows or the checks. Under the harness the model processes
run in the run phase's sandbox (no evaluation data on disk, no network, nothing writable but
a private /tmp) and this one in the evaluate sandbox; the harness hands each side one end of a
socket per model process ($AUTORESEARCH_MODEL_FDS here). Run by hand, this file starts the
two model processes itself, without a sandbox.

    val_bpb:      bits per byte on the validation split (the metric)
    holdout_bpb:  bits per byte on the holdout split, which no decision is ever based on

Bits per byte: the summed cross-entropy of every target token, in bits, over the UTF-8 bytes
those tokens stand for, so tokenizers of any vocabulary compare. BOS targets (0 bytes) count
for neither sum. The rows are fixed (the first EVAL_TOKENS / MAX_SEQ_LEN packed rows of val,
HOLDOUT_TOKENS / MAX_SEQ_LEN of holdout); the model sees each row's inputs only, and the
targets never leave this process.

The causality check, hidden in the request stream. A few scored rows are picked at random
(from a secret drawn here, which no model process ever sees) as probe bases; for each, a probe
row keeps the base's tokens up to a random position t and takes the rest from another real
row. Base and probe go to DIFFERENT model processes, each mixed among scored rows in batches
of the same shape, in random order; a causal model gives both the same logits at positions
<= t. A model that is not (a leak of the next token, at any batch size, call count or place
in the stream) is rejected: `reject: non-causal`, and no val_bpb. State kept across calls
does not help: the two rows of a pair are never in one process, so no process can ever see
that a row has a twin, or whether a row it scores will be compared with anything.

The same file serves the nanochat and tinylm templates; the numbers it uses (MAX_SEQ_LEN,
EVAL_TOKENS, HOLDOUT_TOKENS, EVAL_BATCH_SIZE) come from prepare.py.
"""

from __future__ import annotations

import base64
import json
import mmap
import os
import pickle
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import prepare

CAUSALITY_TOLERANCE = 5e-3  # relative to the largest logit: far above bf16 rounding noise, far below a leak
MIN_PROBES = 8  # probe rows per evaluation, at least; more when they fill the last batch (free)
MODEL_PROCESSES = 2  # a probe and its base always go to different ones
MAX_VOCAB = 1 << 20  # a model claiming more output tokens is refused before any buffer is sized by it
SERVE = Path(__file__).resolve().with_name("serve.py")


def log(message: str) -> None:
    print(message, flush=True)


def fail(message: str) -> None:
    sys.exit(f"evaluate.py: {message}")


# ---------------------------------------------------------------------------
# The evaluation rows and the secret plan of the request stream
# ---------------------------------------------------------------------------


def eval_rows(tokenizer: prepare.Tokenizer, split: str, num_tokens: int) -> np.ndarray:
    """The first num_tokens / MAX_SEQ_LEN packed rows of SPLIT, each MAX_SEQ_LEN + 1 tokens long."""
    n_rows = max(1, num_tokens // prepare.MAX_SEQ_LEN)
    batch = min(n_rows, prepare.EVAL_BATCH_SIZE)
    parts, have = [], 0
    for rows, _ in prepare.packed_rows(tokenizer, batch, prepare.MAX_SEQ_LEN, split):
        parts.append(rows.copy())
        have += batch
        if have >= n_rows:
            break
    return np.concatenate(parts)[:n_rows]


def plan_stream(n_scored: int, rows: np.ndarray, rng: random.Random):
    """The probes and what each model process is sent, drawn from RNG (the secret).

    Returns (rows with the probe rows appended, probes as (base, probe, cut) triples, one list
    of row indices per model process, each a whole number of EVAL_BATCH_SIZE batches)."""
    B, T = prepare.EVAL_BATCH_SIZE, rows.shape[1] - 1
    n_batches = max(MODEL_PROCESSES, -(-(n_scored + MIN_PROBES) // B))
    n_probes = n_batches * B - n_scored  # the probes fill the last batch: no padding, no row a model could tell apart
    sizes = [(n_batches // MODEL_PROCESSES + (i < n_batches % MODEL_PROCESSES)) * B for i in range(MODEL_PROCESSES)]
    # each process gets its share of the scored rows, then probes of bases held by the others
    order = list(range(n_scored))
    rng.shuffle(order)
    probes_in = [n_probes // MODEL_PROCESSES + (i < n_probes % MODEL_PROCESSES) for i in range(MODEL_PROCESSES)]
    owned, start = [], 0
    for i in range(MODEL_PROCESSES):
        take = sizes[i] - probes_in[i]
        if take < 1:
            fail(f"{n_scored} evaluation rows are too few for {n_probes} causality probes (raise EVAL_TOKENS)")
        owned.append(order[start : start + take])
        start += take
    streams = [list(rows_of) for rows_of in owned]
    probe_rows, probes = [], []
    for i in range(MODEL_PROCESSES):
        donors = [r for j, rows_of in enumerate(owned) if j != i for r in rows_of]
        if len(donors) < probes_in[i]:
            fail(f"{n_scored} evaluation rows are too few for {n_probes} causality probes (raise EVAL_TOKENS)")
        for base in rng.sample(donors, probes_in[i]):
            cut = rng.randrange(0, T - 1)  # the probe keeps tokens 0..cut of the base
            other = rng.choice([r for r in range(n_scored) if r != base])
            row = rows[base].copy()
            row[cut + 1 :] = rows[other, cut + 1 :]
            if row[cut + 1] == rows[base, cut + 1]:  # the same next token: make them differ right after the cut
                row[cut + 1] = (row[cut + 1] + 1) % max(2, int(rows.max()) + 1)
            probes.append((base, n_scored + len(probe_rows), cut))
            streams[i].append(n_scored + len(probe_rows))
            probe_rows.append(row)
    for stream in streams:
        rng.shuffle(stream)
    return np.concatenate([rows, np.stack(probe_rows)]), probes, streams


# ---------------------------------------------------------------------------
# The model processes: started by the harness (sandboxed) or, by hand, here
# ---------------------------------------------------------------------------


class Model:
    """One model process, seen from here: a socket and the shared buffer it writes logits into."""

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock, self.index = sock, index

    def receive(self) -> dict:
        data = self.sock.recv(1 << 16)
        if not data:
            fail(f"model process {self.index} ended (see its log)")
        try:
            message = json.loads(data)  # plain JSON: nothing a model process sends is ever unpickled
        except ValueError:
            fail(f"model process {self.index} sent something that is not JSON")
        if not isinstance(message, dict):
            fail(f"model process {self.index} sent something that is not a JSON object")
        if message.get("error"):
            fail(f"the model failed: {str(message['error'])[:2000]}")
        return message

    def share(self, rows: int, cols: int, vocab: int, cuda_logits) -> None:
        """A fresh buffer for this process alone: inputs (rows x cols int64), then its logits."""
        self.rows, self.cols, self.vocab = rows, cols, vocab
        at = -(-rows * cols * 8 // mmap.PAGESIZE) * mmap.PAGESIZE
        fd = os.memfd_create(f"autoresearch-eval-{self.index}")
        os.ftruncate(fd, at + rows * cols * vocab * 4)
        self.buffer = mmap.mmap(fd, at + rows * cols * vocab * 4)
        self.inputs = np.frombuffer(self.buffer, dtype=np.int64, count=rows * cols).reshape(rows, cols)
        self.logits = np.frombuffer(self.buffer, dtype=np.float32, offset=at).reshape(rows, cols, vocab)
        self.cuda_logits = cuda_logits
        layout = {"rows": rows, "cols": cols, "logits_at": at}
        if cuda_logits is not None:
            from torch.multiprocessing.reductions import reduce_tensor

            layout["cuda"] = base64.b64encode(pickle.dumps(reduce_tensor(cuda_logits))).decode("ascii")
        socket.send_fds(self.sock, [json.dumps(layout).encode()], [fd])
        os.close(fd)
        if not self.receive().get("ipc"):
            self.cuda_logits = None

    def forward(self, batch: np.ndarray):
        """The model's logits for BATCH (inputs only): a copy taken once, so nothing the model
        process writes into the buffer afterwards changes what is scored."""
        self.inputs[:] = batch
        self.sock.send(b'{"forward": true}')
        reply = self.receive()
        if reply.get("reads"):
            return None
        if self.cuda_logits is not None:
            return self.cuda_logits.clone()
        return np.array(self.logits)


def start_models() -> tuple[list[Model], list[subprocess.Popen]]:
    """Sockets to the model processes: the harness's ($AUTORESEARCH_MODEL_FDS), or, run by
    hand, processes started here (serve.py, no sandbox) whose output is relayed with a prefix
    (so no line of theirs reads as a metric)."""
    given = os.environ.get("AUTORESEARCH_MODEL_FDS")
    if given:
        fds = [int(fd) for fd in given.split(",")]
        if len(fds) != MODEL_PROCESSES:
            fail(f"AUTORESEARCH_MODEL_FDS names {len(fds)} model processes, this scorer needs {MODEL_PROCESSES}")
        return [Model(socket.socket(fileno=fd), i) for i, fd in enumerate(fds)], []
    models, procs = [], []
    for i in range(MODEL_PROCESSES):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {**os.environ, "AUTORESEARCH_MODEL_FD": str(theirs.fileno()), "AUTORESEARCH_PHASE": "model"}
        proc = subprocess.Popen([sys.executable, str(SERVE)], cwd=SERVE.parent, env=env, pass_fds=[theirs.fileno()],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        theirs.close()

        def relay(stream=proc.stdout, index=i) -> None:
            for line in stream:
                print(f"[model {index}] {line.rstrip()}", flush=True)

        threading.Thread(target=relay, daemon=True).start()
        models.append(Model(mine, i))
        procs.append(proc)
    return models, procs


# ---------------------------------------------------------------------------
# The loss, in nats per target token (numpy on a CPU, torch when the logits live on a GPU)
# ---------------------------------------------------------------------------


def nats_of(logits, targets: np.ndarray) -> np.ndarray:
    """Cross-entropy of each target under LOGITS (rows x T x vocab), float64, shape (rows, T)."""
    if not isinstance(logits, np.ndarray):  # a torch tensor on the GPU
        import torch
        import torch.nn.functional as F

        flat = logits.reshape(-1, logits.size(-1))
        index = torch.from_numpy(targets.reshape(-1)).to(logits.device)
        return F.cross_entropy(flat, index, reduction="none").double().cpu().numpy().reshape(targets.shape)
    top = logits.max(axis=-1, keepdims=True)
    shifted = logits - top
    total = np.exp(shifted, out=shifted).sum(axis=-1, dtype=np.float64)  # one temporary, not two
    picked = np.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return np.log(total) + top[..., 0] - picked


def finite(logits) -> bool:
    return bool(np.isfinite(logits).all()) if isinstance(logits, np.ndarray) else bool(logits.isfinite().all())


def as_numpy(logits) -> np.ndarray:
    """A copy of LOGITS on the CPU (a copy, so a kept slice does not keep its whole batch alive)."""
    return logits.copy() if isinstance(logits, np.ndarray) else logits.float().cpu().numpy()


# ---------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------


def score(models: list[Model], rows: np.ndarray, n_val: int, n_scored: int, token_bytes: np.ndarray, rng: random.Random):
    """(val_bpb, holdout_bpb), or a rejection reason."""
    rows, probes, streams = plan_stream(n_scored, rows, rng)
    B = prepare.EVAL_BATCH_SIZE
    partner = {}  # row index -> (its pair's key, cut)
    for key, (base, probe, cut) in enumerate(probes):
        partner[base] = partner[probe] = (key, cut)
    seen: dict[int, np.ndarray] = {}  # pair key -> logits[:cut + 1] of the first row of the pair answered
    nats, nbytes = np.zeros(2), np.zeros(2)
    # one process's whole stream, then the next's (in a random order): on a CPU, an idle
    # process's thread pool spins for a while after its work and would slow the other one down
    schedule = [(i, start) for i in rng.sample(range(MODEL_PROCESSES), MODEL_PROCESSES)
                for start in range(0, len(streams[i]), B)]
    for i, start in schedule:
        index = streams[i][start : start + B]
        batch = rows[index]
        logits = models[i].forward(batch[:, :-1])
        if logits is None:
            return "reads-eval-data"
        if not finite(logits):
            fail("the model produced non-finite logits")
        targets = batch[:, 1:]
        row_nats = nats_of(logits, targets)
        row_bytes = token_bytes[targets]
        for k, r in enumerate(index):
            if r < n_scored:
                split = 0 if r < n_val else 1
                nats[split] += float(row_nats[k][row_bytes[k] > 0].sum())
                nbytes[split] += float(row_bytes[k].sum())
            if r not in partner:
                continue
            key, cut = partner[r]
            mine = as_numpy(logits[k, : cut + 1])
            if key not in seen:
                seen[key] = mine
                continue
            other = seen.pop(key)
            drift = float(np.abs(mine - other).max())
            if not drift <= CAUSALITY_TOLERANCE * (1.0 + float(np.abs(other).max())):
                log(f"causality: logits at positions <= {cut} moved by {drift:.3g} when later tokens changed")
                return "non-causal"
    if seen:
        fail("a probe was never answered")  # cannot happen: every row of every stream is sent
    return tuple(float(n / (np.log(2) * b)) for n, b in zip(nats, nbytes))


def main() -> None:
    t0 = time.time()
    out = os.environ.get("AUTORESEARCH_OUT")
    if not out or not (Path(out) / "model.pt").exists():
        fail("no model: AUTORESEARCH_OUT must name the folder where train.py saved model.pt")
    # The secret: where the probes go and which rows they copy. From the OS, never from the
    # run's seed (the model processes see $AUTORESEARCH_SEED).
    rng = random.Random(os.urandom(32))
    models, procs = start_models()  # they load the model while the rows are read
    tokenizer = prepare.Tokenizer.from_directory()
    val = eval_rows(tokenizer, "val", prepare.EVAL_TOKENS)
    holdout = eval_rows(tokenizer, "holdout", prepare.HOLDOUT_TOKENS)
    log(f"eval rows: val={val.shape} holdout={holdout.shape} ({time.time() - t0:.1f}s)")
    token_bytes = np.array(tokenizer.token_lengths, dtype=np.int64)
    hellos = [model.receive() for model in models]
    if any(hello.get("reads") for hello in hellos):
        result = "reads-eval-data"
    else:
        vocabs = {int(hello.get("vocab") or 0) for hello in hellos}
        vocab = vocabs.pop() if len(vocabs) == 1 else 0
        if not tokenizer.get_vocab_size() <= vocab <= MAX_VOCAB:
            fail(f"the model has {vocab} output tokens, the tokenizer {tokenizer.get_vocab_size()}")
        on_gpu = all(hello.get("device") == "cuda" for hello in hellos)
        for model in models:
            model.share(prepare.EVAL_BATCH_SIZE, prepare.MAX_SEQ_LEN, vocab, cuda_buffer(vocab) if on_gpu else None)
        via = "cuda-ipc" if all(model.cuda_logits is not None for model in models) else "shared-memory"
        log(f"logits via {via} from {MODEL_PROCESSES} model processes ({time.time() - t0:.1f}s)")
        rows = np.concatenate([val, holdout])
        result = score(models, rows, len(val), len(rows), token_bytes, rng)
    for model in models:
        model.sock.close()  # the end of its socket ends a model process
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    if result == "reads-eval-data":
        log("the model code tried to read evaluation data")
    if isinstance(result, str):
        print(f"reject: {result}", flush=True)
        return
    print("---")
    print(f"val_bpb:          {result[0]:.6f}")
    print(f"holdout_bpb:      {result[1]:.6f}")
    print(f"eval_tokens:      {val.shape[0] * prepare.MAX_SEQ_LEN}")
    print(f"eval_seconds:     {time.time() - t0:.1f}", flush=True)


def cuda_buffer(vocab: int):
    """The logits buffer on the GPU, shared with a model process through CUDA IPC (no copy)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.empty((prepare.EVAL_BATCH_SIZE, prepare.MAX_SEQ_LEN, vocab), dtype=torch.float32, device="cuda")


if __name__ == "__main__":
    main()
