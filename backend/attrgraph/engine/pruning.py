"""Influence, pruning and graph scores, computed on the sparse edge list.

Everything here works on `Graph.edges` / `Graph.weights` directly: memory and time grow with the
number of edges, never with n_nodes ** 2. The semantics follow circuit-tracer 0.5
(`circuit_tracer/graph.py`: `normalize_matrix`, `compute_influence`, `prune_graph`,
`compute_graph_scores`) so that numbers line up with graphs made by it:

* A is the absolute edge matrix with each target row divided by its total absolute input. Our graphs
  may hold only part of a row (max_edges_per_target, features left unexplored), so the denominator is
  `Graph.row_abs_totals` (the full row), or the sum over stored edges where that is 0 or smaller. When
  a graph stores every edge, the two coincide and the result is circuit-tracer's exactly.
* Influence is one sweep over the edges grouped by target layer (exact for a layered DAG), with
  repeated sparse propagation as the fallback for graphs whose edges do not go strictly upward.
* Influence on the logits: p^T (A + A^2 + ...) = p^T A (I - A)^{-1}, p the logit probabilities.

Internally everything is float64 so that thresholds do not flip on summation order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from attrgraph.engine.graph import Graph

_CLAMP_MIN = 1e-10
_DTYPE = torch.float64


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


class GraphScores(NamedTuple):
    replacement_score: float
    completeness_score: float


# -- normalisation and propagation -------------------------------------------------------------


def _targets_sources(graph: Graph) -> tuple[Tensor, Tensor]:
    edges = graph.edges.to(torch.long)
    if edges.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    return edges[:, 0], edges[:, 1]


def _row_sums(values: Tensor, targets: Tensor, n_nodes: int) -> Tensor:
    return torch.zeros(n_nodes, dtype=values.dtype).index_add_(0, targets, values)


def _stated_totals(graph: Graph) -> Tensor:
    """`row_abs_totals` as float64 (n_nodes,); zeros where missing or malformed."""
    totals = graph.row_abs_totals
    if totals is None or totals.numel() != graph.n_nodes:
        return torch.zeros(graph.n_nodes, dtype=_DTYPE)
    return torch.nan_to_num(totals.detach().to(_DTYPE).reshape(-1).abs(), nan=0.0, posinf=0.0)


def _row_denominators(graph: Graph, abs_weights: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(denominator per node, residual per node).

    The denominator is the full absolute input of each row: `row_abs_totals`, or the stored edges' sum
    where that is 0 or smaller. The residual is the part of it that no stored edge carries.
    """
    stored = _row_sums(abs_weights, targets, graph.n_nodes)
    totals = torch.maximum(_stated_totals(graph), stored)
    return totals.clamp(min=_CLAMP_MIN), totals - stored


def normalized_abs_weights(graph: Graph) -> Tensor:
    """|w| / (total absolute input of the edge's target row), per edge (float64, aligned with edges)."""
    targets, _ = _targets_sources(graph)
    abs_weights = graph.weights.detach().to(_DTYPE).abs()
    denominators, _ = _row_denominators(graph, abs_weights, targets)
    return abs_weights / denominators[targets]


def _power_iteration(
    normalized: Tensor, targets: Tensor, sources: Tensor, start: Tensor, max_iter: int
) -> Tensor:
    """start^T (A + A^2 + ...) by repeated sparse products until the vector is zero."""
    influence = torch.zeros_like(start)
    current = start
    for _ in range(max_iter):
        current = torch.zeros_like(start).index_add_(0, sources, normalized * current[targets])
        if not bool(current.any()):
            return influence
        influence += current
    raise RuntimeError(
        f"influence did not converge after {max_iter} propagation steps: the edges are not a DAG "
        "ordered by layer (pass a larger max_iter if the graph is deeper than n_layers + 2)"
    )


class _Propagator:
    """Computes start^T (A + A^2 + ...) for the sparse matrix A[target, source] = normalized.

    When every edge goes from a lower level to a higher one (tokens -1, features and errors their layer,
    logits n_layers), one sweep over the edges grouped by target level, top level first, gives the
    exact sum (each level's influence is complete before its own inputs are visited). Otherwise it falls
    back to repeated sparse products, which stop when the vector reaches zero and raise after max_iter
    steps. Both are O(edges) per step; the sweep is a single step.
    """

    def __init__(self, graph: Graph, max_iter: int | None = None) -> None:
        self.targets, self.sources = _targets_sources(graph)
        self.max_iter = _default_max_iter(graph) if max_iter is None else max_iter
        self.order: Tensor | None = None
        self.bounds: list[tuple[int, int]] = []
        if self.targets.numel() == 0:
            return
        levels = _node_levels(graph)
        target_levels = levels[self.targets]
        if not bool((levels[self.sources] < target_levels).all()):
            return
        order = torch.argsort(target_levels, descending=True, stable=True)
        _, counts = torch.unique_consecutive(target_levels[order], return_counts=True)
        ends = torch.cumsum(counts, 0).tolist()
        self.bounds = list(zip([0, *ends[:-1]], ends, strict=True))
        self.order = order
        self.sorted_targets = self.targets[order]
        self.sorted_sources = self.sources[order]

    @property
    def sweeps(self) -> bool:
        return self.order is not None or self.targets.numel() == 0

    def __call__(self, normalized: Tensor, start: Tensor) -> Tensor:
        if self.targets.numel() == 0:
            return torch.zeros_like(start)
        if self.order is None:
            return _power_iteration(normalized, self.targets, self.sources, start, self.max_iter)
        weights = normalized[self.order]
        influence = torch.zeros_like(start)
        for begin, end in self.bounds:
            targets = self.sorted_targets[begin:end]
            contribution = weights[begin:end] * (influence[targets] + start[targets])
            influence.index_add_(0, self.sorted_sources[begin:end], contribution)
        return influence


