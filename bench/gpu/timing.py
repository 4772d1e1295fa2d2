"""Trace time and peak CUDA memory at 16, 64, 256 and 1,024 tokens on the benchmark fixture, beside
engine/estimate.py's prediction (bench/gpu/run.sh runs this).

    PYTHONPATH=backend python bench/gpu/timing.py FIXTURE_DIR OUT_DIR [--sizes 16 64 256 1024]

Each size: one warm-up trace at 16 tokens first (kernel selection), then trace() timed with CUDA
synchronised, torch.cuda.max_memory_allocated() as the peak (reset before each size). Writes
OUT/timing.jsonl and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from attrgraph.engine import TraceSettings, load_model, load_transcoders, trace
from attrgraph.engine.attribution import tokenize
from attrgraph.engine.estimate import estimate, trace_shape


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("fixture", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256, 1024])
    parser.add_argument("--max-feature-nodes", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("timing: no CUDA device", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    prompts = json.loads((args.fixture / "prompts.json").read_text())
    lm = load_model(str(args.fixture / "model"), device="cuda", dtype=args.dtype)
    tc = load_transcoders(str(args.fixture / "transcoders"), device=lm.device, dtype=lm.dtype)
    settings = TraceSettings(max_feature_nodes=args.max_feature_nodes, batch_size=args.batch_size)
    trace(lm, tc, prompts[str(min(args.sizes))], settings=settings)  # warm-up
    print("tokens | trace s | estimated s | peak MiB | estimated MiB | error")
    with (args.out / f"timing-{args.dtype}.jsonl").open("w") as log:
        for size in args.sizes:
            ids = tokenize(lm.tokenizer, prompts[str(size)])
            predicted = estimate(trace_shape(lm.model, tc, ids[:64]), len(ids), settings)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            graph = trace(lm, tc, ids, settings=settings)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            peak = torch.cuda.max_memory_allocated()
            row = {
                "tokens": len(ids),
                "dtype": args.dtype,
                "device": torch.cuda.get_device_name(),
                "trace_s": seconds,
                "peak_allocated_bytes": peak,
                "estimate_peak_bytes": predicted.peak_bytes,
                "estimate_s": predicted.seconds,
                "n_feature_nodes": int(graph.stats["n_feature_nodes"]),
                "n_edges": int(graph.stats["n_edges"]),
            }
            log.write(json.dumps(row) + "\n")
            print(
                f"{len(ids)} | {seconds:.2f} | {predicted.seconds:.2f} | {peak / 2**20:.0f} | "
                f"{predicted.peak_bytes / 2**20:.0f} | {predicted.peak_bytes / peak - 1:+.0%}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
