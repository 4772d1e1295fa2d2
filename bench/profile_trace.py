"""Where trace()'s CPU time goes: torch.profiler over one trace() on the benchmark fixture.

    python bench/make_fixture.py --out bench/out/fixture4096 --d-transcoder 4096   # once
    python bench/profile_trace.py --fixture bench/out/fixture4096 --tokens 64 [--max-feature-nodes N]

Prints the share of self CPU time per op category (matrix products; copies, concatenations and
indexing; elementwise arithmetic; reductions, sorting and selection; the rest) and the top ops.
Self time, so nothing is counted twice (aten::matmul's own time is the glue, its mm/bmm are
matrix products). On a shared machine absolute seconds are noisy; the shares are what to compare.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from attrgraph.engine import TraceSettings, load_model, load_transcoders, trace

MATMUL = {
    "aten::mm",
    "aten::bmm",
    "aten::addmm",
    "aten::addmm_",  # in place: the linear backward accumulates each head into the layer's gradient
    "aten::baddbmm",
    "aten::baddbmm_",
    "aten::addbmm",
    "aten::mv",
    "aten::addmv",
    "aten::dot",
    "aten::vdot",
    "aten::_mkl_linear",
}
COPY = {
    "aten::copy_",
    "aten::cat",
    "aten::_cat",
    "aten::stack",
    "aten::clone",
    "aten::contiguous",
    "aten::_to_copy",
    "aten::to",
    "aten::index",
    "aten::index_put_",
    "aten::_index_put_impl_",
    "aten::index_select",
    "aten::gather",
    "aten::scatter_",
    "aten::scatter",
    "aten::index_add_",
    "aten::masked_select",
    "aten::reshape",
    "aten::_reshape_alias",
    "aten::expand",
    "aten::repeat_interleave",
    "aten::fill_",
    "aten::zero_",
    "aten::zeros",
    "aten::zeros_like",
    "aten::empty",
    "aten::empty_like",
    "aten::empty_strided",
    "aten::new_zeros",
    "aten::full",
    "aten::ones",
}
ELEMENTWISE = {
    "aten::add",
    "aten::add_",
    "aten::sub",
    "aten::sub_",
    "aten::mul",
    "aten::mul_",
    "aten::div",
    "aten::div_",
    "aten::neg",
    "aten::abs",
    "aten::where",
    "aten::gt",
    "aten::ne",
    "aten::eq",
    "aten::bitwise_and",
    "aten::__and__",
    "aten::clamp_min",
    "aten::rsqrt",
    "aten::pow",
    "aten::tanh",
    "aten::masked_fill",
    "aten::sigmoid",
    "aten::relu",
}
REDUCE = {
    "aten::sum",
    "aten::mean",
    "aten::topk",
    "aten::sort",
    "aten::argsort",
    "aten::nonzero",
    "aten::any",
    "aten::max",
    "aten::bincount",
    "aten::cumsum",
    "aten::_softmax",
}
CATEGORIES = [
    ("matrix products", MATMUL),
    ("copy / cat / index / alloc", COPY),
    ("elementwise", ELEMENTWISE),
    ("reductions / sort / select", REDUCE),
]


def category(name: str) -> str:
    for label, names in CATEGORIES:
        if name in names:
            return label
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fixture", type=Path, default=Path(__file__).parent / "out" / "fixture4096")
    parser.add_argument("--tokens", default="64", help="a key of the fixture's prompts.json")
    parser.add_argument("--max-feature-nodes", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=15, help="ops listed by self CPU time")
    parser.add_argument("--json", type=Path, default=None, help="also write the shares here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    prompt = json.loads((args.fixture / "prompts.json").read_text())[args.tokens]
    lm = load_model(str(args.fixture / "model"), device="cpu", dtype=torch.float32)
    tc = load_transcoders(str(args.fixture / "transcoders"), device=lm.device, dtype=lm.dtype)
    settings = TraceSettings(batch_size=args.batch_size, max_feature_nodes=args.max_feature_nodes)
    trace(lm, tc, json.loads((args.fixture / "prompts.json").read_text())["16"], settings=settings)  # warm-up

    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        graph = trace(lm, tc, prompt, settings=settings)
    wall = time.perf_counter() - t0

    by_category: dict[str, float] = defaultdict(float)
    ops: list[tuple[str, float, int]] = []
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue
        self_us = float(event.self_cpu_time_total)
        by_category[category(event.key)] += self_us
        ops.append((event.key, self_us, int(event.count)))
    total = sum(by_category.values()) or 1.0
    print(
        f"{args.tokens} tokens, max_feature_nodes={args.max_feature_nodes}, batch_size={args.batch_size}: "
        f"{graph.n_features} feature nodes, {int(graph.edges.shape[0])} edges; "
        f"{wall:.1f} s wall under the profiler, {total / 1e6:.1f} s self CPU time in aten ops"
    )
    shares = {label: by_category[label] / total for label, _ in CATEGORIES}
    shares["other"] = by_category["other"] / total
    for label, share in shares.items():
        print(f"  {label:<28} {100 * share:5.1f}%")
    print(f"top {args.top} ops by self CPU time:")
    for name, self_us, count in sorted(ops, key=lambda o: -o[1])[: args.top]:
        print(f"  {name:<32} {100 * self_us / total:5.1f}%  {count:>7} calls  ({category(name)})")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "tokens": args.tokens,
                    "max_feature_nodes": args.max_feature_nodes,
                    "batch_size": args.batch_size,
                    "wall_s": wall,
                    "self_cpu_s": total / 1e6,
                    "shares": shares,
                    "top_ops": [
                        {"op": n, "share": s / total, "calls": c}
                        for n, s, c in sorted(ops, key=lambda o: -o[1])[: args.top]
                    ],
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
