"""Pruning: keep the nodes and edges that carry most of the influence on the logits (circuit-tracer
0.5's `prune_graph`, on the sparse edge list), and cut a graph down to them.

Influence itself is in influence.py and the graph scores in scores.py; their public names are
re-exported here, where callers have always found them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attrgraph.engine.graph import Graph
from attrgraph.engine.influence import (
    CLAMP_MIN,
    DTYPE,
    Propagator,
    cumulative_influence,
    logit_weight_vector,
    node_influence,
    normalized_abs_weights,
    row_denominators,
    row_sums,
    stated_totals,
    targets_sources,
)
from attrgraph.engine.scores import GraphScores, graph_scores, subgraph_scores

__all__ = [
    "GraphScores",
    "PruneResult",
    "cumulative_influence",
    "graph_scores",
    "node_influence",
    "normalized_abs_weights",
    "prune",
    "pruned_graph",
    "subgraph_scores",
]


@dataclass
class PruneResult:
    """What `prune` decided.

    node_mask            (n_nodes,) bool: nodes kept
    edge_mask            (n_edges,) bool: edges kept (aligned with `Graph.edges`); both ends always kept
    cumulative_influence (n_nodes,) float: cumulative-influence fraction of each node in descending
                         influence order, the value the viewer's pruning slider uses (lower = more important)
    node_influence       (n_nodes,) float: each node's influence on the logits (`node_influence`)
    node_threshold, edge_threshold: the settings used
    """

    node_mask: Tensor
    edge_mask: Tensor
    cumulative_influence: Tensor
    node_influence: Tensor | None = None
    node_threshold: float = 0.8
    edge_threshold: float = 0.98

    @property
    def n_nodes_kept(self) -> int:
        return int(self.node_mask.sum())

    @property
    def n_edges_kept(self) -> int:
        return int(self.edge_mask.sum())


def _find_threshold(scores: Tensor, threshold: float, *, implicit_zeros: bool = False) -> float:
    """circuit-tracer's find_threshold: the score at which the sorted cumulative share reaches threshold.

    One deliberate difference: the cumulative share is divided by its own last entry, so it ends at
    exactly 1.0 and threshold 1.0 always lands on the smallest positive score (circuit-tracer divides
    by a separately summed total, so at 1.0 its answer depends on rounding).

    With implicit_zeros, `scores` are the stored entries of a larger vector whose other entries are 0
    (the edge scores of a dense matrix): a search that runs past the stored scores lands on a 0 there.
    Otherwise it is clamped to the last score, as circuit-tracer does.
    """
    if scores.numel() == 0:
        return 0.0
    sorted_scores = torch.sort(scores, descending=True).values
    cumulative = torch.cumsum(sorted_scores, dim=0)
    total = cumulative[-1]
    if not bool(total > 0):
        return 0.0
    cumulative = cumulative / total
    index = int(torch.searchsorted(cumulative, torch.tensor([threshold], dtype=cumulative.dtype)).item())
    if index >= sorted_scores.numel():
        if implicit_zeros:
            return 0.0
        index = sorted_scores.numel() - 1
    return float(sorted_scores[index])


def _check_threshold(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0.0 and 1.0, got {value}")


# -- pruning --------------------------------------------------------------------------------------


def prune(graph: Graph, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> PruneResult:
    """Keep the nodes and edges carrying most of the influence on the logits (circuit-tracer 0.5 rules).

    1. Nodes: keep those whose influence is at least the value at which the descending cumulative
       influence reaches node_threshold; tokens and logits always stay.
    2. Edges: on the matrix with pruned nodes' rows and columns removed (rows renormalised over what
       remains, plus any input the graph never stored), score = normalised weight x (influence of the
       target row on that pruned matrix + the target's logit weight); keep edges scoring at least the
       value at which the cumulative edge score reaches edge_threshold.
    3. Repeatedly drop feature and error nodes with no kept outgoing edge and feature nodes with no kept
       incoming edge (and their edges) until nothing changes.

    Cumulative shares are divided by their own last entry, so threshold 1.0 deterministically keeps
    every positive score (circuit-tracer's answer at exactly 1.0 depends on rounding). If every edge
    score is 0 the threshold value is 0: circuit-tracer's dense mask then marks every entry kept, making
    step 3 a no-op, and so does this (every edge between kept nodes stays).

    Our graphs normalise rows by `row_abs_totals`, which include edges from active features that did
    not become nodes; circuit-tracer's rows hold only node sources. Influence and masks therefore match
    circuit-tracer exactly when every active feature is a node and no row was capped.
    """
    _check_threshold("node_threshold", node_threshold)
    _check_threshold("edge_threshold", edge_threshold)

    n_nodes = graph.n_nodes
    n_features = graph.n_features
    token_offset = graph.token_offset
    targets, sources = targets_sources(graph)
    abs_weights = graph.weights.detach().to(DTYPE).abs()
    denominators, residual = row_denominators(graph, abs_weights, targets)
    logit_weights = logit_weight_vector(graph, None)
    propagate = Propagator(graph)

    influence = propagate(abs_weights / denominators[targets], logit_weights)
    node_mask = influence >= _find_threshold(influence, node_threshold)
    node_mask[token_offset:] = True

    alive = node_mask[targets] & node_mask[sources]
    pruned_abs = torch.where(alive, abs_weights, torch.zeros_like(abs_weights))
    pruned_denominators = (row_sums(pruned_abs, targets, n_nodes) + residual).clamp(min=CLAMP_MIN)
    pruned_normalized = pruned_abs / pruned_denominators[targets]
    pruned_influence = propagate(pruned_normalized, logit_weights)
    edge_scores = pruned_normalized * (pruned_influence + logit_weights)[targets]

    edge_threshold_value = _find_threshold(edge_scores, edge_threshold, implicit_zeros=True)
    if edge_threshold_value <= 0.0:
        edge_mask = alive
    else:
        edge_mask = edge_scores >= edge_threshold_value
        while True:
            edge_mask &= node_mask[targets] & node_mask[sources]
            has_out = torch.zeros(n_nodes, dtype=torch.bool)
            has_out[sources[edge_mask]] = True
            has_in = torch.zeros(n_nodes, dtype=torch.bool)
            has_in[targets[edge_mask]] = True
            new_mask = node_mask.clone()
            new_mask[:token_offset] &= has_out[:token_offset]
            new_mask[:n_features] &= has_in[:n_features]
            if torch.equal(new_mask, node_mask):
                break
            node_mask = new_mask

    return PruneResult(
        node_mask=node_mask,
        edge_mask=edge_mask.clone(),
        cumulative_influence=cumulative_influence(influence),
        node_influence=influence,
        node_threshold=float(node_threshold),
        edge_threshold=float(edge_threshold),
    )


def pruned_graph(graph: Graph, result: PruneResult) -> Graph:
    """A new Graph holding only the kept feature nodes and kept edges.

    Features are re-indexed (order preserved); the error block stays complete (n_layers * n_pos,
    layer-major) as the Graph layout requires, but only kept edges remain. Per-node arrays follow the
    nodes. The weight of dropped incoming edges moves into `unexplored`, so edges + bias + unexplored
    still equals each target's value, and `row_abs_totals` keeps the full rows, so influence on the
    pruned graph is still measured against each node's whole input.
    """
    n_nodes = graph.n_nodes
    if result.node_mask.numel() != n_nodes or result.edge_mask.numel() != graph.edges.shape[0]:
        raise ValueError("prune result does not match this graph (mask sizes differ)")
    n_features = graph.n_features
    keep_feature = result.node_mask[:n_features].to(torch.bool)
    keep_node = torch.ones(n_nodes, dtype=torch.bool)
    keep_node[:n_features] = keep_feature
    new_index = torch.full((n_nodes,), -1, dtype=torch.long)
    new_index[keep_node] = torch.arange(int(keep_node.sum()), dtype=torch.long)

    targets, sources = targets_sources(graph)
    edge_mask = result.edge_mask.to(torch.bool) & keep_node[targets] & keep_node[sources]
    weights32 = graph.weights.detach().to(torch.float32)

    dropped = row_sums(
        torch.where(edge_mask, torch.zeros_like(weights32), weights32).to(DTYPE), targets, n_nodes
    )
    abs_weights = weights32.to(DTYPE).abs()
    full_totals = torch.maximum(stated_totals(graph), row_sums(abs_weights, targets, n_nodes))
    unexplored = graph.unexplored.detach().to(DTYPE) + dropped

    new_edges = torch.stack([new_index[targets[edge_mask]], new_index[sources[edge_mask]]], dim=1)
    stats = dict(graph.stats)
    stats["pruning"] = {
        "node_threshold": result.node_threshold,
        "edge_threshold": result.edge_threshold,
        "n_features_before": n_features,
        "n_edges_before": int(graph.edges.shape[0]),
    }
    return Graph(
        prompt=graph.prompt,
        token_ids=list(graph.token_ids),
        tokens=list(graph.tokens),
        n_layers=graph.n_layers,
        model_id=graph.model_id,
        transcoder_id=graph.transcoder_id,
        features=graph.features[keep_feature].clone(),
        activations=graph.activations[keep_feature].clone(),
        logit_targets=list(graph.logit_targets),
        edges=new_edges.reshape(-1, 2),
        weights=weights32[edge_mask].clone(),
        target_values=graph.target_values[keep_node].clone(),
        bias_terms=graph.bias_terms[keep_node].clone(),
        unexplored=unexplored[keep_node].to(torch.float32),
        row_abs_totals=full_totals[keep_node].to(torch.float32),
        settings=dict(graph.settings),
        stats=stats,
        feature_labels=dict(graph.feature_labels),
    )
