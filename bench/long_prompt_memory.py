"""Peak memory of trace() against prompt length at fixed settings (issue 12: long prompts).

    python bench/make_fixture.py --out bench/out/fixture-long --d-transcoder 4096 --n-ctx 4096 \
        --prompt-lengths 16 64 256 512 1024 2048                                     # once
    python bench/long_prompt_memory.py [--fixture bench/out/fixture-long] [--tokens 256 512 1024 2048]

Each length runs in its own process (so its VmHWM, the peak resident set, covers only that trace),
with max_feature_nodes=2048, batch_size=256 and the default pass_memory_mb unless told otherwise.
Prints one line per length: peak RSS, RSS before trace(), the trace's growth above that, wall and
CPU seconds, and the growth ratio against the first length (linear growth: ratio <= tokens ratio).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import json, sys, time
from pathlib import Path
import torch
from attrgraph.engine import TraceSettings, load_model, load_transcoders, trace

def kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1

fixture, key, nodes, batch, pass_mb, threads = sys.argv[1:7]
torch.set_num_threads(int(threads))
prompt = json.loads((Path(fixture) / "prompts.json").read_text())[key]
lm = load_model(str(Path(fixture) / "model"), device="cpu", dtype=torch.float32)
tc = load_transcoders(str(Path(fixture) / "transcoders"), device=lm.device, dtype=lm.dtype)
settings = TraceSettings(
    batch_size=int(batch),
    max_feature_nodes=None if nodes == "all" else int(nodes),
    pass_memory_mb=None if pass_mb == "none" else int(pass_mb),
)
before = kib("VmRSS")
t0, c0 = time.perf_counter(), time.process_time()
graph = trace(lm, tc, prompt, settings=settings)
print(json.dumps({
    "tokens": graph.n_pos, "feature_nodes": graph.n_features, "edges": int(graph.edges.shape[0]),
    "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
    "rss_before_mib": before / 1024, "peak_rss_mib": kib("VmHWM") / 1024,
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fixture", type=Path, default=Path(__file__).parent / "out" / "fixture-long")
    parser.add_argument("--tokens", nargs="+", default=["256", "512", "1024", "2048"])
    parser.add_argument("--max-feature-nodes", default="2048", help="a number, or 'all'")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--pass-memory-mb", default="1024", help="a number, or 'none'")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    results = []
    for key in args.tokens:
        started = time.perf_counter()
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(args.fixture),
                key,
                args.max_feature_nodes,
                str(args.batch_size),
                args.pass_memory_mb,
                str(args.threads),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            print(
                f"{key} tokens: failed (exit {child.returncode}) after {time.perf_counter() - started:.0f} s"
            )
            print(child.stderr[-2000:])
            break
        result = json.loads(child.stdout.strip().splitlines()[-1])
        results.append(result)
        growth = result["peak_rss_mib"] - result["rss_before_mib"]
        first = results[0]
        ratio = growth / max(1e-9, first["peak_rss_mib"] - first["rss_before_mib"])
        print(
            f"{result['tokens']:>5} tokens, {result['feature_nodes']} feature nodes: peak RSS "
            f"{result['peak_rss_mib']:.0f} MiB (before {result['rss_before_mib']:.0f}, growth {growth:.0f}, "
            f"x{ratio:.2f} for x{result['tokens'] / first['tokens']:.0f} tokens); "
            f"{result['wall_s']:.1f} s wall, {result['cpu_s']:.1f} s CPU",
            flush=True,
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"settings": vars(args) | {"fixture": str(args.fixture), "json": None}, "results": results},
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
