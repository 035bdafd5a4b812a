#!/usr/bin/env bash
# The nanochat baseline on one NVIDIA GPU with no network: setup, run, evaluate, exactly as the
# harness runs them, on local data. Prints steps, tokens/s, MFU, peak memory and val_bpb.
#
#   bash benchmarks/gpu_nanochat.sh [BUDGET_SECONDS]      (default 60; run from anywhere)
#
# What it does:
#   1. checks the Python (PYTHON, default python3) has CUDA torch, pyarrow, tiktoken, rustbpe;
#      with WHEELS=<folder> it first installs the wheels found there, offline (rustbpe is often
#      missing on GPU images; fetch it on a machine with a network with
#        pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#          --platform manylinux_2_17_x86_64 -d <folder> rustbpe==0.1.0
#      matching the GPU machine's Python version);
#   2. writes parquet shards in the ClimbMix layout from this Python's standard library source
#      (shard_00000, shard_00001 train, shard_06541 holdout, shard_06542 validation);
#   3. copies the nanochat template and runs its setup with AUTORESEARCH_DATA_URL=file://...,
#      the baseline train.py with AUTORESEARCH_BUDGET_S=BUDGET, then evaluate.py: the scorer and
#      its two serve.py model processes (logits through CUDA IPC), then evaluate.py again over
#      a train.py that leaks the next token, which must be rejected (non-causal).
# Everything lands in a fresh temporary folder; logs are also copied to $OUT when it is set.
# The template itself is untouched: the real constants (2048-token context, 8192-token
# vocabulary, DEPTH 8, batch 2**19, 40 x 524288 evaluation tokens) are what gets measured.
set -euo pipefail

BUDGET="${1:-60}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
WORK="$(mktemp -d /tmp/gpu-nanochat.XXXXXX)"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 AUTORESEARCH_CACHE="$WORK/cache"
echo "work folder: $WORK"

if [ -n "${WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" "$WHEELS"/*.whl
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi

"$PY" - <<'EOF'
import importlib.util, sys
missing = [m for m in ("torch", "numpy", "pyarrow", "tiktoken", "rustbpe") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing Python packages: {', '.join(missing)} (see WHEELS in this script's header)")
import torch
if not torch.cuda.is_available():
    sys.exit("no CUDA GPU visible to torch")
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, GPU {torch.cuda.get_device_name()}, "
      f"capability {torch.cuda.get_device_capability()}, triton {importlib.util.find_spec('triton') is not None}, "
      f"kernels {importlib.util.find_spec('kernels') is not None}")
EOF

# 2. local shards: the standard library's .py files cut into documents of at most 4000 characters
"$PY" - "$WORK/hub" <<'EOF'
import os, random, sys, sysconfig
from pathlib import Path
import pyarrow as pa, pyarrow.parquet as pq
root = Path(sysconfig.get_paths()["stdlib"])
docs = []
for path in sorted(root.rglob("*.py")):
    if "site-packages" in path.parts:
        continue
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        continue
    docs.extend(text[i:i + 4000] for i in range(0, len(text), 4000))
random.Random(0).shuffle(docs)
n = len(docs)
parts = {0: docs[: int(0.45 * n)], 1: docs[int(0.45 * n): int(0.9 * n)], 6541: docs[int(0.9 * n): int(0.95 * n)], 6542: docs[int(0.95 * n):]}
out = Path(sys.argv[1]); out.mkdir(parents=True)
for index, part in parts.items():
    pq.write_table(pa.table({"text": part}), out / f"shard_{index:05d}.parquet", row_group_size=1024)
print(f"shards: {n} documents, {sum(map(len, docs)) / 1e6:.1f}M characters")
EOF

cp -r "$ROOT/src/autoresearch/templates/nanochat" "$WORK/task"
cd "$WORK/task"

t0=$(date +%s)
AUTORESEARCH_DATA_URL="file://$WORK/hub" "$PY" prepare.py --num-shards 2 > "$WORK/setup.log" 2>&1 || { cat "$WORK/setup.log"; exit 1; }
t1=$(date +%s)
tail -n 3 "$WORK/setup.log"
AUTORESEARCH_BUDGET_S="$BUDGET" AUTORESEARCH_OUT="$WORK/out" AUTORESEARCH_PHASE=run AUTORESEARCH_SEED=0 \
  "$PY" train.py > "$WORK/run.log" 2>&1 || { tail -n 60 "$WORK/run.log"; exit 1; }
t2=$(date +%s)
AUTORESEARCH_OUT="$WORK/out" AUTORESEARCH_PHASE=evaluate AUTORESEARCH_SEED=0 \
  "$PY" evaluate.py > "$WORK/eval.log" 2>&1 || { tail -n 60 "$WORK/eval.log"; exit 1; }
t3=$(date +%s)
# The split evaluate phase on CUDA: evaluate.py (the scorer) never imports train.py; its two
# serve.py model processes write logits into the scorer's CUDA tensor through CUDA IPC ("logits
# via cuda-ipc" in eval.log; "shared-memory" means IPC was refused and logits went through the
# host). The same weights under a train.py that leaks the next token must be rejected.
cp train.py "$WORK/train.honest.py"
cat >> train.py <<'EOF'
_honest_forward = GPT.forward
def _leaky_forward(self, idx, targets=None, reduction="mean"):
    logits = _honest_forward(self, idx, targets, reduction)
    if targets is not None:
        return logits
    following = torch.roll(idx, -1, dims=1).unsqueeze(-1)
    return logits.scatter_add(2, following, torch.full(following.shape, 30.0, dtype=logits.dtype, device=logits.device))
GPT.forward = _leaky_forward
EOF
AUTORESEARCH_OUT="$WORK/out" AUTORESEARCH_PHASE=evaluate "$PY" evaluate.py > "$WORK/eval-leaky.log" 2>&1 || true
cp "$WORK/train.honest.py" train.py
t4=$(date +%s)

if [ -n "${OUT:-}" ]; then cp "$WORK"/setup.log "$WORK"/run.log "$WORK"/eval.log "$WORK"/eval-leaky.log "$OUT"/; fi

echo "== run (first lines, then every 25th step) =="
grep -v '^step ' "$WORK/run.log" | sed -n '1,/^---$/p' | head -n 8
grep '^step ' "$WORK/run.log" | awk 'NR <= 12 || NR % 25 == 0'
echo "== summary =="
sed -n '/^---$/,$p' "$WORK/run.log" | grep -v '^---$'
sed -n '/^---$/,$p' "$WORK/eval.log" | grep -v '^---$'
grep -h '^reject:' "$WORK/eval.log" || true
grep -h '^logits via' "$WORK/eval.log" || echo "logits via: (no line: see eval.log)"
echo "leaky model:      $(grep -h '^reject:' "$WORK/eval-leaky.log" || echo 'NOT REJECTED (see eval-leaky.log)')"
echo "setup_wall_s:     $((t1 - t0))"
echo "run_wall_s:       $((t2 - t1))"
echo "evaluate_wall_s:  $((t3 - t2))"
echo "leaky_eval_wall_s: $((t4 - t3))"
echo "reference (karpathy/autoresearch, one H100, 300 s, ClimbMix, FA3): val_bpb 0.9979, 953 steps, MFU 39.8%, 45 GB peak, 50.3M params"
