#!/usr/bin/env bash
# Install autoresearch with everything its tests and templates use into ./.venv.
# System packages (Debian/Ubuntu, as root): bubblewrap for the run sandbox, chromium for the
# report's browser test. Both are optional at run time; without them the sandbox is off and
# the browser test is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  need=""
  command -v bwrap >/dev/null 2>&1 || need="$need bubblewrap"
  command -v chromium >/dev/null 2>&1 || need="$need chromium"
  if [ -n "$need" ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
  fi
fi
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned so pip takes the CPU build; with a GPU, install your CUDA build of torch first.
.venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}" -e ".[all,dev]"
