"""Influence on the logits, computed on the sparse edge list (pruning.py and scores.py build on it).

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

import torch
from torch import Tensor

from attrgraph.engine.graph import Graph

CLAMP_MIN = 1e-10
DTYPE = torch.float64


def targets_sources(graph: Graph) -> tuple[Tensor, Tensor]:
    edges = graph.edges.to(torch.long)
    if edges.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    return edges[:, 0], edges[:, 1]


def row_sums(values: Tensor, targets: Tensor, n_nodes: int) -> Tensor:
    return torch.zeros(n_nodes, dtype=values.dtype).index_add_(0, targets, values)


def stated_totals(graph: Graph) -> Tensor:
    """`row_abs_totals` as float64 (n_nodes,); zeros where missing or malformed."""
    totals = graph.row_abs_totals
    if totals is None or totals.numel() != graph.n_nodes:
        return torch.zeros(graph.n_nodes, dtype=DTYPE)
    return torch.nan_to_num(totals.detach().to(DTYPE).reshape(-1).abs(), nan=0.0, posinf=0.0)


def row_denominators(graph: Graph, abs_weights: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(denominator per node, residual per node).

    The denominator is the full absolute input of each row: `row_abs_totals`, or the stored edges' sum
    where that is 0 or smaller. The residual is the part of it that no stored edge carries.
    """
    stored = row_sums(abs_weights, targets, graph.n_nodes)
    totals = torch.maximum(stated_totals(graph), stored)
    return totals.clamp(min=CLAMP_MIN), totals - stored


def normalized_abs_weights(graph: Graph) -> Tensor:
    """|w| / (total absolute input of the edge's target row), per edge (float64, aligned with edges)."""
    targets, _ = targets_sources(graph)
    abs_weights = graph.weights.detach().to(DTYPE).abs()
    denominators, _ = row_denominators(graph, abs_weights, targets)
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


class Propagator:
    """Computes start^T (A + A^2 + ...) for the sparse matrix A[target, source] = normalized.

    When every edge goes from a lower level to a higher one (tokens -1, features and errors their layer,
    logits n_layers), one sweep over the edges grouped by target level, top level first, gives the
    exact sum (each level's influence is complete before its own inputs are visited). Otherwise it falls
    back to repeated sparse products, which stop when the vector reaches zero and raise after max_iter
    steps. Both are O(edges) per step; the sweep is a single step.
    """

    def __init__(self, graph: Graph, max_iter: int | None = None) -> None:
        self.targets, self.sources = targets_sources(graph)
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


def logit_weight_vector(graph: Graph, logit_weights: Tensor | None) -> Tensor:
    weights = torch.zeros(graph.n_nodes, dtype=DTYPE)
    if logit_weights is None:
        weights[graph.logit_offset :] = graph.logit_probabilities().to(DTYPE)
        return weights
    given = logit_weights.detach().to(DTYPE).reshape(-1)
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
    start = logit_weight_vector(graph, logit_weights)
    return Propagator(graph, max_iter)(normalized_abs_weights(graph), start)


def cumulative_influence(influence: Tensor) -> Tensor:
    """Cumulative share of total influence reached at each node in descending order (the slider value).

    Where the total is 0 every node gets 1.0 (circuit-tracer would produce NaN).
    """
    scores = influence.detach().to(DTYPE)
    total = scores.sum()
    if scores.numel() == 0 or not bool(total > 0):
        return torch.ones_like(scores)
    sorted_scores, order = torch.sort(scores, descending=True, stable=True)
    cumulative = torch.cumsum(sorted_scores, dim=0)
    result = torch.zeros_like(scores)
    result[order] = cumulative / cumulative[-1]
    return result
