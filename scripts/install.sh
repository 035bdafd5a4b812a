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

# The released coding-agent CLIs that tests/test_agents_real.py drives (versions pinned in
# tests/agent_versions.toml; AUTORESEARCH_AGENT_VERSIONS="codex=0.172.0" tries another). They go
# to ~/.cache/autoresearch-agents/<cli>-<version>/ (AUTORESEARCH_AGENTS_DIR), outside the repo,
# each in its own folder (aider in its own venv), installed once and reused. Without npm or a
# reachable registry this step warns and those tests skip; AUTORESEARCH_SKIP_AGENTS=1 skips it.
install_agents() {
  .venv/bin/python tests/agent_pins.py | while read -r cli registry spec folder; do
    if [ -e "$folder/.installed" ]; then continue; fi
    rm -rf "$folder" && mkdir -p "$folder"
    if [ "$registry" = npm ]; then
      if ! command -v npm >/dev/null 2>&1; then echo "install.sh: npm not found; skipping $spec" >&2; continue; fi
      npm install --prefix "$folder" --no-audit --no-fund --loglevel=error "$spec" >/dev/null \
        || { echo "install.sh: could not install $spec (tests for $cli will skip)" >&2; continue; }
    else
      { "$PYTHON" -m venv "$folder/venv" && "$folder/venv/bin/python" -m pip install -q "$spec" >/dev/null; } \
        || { echo "install.sh: could not install $spec (tests for $cli will skip)" >&2; continue; }
    fi
    touch "$folder/.installed"
  done
}
[ "${AUTORESEARCH_SKIP_AGENTS:-0}" = 1 ] || install_agents