def _node_levels(graph: Graph) -> Tensor:
    """Level of each node for the sweep: tokens -1, features and errors their layer, logits n_layers."""
    levels = torch.empty(graph.n_nodes, dtype=torch.long)
    levels[: graph.n_features] = graph.features[:, 0].to(torch.long)
    error_layers = torch.arange(graph.n_layers, dtype=torch.long).repeat_interleave(graph.n_pos)
    levels[graph.error_offset : graph.token_offset] = error_layers
    levels[graph.token_offset : graph.logit_offset] = -1
    levels[graph.logit_offset :] = graph.n_layers
    return levels


def _logit_weight_vector(graph: Graph, logit_weights: Tensor | None) -> Tensor:
    weights = torch.zeros(graph.n_nodes, dtype=_DTYPE)
    if logit_weights is None:
        weights[graph.logit_offset :] = graph.logit_probabilities().to(_DTYPE)
        return weights
    given = logit_weights.detach().to(_DTYPE).reshape(-1)
    if given.numel() == graph.n_nodes:
        return given.clone()
    if given.numel() == graph.n_logits:
        weights[graph.logit_offset :] = given
        return weights
    raise ValueError(
        f"logit_weights has {given.numel()} entries; expected n_logits={graph.n_logits} "
        f"or n_nodes={graph.n_nodes}"
    )


def _default_max_iter(graph: Graph) -> int:
    # longest path: logit <- feature L-1 <- ... <- feature 0 <- token is n_layers + 1 edges,
    # and one more step finds the zero vector.
    return graph.n_layers + 3


def node_influence(graph: Graph, logit_weights: Tensor | None = None, max_iter: int | None = None) -> Tensor:
    """Each node's total influence on the logits: p^T (A + A^2 + ...), float64 (n_nodes,).

    `logit_weights` is p: (n_logits,) or (n_nodes,); default the logit probabilities on the logit rows.
    Edges that all go from lower to higher layers take one sweep; otherwise repeated propagation runs
    until the vector is zero and raises RuntimeError after max_iter steps (default n_layers + 3).
    """
    start = _logit_weight_vector(graph, logit_weights)
    return _Propagator(graph, max_iter)(normalized_abs_weights(graph), start)


def cumulative_influence(influence: Tensor) -> Tensor:
    """Cumulative share of total influence reached at each node in descending order (the slider value).

    Where the total is 0 every node gets 1.0 (circuit-tracer would produce NaN).
    """
    scores = influence.detach().to(_DTYPE)
    total = scores.sum()
    if scores.numel() == 0 or not bool(total > 0):
        return torch.ones_like(scores)
    sorted_scores, order = torch.sort(scores, descending=True, stable=True)
    cumulative = torch.cumsum(sorted_scores, dim=0)
    result = torch.zeros_like(scores)
    result[order] = cumulative / cumulative[-1]
    return result


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
    targets, sources = _targets_sources(graph)
    abs_weights = graph.weights.detach().to(_DTYPE).abs()
    denominators, residual = _row_denominators(graph, abs_weights, targets)
    logit_weights = _logit_weight_vector(graph, None)
    propagate = _Propagator(graph)

    influence = propagate(abs_weights / denominators[targets], logit_weights)
    node_mask = influence >= _find_threshold(influence, node_threshold)
    node_mask[token_offset:] = True

    alive = node_mask[targets] & node_mask[sources]
    pruned_abs = torch.where(alive, abs_weights, torch.zeros_like(abs_weights))
    pruned_denominators = (_row_sums(pruned_abs, targets, n_nodes) + residual).clamp(min=_CLAMP_MIN)
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

    targets, sources = _targets_sources(graph)
    edge_mask = result.edge_mask.to(torch.bool) & keep_node[targets] & keep_node[sources]
    weights32 = graph.weights.detach().to(torch.float32)

    dropped = _row_sums(
        torch.where(edge_mask, torch.zeros_like(weights32), weights32).to(_DTYPE), targets, n_nodes
    )
    abs_weights = weights32.to(_DTYPE).abs()
    full_totals = torch.maximum(_stated_totals(graph), _row_sums(abs_weights, targets, n_nodes))
    unexplored = graph.unexplored.detach().to(_DTYPE) + dropped

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


# -- scores ---------------------------------------------------------------------------------------


def _scores(
    graph: Graph, normalized: Tensor, targets: Tensor, sources: Tensor, error_like: Tensor
) -> GraphScores:
    logit_weights = _logit_weight_vector(graph, None)
    influence = _Propagator(graph)(normalized, logit_weights)
    token_influence = float(influence[graph.token_offset : graph.logit_offset].sum())
    error_influence = float(influence[error_like].sum())
    denominator = token_influence + error_influence
    replacement = token_influence / denominator if denominator > 0 else float("nan")

    from_errors = torch.where(error_like[sources], normalized, torch.zeros_like(normalized))
    non_error_fractions = 1.0 - _row_sums(from_errors, targets, graph.n_nodes)
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
    targets, sources = _targets_sources(graph)
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

    targets, sources = _targets_sources(graph)
    normalized = normalized_abs_weights(graph)
    normalized = torch.where(in_subgraph[targets], normalized, torch.zeros_like(normalized))
    return _scores(graph, normalized, targets, sources, error_like)
