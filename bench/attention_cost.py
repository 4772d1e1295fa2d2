"""What attention explanations cost (docs/benchmarks.md, "Attention explanations"): one traced graph,
then the recorded pass an AttentionTracer makes, one edge's head loadings (the strongest edge that
crosses positions), one head's QK attribution (that edge's top hop) and `--qk` at trace time
(qk_for_top_heads with its defaults, recorded pass included). One run of each, wall-clock seconds.

    python bench/attention_cost.py                                  # the demo model, Dallas prompt
    python bench/attention_cost.py --model bench/out/fixture-est/model \\
        --transcoders bench/out/fixture-est/transcoders \\
        --prompt-file bench/out/fixture-est/prompts.json --length 64
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from attrgraph.engine import load_model, load_transcoders, trace
from attrgraph.engine.attention import AttentionTracer, qk_for_top_heads
from attrgraph.engine.attention.top import node_positions

DALLAS = "Fact: the capital of the state containing Dallas is"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model")
    parser.add_argument("--transcoders")
    parser.add_argument("--prompt", default=DALLAS)
    parser.add_argument("--prompt-file", type=Path, help="prompts.json of a bench fixture")
    parser.add_argument("--length", default="16", help="which prompt of --prompt-file")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.model is None:
        from attrgraph.bundled import demo_model_dir, demo_transcoders_dir

        args.model, args.transcoders = str(demo_model_dir()), str(demo_transcoders_dir())
    prompt = json.loads(args.prompt_file.read_text())[args.length] if args.prompt_file else args.prompt
    lm = load_model(args.model)
    tc = load_transcoders(args.transcoders, device=lm.device, dtype=lm.dtype)
    seconds: dict[str, float] = {}

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        out = fn()
        seconds[name] = round(time.perf_counter() - started, 3)
        return out

    graph = timed("trace", lambda: trace(lm, tc, prompt))
    bos = lm.tokenizer.bos_token_id
    tracer = timed("recorded pass", lambda: AttentionTracer.for_graph(lm.model, tc, graph, bos_token_id=bos))
    positions = node_positions(graph)
    targets, sources = graph.edges[:, 0], graph.edges[:, 1]
    crossing = (positions[targets] != positions[sources]).nonzero(as_tuple=True)[0]
    edge = int(crossing[graph.weights[crossing].abs().argmax()])
    loadings = timed(
        "edge head loadings", lambda: tracer.head_loadings(graph, int(targets[edge]), int(sources[edge]))
    )
    (layer, head, key_pos), _ = max(loadings.loadings.items(), key=lambda kv: abs(kv[1]))
    query_pos = tracer.target_of(graph, int(targets[edge])).pos
    timed("head QK", lambda: tracer.qk(layer, head, query_pos, key_pos))
    timed(
        "--qk (recorded pass + top heads)",
        lambda: qk_for_top_heads(AttentionTracer.for_graph(lm.model, tc, graph, bos_token_id=bos), graph),
    )
    print(json.dumps({"model": args.model, "tokens": graph.n_pos, "features": graph.n_features, **seconds}))


if __name__ == "__main__":
    main()
