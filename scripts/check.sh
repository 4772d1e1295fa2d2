#!/usr/bin/env bash
# One script for everything CI checks: lint, format, types, JS lint, tests. Extra arguments go to pytest.
#
#   bash scripts/check.sh                      every check, then the whole (not slow) test suite
#   bash scripts/check.sh -x -q tests/engine   every check, then only these tests
#
# Every step runs even when an earlier one fails; the script lists the failed steps and exits 1 if any
# failed. A missing tool is a failure, never a skip, and so is a pytest run that collects no test
# (pytest's exit code 5). Install what it needs as the README's "Test" section says.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
failed=()

step() {
  local name=$1
  shift
  echo "== $name"
  if ! "$@"; then
    failed+=("$name")
  fi
}

eslint() {
  if [ ! -x frontend/node_modules/.bin/eslint ]; then
    echo "frontend/node_modules is missing eslint: run (cd frontend && npm ci)" >&2
    return 1
  fi
  (cd frontend && npm run --silent lint)
}

step "ruff check" "$PYTHON" -m ruff check backend tests bench
step "ruff format --check" "$PYTHON" -m ruff format --check backend tests bench
step "mypy --strict (backend, tests, bench)" "$PYTHON" -m mypy
step "eslint (frontend)" eslint
step "pytest" "$PYTHON" -m pytest "$@"

if [ ${#failed[@]} -gt 0 ]; then
  printf '== FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "== all checks passed"
