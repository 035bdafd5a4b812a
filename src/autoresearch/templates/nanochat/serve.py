"""
The model process of the evaluate phase. Read-only: the agent never edits this file.

    started by the harness (or by evaluate.py, when you run it by hand): never run it yourself

This is the only process of the evaluate phase in which the agent's train.py runs. It imports
train.py (importing it runs no training: train.py trains only under its main guard), rebuilds
GPT(GPTConfig(**config)) from the weights train.py saved, and answers forward requests: the
scorer (evaluate.py, another process that never imports train.py) writes a batch of token rows
into a shared buffer, this process writes the model's logits for them next to it and says so.

What this process cannot do, whatever train.py does to it: see a target (each row's inputs
are all it gets, and the scorer keeps its own copy of every row), see the evaluation data on
disk (under the harness it runs in the run phase's sandbox, where the val and holdout folders
do not exist), reach the scorer's code or numbers (another process, another sandbox), or tell
a causality probe from a row that is scored (probes are real rows too, and a probe and the
row it is compared with never go to the same process). It decides nothing: the loss, the
metric and the checks are computed by the scorer from the logits alone.

Protocol, over the socket whose file descriptor is in $AUTORESEARCH_MODEL_FD (SOCK_SEQPACKET,
one JSON object per message, the scorer's file descriptors passed with SCM_RIGHTS):
    model  -> scorer  {"vocab": V, "device": "cpu"|"cuda", "reads": N}   once the model is loaded
    scorer -> model   {"rows": B, "cols": T, "logits_at": OFFSET, "cuda": ...}  + the buffer's fd
    scorer -> model   {"forward": true}     the inputs are in the buffer (B x T int64 at 0)
    model  -> scorer  {"ok": true, "reads": N} | {"error": "..."}   logits are in place (B x T x V fp32)
and the end of the socket ends the process.
"""

from __future__ import annotations

import base64
import json
import mmap
import os
import pickle
import socket
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # importing train.py must leave no __pycache__ in the task folder

import prepare
import torch


def watch_for_reads(folders: list[Path]) -> list[str]:
    """From now on, refuse (and record) any attempt to open or list a path inside FOLDERS.

    Under the harness the folders are not there at all; this guard is for runs by hand."""
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

    sys.addaudithook(hook)  # an audit hook cannot be removed, not even by train.py
    return seen


def send(sock: socket.socket, message: dict) -> None:
    sock.send(json.dumps(message).encode())


def main() -> None:
    sock = socket.socket(fileno=int(os.environ["AUTORESEARCH_MODEL_FD"]))
    reads = watch_for_reads([prepare.VAL_DIR, prepare.HOLDOUT_DIR])
    import train  # the agent's file: its classes and device helpers, never its training loop

    device = train.detect_device()
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    checkpoint = torch.load(Path(os.environ["AUTORESEARCH_OUT"]) / "model.pt", map_location="cpu", weights_only=True)
    model = train.GPT(train.GPTConfig(**checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    model.to(device).eval()
    vocab = int(model.config.vocab_size)
    send(sock, {"vocab": vocab, "device": device.type, "reads": len(reads)})

    # the buffers: the scorer's, shared with this process (inputs first, then the logits)
    message, fds, _, _ = socket.recv_fds(sock, 1 << 16, 1)
    layout = json.loads(message)
    B, T = layout["rows"], layout["cols"]
    shared = mmap.mmap(fds[0], layout["logits_at"] + B * T * vocab * 4)
    os.close(fds[0])
    inputs = torch.frombuffer(shared, dtype=torch.int64, count=B * T).view(B, T)
    logits_out = None
    if layout.get("cuda") and device.type == "cuda":
        # the scorer's CUDA tensor, shared through CUDA IPC (torch.multiprocessing's reductions):
        # logits never leave the GPU. Where IPC is refused, the shared CPU buffer is used instead.
        try:
            rebuild, args = pickle.loads(base64.b64decode(layout["cuda"]))  # written by the scorer, not by us
            logits_out = rebuild(*args)
        except Exception as exc:  # noqa: BLE001 - any failure means: use the CPU buffer
            print(f"serve: CUDA IPC refused ({exc}); logits go through host memory", flush=True)
    ipc = logits_out is not None
    if logits_out is None:
        logits_out = torch.frombuffer(shared, dtype=torch.float32, offset=layout["logits_at"],
                                      count=B * T * vocab).view(B, T, vocab)
    send(sock, {"ok": True, "ipc": ipc})

    while sock.recv(1 << 16):
        try:
            with torch.no_grad(), train.autocast(device):
                logits = model(inputs.to(device))
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (B, T, vocab):
                raise ValueError(f"model(idx) must return logits of shape {(B, T, vocab)}, "
                                 f"got {getattr(logits, 'shape', type(logits))}")
            logits_out.copy_(logits.float())
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        except Exception as exc:  # noqa: BLE001 - the scorer reports it; this process only answers
            send(sock, {"error": f"{type(exc).__name__}: {exc}"[:2000]})
            continue
        send(sock, {"ok": True, "reads": len(reads)})


if __name__ == "__main__":
    main()
