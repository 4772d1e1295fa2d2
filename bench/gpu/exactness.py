"""The engine's exactness checks on CUDA, in float32 and bfloat16 (bench/gpu/run.sh runs this).

For every family of the tiny test models x every transcoder kind: the replacement model reproduces
the logits, every target's completeness (edges + bias + unexplored = value) holds, as
tests/engine/test_attribution.py checks on CPU, and the trace used the linear backward. float32
must meet the CPU tests' tolerance (1e-4); bfloat16 is reported, with a loose bound (its rounding is
8 bits of mantissa). Writes one JSON line per case to OUT/exactness.jsonl and exits 1 if a float32
case fails.

    PYTHONPATH=.:backend python bench/gpu/exactness.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from tests.support.checks import completeness_errors
from tests.support.models import FAMILIES, PROMPTS
from tests.support.transcoders import TRANSCODER_KINDS, random_transcoders, tiny_lm

from attrgraph.engine import TraceSettings, trace
from attrgraph.engine.replacement import ReplacementModel

TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 5e-2}


def main() -> int:
    if not torch.cuda.is_available():
        print("exactness: no CUDA device", file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="attrgraph-gpu-"))
    failed = 0
    with (out / "exactness.jsonl").open("w") as log:
        for dtype in (torch.float32, torch.bfloat16):
            for family in FAMILIES:
                lm = tiny_lm(family, root, dtype)
                lm.model.to("cuda")
                cfg = lm.model.config
                for kind in TRANSCODER_KINDS:
                    started = time.perf_counter()
                    tc = random_transcoders(
                        kind, n_layers=cfg.num_hidden_layers, d_model=cfg.hidden_size, seed=7, dtype=dtype
                    ).to("cuda")
                    ids = torch.tensor(lm.tokenizer(PROMPTS[0])["input_ids"], device="cuda")
                    original = lm.model(input_ids=ids[None]).logits[0].float()
                    rm = ReplacementModel(lm.model, tc)
                    cache = rm.run(ids, exclude_positions=1)
                    logits_error = float((rm.replacement_logits(cache) - original).abs().max())
                    graph = trace(
                        lm, tc, PROMPTS[2], settings=TraceSettings(max_edges_per_target=None, batch_size=32)
                    )
                    completeness = float(completeness_errors(graph).max())
                    # On CUDA too the written-out backward must agree with autograd and be the one used
                    # (a fallback would hide a device or dtype problem in engine/linear_backward.py).
                    backward = str(graph.stats.get("backward"))
                    ok = max(logits_error, completeness) <= TOLERANCE[dtype] and backward == "linear"
                    failed += int(not ok and dtype == torch.float32)
                    row = {
                        "dtype": str(dtype).removeprefix("torch."),
                        "family": family,
                        "kind": kind,
                        "logits_max_abs_error": logits_error,
                        "completeness_max_rel_error": completeness,
                        "backward": backward,
                        "ok": ok,
                        "seconds": round(time.perf_counter() - started, 3),
                    }
                    log.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)
                lm.model.to("cpu")
    print(f"exactness: {failed} float32 case(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
