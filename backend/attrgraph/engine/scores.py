"""Replacement and completeness scores of a graph, or of a pinned subgraph (circuit-tracer 0.5's
`compute_graph_scores`, on the sparse edge list)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import Tensor

from attrgraph.engine.graph import Graph
from attrgraph.engine.influence import (
    Propagator,
    logit_weight_vector,
    normalized_abs_weights,
    row_sums,
    targets_sources,
)


class GraphScores(NamedTuple):
    replacement_score: float
    completeness_score: float


def _scores(
    graph: Graph, normalized: Tensor, targets: Tensor, sources: Tensor, error_like: Tensor
) -> GraphScores:
    logit_weights = logit_weight_vector(graph, None)
    influence = Propagator(graph)(normalized, logit_weights)
    token_influence = float(influence[graph.token_offset : graph.logit_offset].sum())
    error_influence = float(influence[error_like].sum())
    denominator = token_influence + error_influence
    replacement = token_influence / denominator if denominator > 0 else float("nan")

    from_errors = torch.where(error_like[sources], normalized, torch.zeros_like(normalized))
    non_error_fractions = 1.0 - row_sums(from_errors, targets, graph.n_nodes)
    output_influence = influence + logit_weights
    total = float(output_influence.sum())
    completeness = (
        float((non_error_fractions * output_influence).sum()) / total if total > 0 else float("nan")
    )
    return GraphScores(replacement, completeness)


def graph_scores(graph: Graph) -> GraphScores:
    """(replacement_score, completeness_score), as circuit-tracer's compute_graph_scores.

    replacement: share of the influence reaching tokens and errors that reaches tokens (error-free paths).
    completeness: influence-weighted (influence + logit weight) mean over all nodes of the share of each
    node's input that does not come from error nodes. NaN where a denominator is 0.
    """
    targets, sources = targets_sources(graph)
    error_like = torch.zeros(graph.n_nodes, dtype=torch.bool)
    error_like[graph.error_offset : graph.token_offset] = True
    return _scores(graph, normalized_abs_weights(graph), targets, sources, error_like)


def _node_indices(graph: Graph, nodes: Iterable[str | int] | Tensor) -> Tensor:
    if isinstance(nodes, Tensor):
        indices = nodes.detach().to(torch.long).reshape(-1)
    else:
        items = list(nodes)
        lookup: dict[str, int] | None = None
        resolved: list[int] = []
        for item in items:
            if isinstance(item, str):
                if lookup is None:
                    lookup = {graph.node_id(i): i for i in range(graph.n_nodes)}
                if item not in lookup:
                    raise ValueError(f"unknown node id {item!r}")
                resolved.append(lookup[item])
            else:
                resolved.append(int(item))
        indices = torch.tensor(resolved, dtype=torch.long)
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= graph.n_nodes):
        raise ValueError(f"node index out of range [0, {graph.n_nodes})")
    return indices


def subgraph_scores(graph: Graph, nodes: Iterable[str | int] | Tensor) -> GraphScores:
    """Replacement and completeness scores of a pinned subgraph.

    Definition: the subgraph S is the given nodes plus every token and logit. Every feature outside S
    counts as error-like, like the error nodes (which stay error-like even when pinned: they are
    unexplained by definition). Rows of nodes outside S are removed (they become pure sources, as errors
    are), but every row keeps its full normalisation, so input from outside S is a share of the whole
    input. Then the circuit-tracer formulas apply with "error" read as "error-like":

    replacement = influence reaching tokens / influence reaching tokens or error-like nodes, where
    influence only flows back through S;
    completeness = influence-weighted mean of the share of each node's input from non-error-like nodes.

    With S = every feature this equals `graph_scores(graph)`.
    `nodes` are node ids (`graph.node_id`) or node indices.
    """
    indices = _node_indices(graph, nodes)
    in_subgraph = torch.zeros(graph.n_nodes, dtype=torch.bool)
    in_subgraph[indices] = True
    in_subgraph[graph.token_offset :] = True
    error_like = ~in_subgraph
    error_like[graph.error_offset : graph.token_offset] = True

    targets, sources = targets_sources(graph)
    normalized = normalized_abs_weights(graph)
    normalized = torch.where(in_subgraph[targets], normalized, torch.zeros_like(normalized))
    return _scores(graph, normalized, targets, sources, error_like)
