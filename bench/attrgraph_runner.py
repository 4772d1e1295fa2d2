"""Run attrgraph's engine on one prompt and save its attribution graph (this project's environment).

    python bench/attrgraph_runner.py --model DIR --transcoders DIR --prompt-file F --prompt-key 16 \
        --out bench/out/ag_16 [--max-feature-nodes N]

Writes
    OUT.edges.npz   targets, sources (int64 node indices), weights (float32): the sparse edges
    OUT.meta.json   node ids (interop form, from Graph.node_id), activations, logit targets, timing of
                    trace() only (model and transcoder loading excluded), memory
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from attrgraph.engine import TraceSettings, load_model, load_transcoders, trace


def proc_status_kib(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM, ...) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--transcoders", type=Path, required=True)
    parser.add_argument("--prompt-file", type=Path, required=True, help="JSON {key: prompt}")
    parser.add_argument("--prompt-key", required=True)
    parser.add_argument("--out", type=Path, required=True, help="output prefix")
    parser.add_argument("--max-n-logits", type=int, default=10)
    parser.add_argument("--desired-logit-prob", type=float, default=0.95)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-feature-nodes", type=int, default=None)
    parser.add_argument(
        "--max-edges-per-target", type=int, default=-1, help="-1: the engine's default; 0: keep all"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-edges", action="store_true", help="time only; do not save the edges")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    prompt: str = json.loads(args.prompt_file.read_text())[args.prompt_key]

    t0 = time.perf_counter()
    lm = load_model(str(args.model), device="cpu", dtype=torch.float32)
    tc = load_transcoders(str(args.transcoders), device=lm.device, dtype=lm.dtype)
    load_s = time.perf_counter() - t0

    extra = {}
    if args.max_edges_per_target >= 0:
        extra["max_edges_per_target"] = args.max_edges_per_target or None
    settings = TraceSettings(
        max_n_logits=args.max_n_logits,
        desired_logit_prob=args.desired_logit_prob,
        batch_size=args.batch_size,
        max_feature_nodes=args.max_feature_nodes,
        **extra,  # type: ignore[arg-type]
    )

    rss_before_kib = proc_status_kib("VmRSS")
    t0, cpu0 = time.perf_counter(), time.process_time()
    graph = trace(lm, tc, prompt, settings=settings)
    trace_s = time.perf_counter() - t0
    trace_cpu_s = time.process_time() - cpu0
    hwm_kib = proc_status_kib("VmHWM")
    print(
        f"[attrgraph] {graph.n_pos} tokens; trace(): {trace_s:.2f} s ({trace_cpu_s:.2f} s CPU), "
        f"{graph.n_features} of {graph.stats.get('n_active_features', '?')} active features, "
        f"{graph.n_logits} logits, {int(graph.edges.shape[0])} edges, peak RSS {hwm_kib / 1024:.0f} MiB"
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.no_edges:
        np.savez(
            f"{args.out}.edges.npz",
            targets=graph.edges[:, 0].numpy(),
            sources=graph.edges[:, 1].numpy(),
            weights=graph.weights.numpy(),
        )
    meta = {
        "tool": "attrgraph",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dtype": "float32",
        "python": platform.python_version(),
        "prompt_key": args.prompt_key,
        "token_ids": graph.token_ids,
        "n_layers": graph.n_layers,
        "settings": {k: v for k, v in graph.settings.items() if isinstance(v, int | float | str | None)},
        "n_active_features": graph.stats.get("n_active_features"),
        "n_selected_features": graph.n_features,
        "node_ids": [graph.node_id(i) for i in range(graph.n_nodes)],
        "activations": graph.activations.tolist(),
        "logit_targets": [
            {"token_id": t.token_id, "token": t.token, "probability": t.probability}
            for t in graph.logit_targets
        ],
        "n_edges": int(graph.edges.shape[0]),
        "attribute_seconds": trace_s,
        "attribute_cpu_seconds": trace_cpu_s,
        "load_seconds": load_s,
        "rss_before_attribute_mib": rss_before_kib / 1024,
        "peak_rss_mib": hwm_kib / 1024,
        "stats": {k: v for k, v in graph.stats.items() if isinstance(v, int | float | str)},
    }
    Path(f"{args.out}.meta.json").write_text(json.dumps(meta))


if __name__ == "__main__":
    main()
