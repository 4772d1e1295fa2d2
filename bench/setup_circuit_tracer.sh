#!/usr/bin/env bash
# Create bench/.venv-ct: an isolated virtual environment with circuit-tracer 0.5.0, the reference
# implementation bench/compare_circuit_tracer.py compares attrgraph against. circuit-tracer pins
# transformers 4.57.x, so it cannot share this project's environment. Idempotent: re-running it
# only installs what is missing.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${BENCH_DIR}/.venv-ct"
PYTHON="${PYTHON:-python3}"

if [[ ! -x "${VENV}/bin/python" ]]; then
    "${PYTHON}" -m venv "${VENV}"
fi

# torch first, on its own, so pip takes the wheel matching this machine (CPU) before circuit-tracer's
# dependency resolution could pick another.
if ! "${VENV}/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    "${VENV}/bin/pip" install "torch==2.13.0"
fi

if ! "${VENV}/bin/python" -c "import circuit_tracer, nnsight, transformer_lens" 2>/dev/null; then
    "${VENV}/bin/pip" install "circuit-tracer==0.5.0" "nnsight<0.7" "transformer-lens<4"
fi

"${VENV}/bin/python" - <<'PY'
import importlib.metadata as md

for name in ("torch", "circuit-tracer", "transformers", "transformer-lens", "nnsight"):
    print(f"{name}=={md.version(name)}")
PY
