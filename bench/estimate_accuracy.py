"""How close engine/estimate.py's prediction is to a real trace's peak memory and time.

Each size runs in its own child process (a fresh peak): load the model and transcoders, measure the
feature density on the prompt's first 64 tokens (as `attrgraph trace --estimate` does), estimate,
then trace and prune, and read the process's peak resident set (VmHWM in /proc/self/status) and the
wall time. The parent prints a table (and with --markdown, the rows for docs/benchmarks.md).

    python bench/make_fixture.py --out bench/out/fixture-est --n-ctx 2048 \
        --prompt-lengths 16 64 256 512 1024 2048
    python bench/estimate_accuracy.py --fixture bench/out/fixture-est --sizes 16 64 256 512

CPU only (peak RSS is what it measures); --threads sets torch's threads in each child.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(args: argparse.Namespace) -> None:
    import torch

    from attrgraph.engine import TraceSettings, load_model, load_transcoders, prune, trace
    from attrgraph.engine.attribution import tokenize
    from attrgraph.engine.estimate import estimate, trace_shape

    torch.set_num_threads(args.threads)
    prompt = json.loads((args.fixture / "prompts.json").read_text())[str(args.size)]
    lm = load_model(str(args.fixture / "model"), device="cpu", dtype="float32")
    tc = load_transcoders(str(args.fixture / "transcoders"), device=lm.device, dtype=lm.dtype)
    ids = tokenize(lm.tokenizer, prompt)
    settings = TraceSettings(
        max_feature_nodes=args.max_feature_nodes, batch_size=args.batch_size, max_n_logits=args.max_n_logits
    )
    shape = trace_shape(lm.model, tc, ids[:64])
    predicted = estimate(shape, len(ids), settings)
    rss_before = _status_kib("VmRSS")
    started = time.perf_counter()
    graph = trace(lm, tc, ids, settings=settings)
    trace_s = time.perf_counter() - started
    trace_hwm = _status_kib("VmHWM")
    prune(graph)
    total_s = time.perf_counter() - started
    print(
        json.dumps(
            {
                "tokens": len(ids),
                "rss_before_bytes": rss_before * 1024,
                "peak_trace_bytes": trace_hwm * 1024,
                "peak_bytes": _status_kib("VmHWM") * 1024,
                "trace_s": trace_s,
                "total_s": total_s,
                "n_edges": int(graph.stats["n_edges"]),
                "n_feature_nodes": int(graph.stats["n_feature_nodes"]),
                "active_per_token": shape.active_per_token,
                "estimate": {
                    "peak_bytes": predicted.peak_bytes,
                    "seconds": predicted.seconds,
                    "n_edges": predicted.n_edges,
                    "dominant": predicted.dominant_memory,
                    "dominant_time": predicted.dominant_time,
                    "memory_terms": predicted.memory_terms,
                },
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fixture", type=Path, default=Path(__file__).parent / "out" / "fixture-est")
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256, 512])
    parser.add_argument("--max-feature-nodes", type=int, default=1024)
    parser.add_argument("--max-n-logits", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="append each size's JSON line to this file")
    parser.add_argument("--markdown", action="store_true", help="print the docs table rows")
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.size is not None:
        child(args)
        return
    prompts = json.loads((args.fixture / "prompts.json").read_text())
    missing = [n for n in args.sizes if str(n) not in prompts]
    if missing:
        sys.exit(
            f"{args.fixture}/prompts.json has no prompt of {missing} tokens: rebuild it with --prompt-lengths"
        )
    print(f"# {platform.machine()}, {platform.python_version()}, fixture {args.fixture}")
    print(
        "tokens | measured peak MiB | estimated MiB | error | trace s | estimated s "
        "| edges measured / estimated | dominant"
    )
    rows = []
    for size in args.sizes:
        argv = [sys.executable, __file__, "--size", str(size), "--fixture", str(args.fixture)]
        argv += ["--max-feature-nodes", str(args.max_feature_nodes), "--batch-size", str(args.batch_size)]
        argv += ["--max-n-logits", str(args.max_n_logits), "--threads", str(args.threads)]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"size {size} failed:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(result)
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(result) + "\n")
        est = result["estimate"]
        error = est["peak_bytes"] / result["peak_bytes"] - 1
        print(
            f"{result['tokens']} | {result['peak_bytes'] / 2**20:.0f} | {est['peak_bytes'] / 2**20:.0f} | "
            f"{error:+.0%} | {result['trace_s']:.1f} | {est['seconds']:.1f} | "
            f"{result['n_edges']} / {est['n_edges']} | {est['dominant']}, {est['dominant_time']}",
            flush=True,
        )
    if args.markdown:
        print("\n| tokens | measured peak RSS | estimate | error | trace() s | estimate s |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            est = r["estimate"]
            measured, predicted = r["peak_bytes"], est["peak_bytes"]
            print(
                f"| {r['tokens']} | {measured / 2**20:.0f} MiB | {predicted / 2**20:.0f} MiB | "
                f"{predicted / measured - 1:+.0%} | {r['trace_s']:.1f} | {est['seconds']:.1f} |"
            )


if __name__ == "__main__":
    main()
