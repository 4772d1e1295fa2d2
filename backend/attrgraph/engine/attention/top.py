"""QK attributions for the heads that matter most to a graph (`--qk` at trace time).

Edges that cross positions are ranked by |weight| times their target's weight on the output (its
influence on the logits, or a logit's probability). The strongest ones are split into head loadings
(layer, head, key position); the (layer, head, query position, key position) hops that carry the
most of them, weighted the same way, get a QK attribution each.
"""

from __future__ import annotations

import torch

from attrgraph.engine.attention.results import HeadLoadings, QKAttribution
from attrgraph.engine.attention.tracer import AttentionTracer, ProgressCallback
from attrgraph.engine.graph import Graph
from attrgraph.engine.pruning import node_influence


def node_positions(graph: Graph) -> torch.Tensor:
    """(n_nodes,) the context position of every node."""
    positions = torch.empty(graph.n_nodes, dtype=torch.long)
    positions[: graph.n_features] = graph.features[:, 1]
    errors = torch.arange(graph.n_layers * graph.n_pos)
    positions[graph.error_offset : graph.token_offset] = errors % graph.n_pos
    positions[graph.token_offset : graph.logit_offset] = torch.arange(graph.n_pos)
    positions[graph.logit_offset :] = graph.n_pos - 1
    return positions


def qk_for_top_heads(
    tracer: AttentionTracer,
    graph: Graph,
    *,
    n_edges: int = 16,
    n_heads: int = 4,
    progress: ProgressCallback | None = None,
) -> tuple[list[QKAttribution], list[HeadLoadings]]:
    """QK attributions of the top `n_heads` hops of the `n_edges` strongest cross-position edges."""
    report = progress or (lambda phase, done, total: None)
    positions = node_positions(graph)
    targets, sources = graph.edges[:, 0], graph.edges[:, 1]
    crossing = (positions[targets] != positions[sources]).nonzero(as_tuple=True)[0]
    output_weight = node_influence(graph).float()
    output_weight[graph.logit_offset :] += graph.logit_probabilities()
    strength = graph.weights[crossing].abs() * output_weight[targets[crossing]]
    strongest = crossing[strength.argsort(descending=True)[:n_edges]]
    by_target: dict[int, list[int]] = {}
    for edge in strongest.tolist():
        by_target.setdefault(int(targets[edge]), []).append(edge)
    hops: dict[tuple[int, int, int, int], float] = {}
    loadings: list[HeadLoadings] = []
    report("head_loadings", 0, len(by_target))
    for done, (target, edges) in enumerate(by_target.items(), 1):
        read = tracer.target_of(graph, target)
        keys, parts, row = tracer.loading_matrix(read)
        for edge in edges:
            source = int(sources[edge])
            column = tracer.source_column(graph, source)
            column_parts = parts[:, column]
            for key, part in zip(keys, column_parts.tolist(), strict=True):
                hop = (key[0], key[1], read.pos, key[2])
                hops[hop] = hops.get(hop, 0.0) + abs(part) * float(output_weight[target])
            loadings.append(
                HeadLoadings(
                    source=tracer.sources.node_ids[column],
                    target=read.node_id,
                    weight=float(row[column]),
                    same_position=0.0,  # crossing edges only
                    loadings={k: v for k, v in zip(keys, column_parts.tolist(), strict=True) if v != 0.0},
                )
            )
        report("head_loadings", done, len(by_target))
    chosen = sorted(hops, key=lambda hop: -hops[hop])[:n_heads]
    results: list[QKAttribution] = []
    report("qk", 0, len(chosen))
    for done, (layer, head, query_pos, key_pos) in enumerate(chosen, 1):
        results.append(tracer.qk(layer, head, query_pos, key_pos))
        report("qk", done, len(chosen))
    return results, loadings
