#!/usr/bin/env bash
# The test command: install everything, check the house rules (ruff, mypy, the import layers,
# the docs build), then run the whole suite (slow tests, the released agent CLIs and the
# two-node Ray cluster included). The fast tier alone: .venv/bin/python -m pytest -m "not slow".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy src/autoresearch
.venv/bin/lint-imports
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
.venv/bin/python -m pytest -q "$@"
