#!/usr/bin/env bash
# The test command: install everything, check the house rules (ruff, mypy, the import layers,
# the docs build), then run the whole suite (slow tests, the released agent CLIs and the
# two-node Ray cluster included). The fast tier alone: .venv/bin/python -m pytest -n 2 -m "not slow".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy src/autoresearch
.venv/bin/lint-imports
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
# Two workers, a test file each at a time: most tests wait on subprocesses, git and sockets
# rather than the CPU, so two halve the wall time on 2 cores. The tests that measure the machine
# itself (marked serial: an A/A test of real timings, the quickstart's pace, four slots at once)
# would read the other worker as noise, so they run alone afterwards.
# Exit 5 is "no test selected": allowed only where arguments narrowed the run (a path may hold
# no serial test), never in the full run, where it would mean a suite that tests nothing.
narrowed=$#
pytest_part() {
  local rc=0
  .venv/bin/python -m pytest -q "$@" || rc=$?
  [ "$rc" = 0 ] || { [ "$rc" = 5 ] && [ "$narrowed" -gt 0 ]; } || exit "$rc"
}
pytest_part -n 2 --dist loadfile -m "not serial" "$@"
pytest_part -m serial "$@"
