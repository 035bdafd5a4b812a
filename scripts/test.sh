#!/usr/bin/env bash
# The test command: install everything, check the house rules (ruff, mypy), then run the whole
# suite (slow tests, the released agent CLIs and the two-node Ray cluster included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy src/autoresearch
.venv/bin/python -m pytest -q "$@"
