#!/usr/bin/env bash
# The GPU checks of issue 12 in one unattended run (target: under 8 minutes on one GPU):
#   1. install this repository on the machine's own torch (never replaced),
#   2. the exactness checks on CUDA in float32 and bfloat16 (bench/gpu/exactness.py),
#   3. trace time and peak memory at 16, 64, 256 and 1,024 tokens on the benchmark fixture, beside the
#      estimate (bench/gpu/timing.py),
#   4. circuit-tracer on the same fixture where it installs (optional: skipped, and said so, if not).
# Usage: bash bench/gpu/run.sh [OUT_DIR]     (default: $OUT, else bench/gpu/out)
# Exits 2 at once without CUDA; each step has its own time limit; results and logs go to OUT_DIR.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT_DIR="${1:-${OUT:-${ROOT}/bench/gpu/out}}"
PYTHON="${PYTHON:-python3}"
mkdir -p "${OUT_DIR}"
cd "${ROOT}"
exec > >(tee -a "${OUT_DIR}/run.log") 2>&1
started=$(date +%s)
step() { echo "== $(( $(date +%s) - started ))s: $*"; }

step "checking for CUDA"
if ! "${PYTHON}" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "bench/gpu/run.sh: no CUDA device visible to ${PYTHON}'s torch (nvidia-smi: $(command -v nvidia-smi || echo missing)); nothing run" >&2
    exit 2
fi
"${PYTHON}" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv || true

step "installing attrgraph on this machine's torch"
TORCH_VERSION="$("${PYTHON}" -c 'import torch; print(torch.__version__)')"
echo "torch==${TORCH_VERSION}" > "${OUT_DIR}/torch-constraint.txt"
timeout 240 "${PYTHON}" -m pip install -q -c "${OUT_DIR}/torch-constraint.txt" -e ".[dev]" \
    || { echo "install failed" >&2; exit 3; }

status=0
step "exactness on CUDA (float32, bfloat16)"
PYTHONPATH="${ROOT}:${ROOT}/backend" timeout 150 "${PYTHON}" bench/gpu/exactness.py "${OUT_DIR}" || status=1

FIXTURE="${ROOT}/bench/out/fixture-gpu"
step "benchmark fixture"
if [[ ! -f "${FIXTURE}/prompts.json" ]]; then
    timeout 120 "${PYTHON}" bench/make_fixture.py --out "${FIXTURE}" --n-ctx 2048 \
        --prompt-lengths 16 64 256 1024 || status=1
fi

step "trace timing and peak memory vs estimate"
for dtype in float32 bfloat16; do
    PYTHONPATH="${ROOT}/backend" timeout 120 "${PYTHON}" bench/gpu/timing.py "${FIXTURE}" "${OUT_DIR}" \
        --dtype "${dtype}" || status=1
done

step "circuit-tracer (optional)"
# bench/ct_runner.py places circuit-tracer on the CPU (device="cpu" in its loaders): timing it here
# would compare a GPU against a CPU. Until it takes a --device, the comparison is skipped, said so.
if grep -q -- "--device" bench/ct_runner.py; then
    if [[ -x bench/.venv-ct/bin/python ]] || timeout 120 bash bench/setup_circuit_tracer.sh > "${OUT_DIR}/ct-install.log" 2>&1; then
        for n in 16 64 256 1024; do
            timeout 60 bench/.venv-ct/bin/python bench/ct_runner.py --model "${FIXTURE}/model" --device cuda \
                --transcoders "${FIXTURE}/transcoders" --prompt-file "${FIXTURE}/prompts.json" --prompt-key "${n}" \
                --out "${OUT_DIR}/ct_${n}" --max-feature-nodes 2048 --no-adjacency \
                || { echo "circuit-tracer at ${n} tokens failed or timed out"; break; }
        done
    else
        echo "circuit-tracer did not install (see ct-install.log): skipped"
    fi
else
    echo "circuit-tracer: skipped (bench/ct_runner.py has no --device option; it would run on the CPU)"
fi

step "done (status ${status}); results in ${OUT_DIR}"
exit "${status}"
