#!/usr/bin/env bash
# Refresh requirements/dev.txt, the pinned development and test environment (.ci/run and the README's
# test command install with it as a constraints file). Run it deliberately, after changing the
# dependencies in pyproject.toml or requirements/dev.in, or to take newer releases:
#
#   bash scripts/lock.sh              keep the current pins where they still fit, add/drop what changed
#   bash scripts/lock.sh --upgrade    re-resolve everything to the newest allowed releases
#   bash scripts/lock.sh -P NAME      upgrade one package (--upgrade-package)
#
# then run the tests (bash scripts/check.sh) in a fresh virtual environment and commit the diff.
# pip-compile resolves with the same pip (and pip configuration) that installs, so torch==2.13.0 is
# the CPU build there, not the CUDA wheels; the file carries no hashes because a local CPU build's hash
# differs from PyPI's.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP_TOOLS_VERSION=7.6.2
tools=${LOCK_VENV:-${TMPDIR:-/tmp}/attrgraph-lock-venv}
if [ ! -x "$tools/bin/pip-compile" ] || ! "$tools/bin/pip-compile" --version | grep -q "$PIP_TOOLS_VERSION"; then
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install -q "pip-tools==$PIP_TOOLS_VERSION"
fi
CUSTOM_COMPILE_COMMAND="bash scripts/lock.sh" "$tools/bin/pip-compile" --quiet --extra dev --strip-extras --no-emit-index-url --no-emit-find-links \
  --output-file requirements/dev.txt "$@" pyproject.toml requirements/dev.in
# pip records the CPU build's local version (torch==2.13.0+cpu); the pin must hold for PyPI's name too.
sed -i -E 's/^torch==([0-9.]+)\+[a-z0-9]+$/torch==\1/' requirements/dev.txt
echo "requirements/dev.txt: $(grep -c '^[a-zA-Z]' requirements/dev.txt) pinned packages"
