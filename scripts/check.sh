#!/usr/bin/env bash
# One script for everything CI checks: lint, types, tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff"
ruff check backend tests bench
echo "== mypy (strict for the engine)"
mypy
echo "== pytest"
python -m pytest -q "$@"
