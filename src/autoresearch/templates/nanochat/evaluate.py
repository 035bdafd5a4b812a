"""
The evaluate phase: the number that counts. Read-only: the agent never edits this file.

    python evaluate.py     (with AUTORESEARCH_OUT pointing at the folder train.py saved model.pt in)

Rebuilds the model from train.py (importing it runs no training: train.py trains only under its
main guard), loads the weights train.py saved, and scores the model's logits with the loss code
below, over a fixed number of tokens in fixed rows, whatever batch size train.py used:

    val_bpb:      bits per byte on the validation split (the metric)
    holdout_bpb:  bits per byte on the holdout split, which no decision is ever based on

Bits per byte: the summed cross-entropy of every target token, in bits, over the UTF-8 bytes
those tokens stand for, so tokenizers of any vocabulary compare. BOS targets (0 bytes) count
for neither sum.

Before scoring, two checks; a model that fails one gets `reject: <reason>` and no val_bpb:
  - causality: the logits at position t must not change when the tokens after t change
    (probed at several positions);
  - the evaluation data is read here, before train.py is imported; if the model code then
    opens files or folders of the val or holdout splits itself, the model is rejected.

The same file serves the nanochat and tinylm templates; the numbers it uses (MAX_SEQ_LEN,
EVAL_TOKENS, HOLDOUT_TOKENS, EVAL_BATCH_SIZE) come from prepare.py.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # importing train.py must leave no __pycache__ in the task folder

import prepare
import torch
import torch.nn.functional as F

CAUSALITY_TOLERANCE = 5e-3  # relative to the largest logit: far above bf16 rounding noise, far below a leak


def log(message: str) -> None:
    print(message, flush=True)


def eval_rows(tokenizer: prepare.Tokenizer, split: str, num_tokens: int) -> torch.Tensor:
    """The first num_tokens / MAX_SEQ_LEN packed rows of SPLIT, each MAX_SEQ_LEN + 1 tokens long."""
    n_rows = max(1, num_tokens // prepare.MAX_SEQ_LEN)
    batch = min(n_rows, prepare.EVAL_BATCH_SIZE)
    loader = prepare.make_dataloader(tokenizer, batch, prepare.MAX_SEQ_LEN, split)
    parts, have = [], 0
    while have < n_rows:
        inputs, targets, _ = next(loader)
        parts.append(torch.cat([inputs, targets[:, -1:]], dim=1))
        have += inputs.size(0)
    return torch.cat(parts)[:n_rows].to(torch.int32)


def watch_for_reads(folders: list[Path]) -> list[str]:
    """From now on, record any attempt to open or list a path inside FOLDERS (and refuse it)."""
    roots = [os.path.realpath(f) for f in folders]
    seen: list[str] = []

    def hook(event: str, args: tuple) -> None:
        if event not in ("open", "os.listdir", "os.scandir") or not args or args[0] is None:
            return
        if isinstance(args[0], int):  # an already open file descriptor
            return
        try:
            path = os.path.realpath(os.fsdecode(args[0]))
        except (TypeError, ValueError):
            return
        if any(path == root or path.startswith(root + os.sep) for root in roots):
            seen.append(path)
            raise PermissionError(f"evaluation data is off limits to the model: {path}")

    sys.addaudithook(hook)
    return seen


def load_model(out_dir: Path, vocab_size: int, device: torch.device, train):
    checkpoint = torch.load(out_dir / "model.pt", map_location="cpu", weights_only=True)
    model = train.GPT(train.GPTConfig(**checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    model.to(device).eval()
    if model.config.vocab_size < vocab_size:
        raise ValueError(f"the model has {model.config.vocab_size} output tokens, the tokenizer {vocab_size}")
    return model


def logits_of(model, rows: torch.Tensor, precision) -> torch.Tensor:
    with torch.no_grad(), precision():
        logits = model(rows)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or logits.shape[:2] != rows.shape:
        raise ValueError(f"model(idx) must return logits of shape (B, T, vocab), got {getattr(logits, 'shape', type(logits))}")
    return logits.float()


def is_causal(model, row: torch.Tensor, vocab_size: int, precision) -> bool:
    """Whether the logits up to position t stay put when every token after t is replaced."""
    T = row.numel()
    positions = sorted({0, T // 8, T // 2, T - 2})
    generator = torch.Generator().manual_seed(1234)
    batch = [row]
    for t in positions:
        changed = row.clone()
        changed[t + 1 :] = torch.randint(0, vocab_size, (T - t - 1,), generator=generator).to(row.device)
        batch.append(changed)
    logits = logits_of(model, torch.stack(batch), precision)
    tolerance = CAUSALITY_TOLERANCE * (1.0 + logits[0].abs().max().item())
    for i, t in enumerate(positions, start=1):
        drift = (logits[i, : t + 1] - logits[0, : t + 1]).abs().max().item()
        if not drift <= tolerance:
            log(f"causality: logits at positions <= {t} moved by {drift:.3g} when later tokens changed")
            return False
    return True


def bits_per_byte(model, rows: torch.Tensor, token_bytes: torch.Tensor, device: torch.device, precision) -> float:
    """Bits per byte of ROWS (inputs rows[:, :-1], targets rows[:, 1:]), computed from the logits."""
    total_nats, total_bytes = 0.0, 0
    for start in range(0, rows.size(0), prepare.EVAL_BATCH_SIZE):
        batch = rows[start : start + prepare.EVAL_BATCH_SIZE].to(device=device, dtype=torch.long)
        inputs, targets = batch[:, :-1], batch[:, 1:]
        logits = logits_of(model, inputs, precision)
        if not torch.isfinite(logits).all():
            raise ValueError("the model produced non-finite logits")
        nats = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
        nbytes = token_bytes[targets.reshape(-1)]
        total_nats += (nats * (nbytes > 0)).sum().item()
        total_bytes += nbytes.sum().item()
    return total_nats / (math.log(2) * total_bytes)


def score(out_dir: Path, tokenizer: prepare.Tokenizer, val_rows: torch.Tensor, holdout_rows: torch.Tensor):
    """(val_bpb, holdout_bpb) of the saved model, or None when it is not causal."""
    import train  # the agent's file: its classes and device helpers, never its training loop

    device = train.detect_device()
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    precision = lambda: train.autocast(device)
    vocab_size = tokenizer.get_vocab_size()
    model = load_model(out_dir, vocab_size, device, train)
    if not is_causal(model, val_rows[0, :-1].to(device=device, dtype=torch.long), vocab_size, precision):
        return None
    token_bytes = tokenizer.token_bytes(device)
    return (bits_per_byte(model, val_rows, token_bytes, device, precision),
            bits_per_byte(model, holdout_rows, token_bytes, device, precision))


def main() -> None:
    t0 = time.time()
    out = os.environ.get("AUTORESEARCH_OUT")
    if not out or not (Path(out) / "model.pt").exists():
        sys.exit("evaluate.py: no model: AUTORESEARCH_OUT must name the folder where train.py saved model.pt")
    torch.manual_seed(int(os.environ.get("AUTORESEARCH_SEED") or 0))
    tokenizer = prepare.Tokenizer.from_directory()
    # all evaluation data is read now; from here on the model code may not touch it
    val_rows = eval_rows(tokenizer, "val", prepare.EVAL_TOKENS)
    holdout_rows = eval_rows(tokenizer, "holdout", prepare.HOLDOUT_TOKENS)
    log(f"eval rows: val={tuple(val_rows.shape)} holdout={tuple(holdout_rows.shape)} ({time.time() - t0:.1f}s)")
    reads = watch_for_reads([prepare.VAL_DIR, prepare.HOLDOUT_DIR])
    try:
        scores = score(Path(out), tokenizer, val_rows, holdout_rows)
    except PermissionError:
        if not reads:
            raise
    if reads:
        log(f"the model code tried to read evaluation data: {reads[0]}")
        print("reject: reads-eval-data", flush=True)
        return
    if scores is None:
        print("reject: non-causal", flush=True)
        return
    print("---")
    print(f"val_bpb:          {scores[0]:.6f}")
    print(f"holdout_bpb:      {scores[1]:.6f}")
    print(f"eval_tokens:      {val_rows.size(0) * prepare.MAX_SEQ_LEN}")
    print(f"eval_seconds:     {time.time() - t0:.1f}", flush=True)


if __name__ == "__main__":
    main()
