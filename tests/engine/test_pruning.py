"""Sparse influence / pruning / scores against a dense reference written from the formulas."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from attrgraph.engine.graph import Graph
from attrgraph.engine.influence import Propagator, _power_iteration
from attrgraph.engine.pruning import (
    PruneResult,
    cumulative_influence,
    graph_scores,
    node_influence,
    normalized_abs_weights,
    prune,
    pruned_graph,
    subgraph_scores,
)
from tests.support.graphs import random_graph

# -- dense reference (circuit-tracer 0.5's prune_graph / compute_graph_scores, transcribed densely) --


def dense_normalized(graph: Graph) -> tuple[Tensor, Tensor, Tensor]:
    """(A normalised, |A|, residual per row) in float64."""
    abs_matrix = graph.dense_adjacency().double().abs()
    stored = abs_matrix.sum(1)
    totals = torch.maximum(graph.row_abs_totals.double(), stored)
    return abs_matrix / totals.clamp(min=1e-10)[:, None], abs_matrix, totals - stored


def dense_logit_weights(graph: Graph) -> Tensor:
    weights = torch.zeros(graph.n_nodes, dtype=torch.float64)
    weights[graph.logit_offset :] = graph.logit_probabilities().double()
    return weights


def dense_influence(normalized: Tensor, logit_weights: Tensor) -> Tensor:
    eye = torch.eye(normalized.shape[0], dtype=torch.float64)
    inverse: Tensor = torch.linalg.inv(eye - normalized)
    return logit_weights @ normalized @ inverse


def dense_find_threshold(scores: Tensor, threshold: float) -> Tensor:
    sorted_scores = torch.sort(scores, descending=True).values
    cumulative = torch.cumsum(sorted_scores, dim=0)
    cumulative = cumulative / cumulative[-1]  # circuit-tracer divides by sum(); equal but for rounding
    index = int(torch.searchsorted(cumulative, torch.tensor([threshold], dtype=cumulative.dtype)).item())
    index = min(index, len(cumulative) - 1)
    return sorted_scores[index]


def dense_prune(graph: Graph, node_threshold: float, edge_threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    n_tokens, n_logits, n_features = graph.n_pos, graph.n_logits, graph.n_features
    normalized, abs_matrix, residual = dense_normalized(graph)
    logit_weights = dense_logit_weights(graph)
    influence = dense_influence(normalized, logit_weights)
    node_mask = influence >= dense_find_threshold(influence, node_threshold)
    node_mask[-n_logits - n_tokens :] = True

    pruned = abs_matrix.clone()
    pruned[~node_mask] = 0
    pruned[:, ~node_mask] = 0
    normalized_pruned = pruned / (pruned.sum(1) + residual).clamp(min=1e-10)[:, None]
    pruned_influence = dense_influence(normalized_pruned, logit_weights) + logit_weights
    edge_scores = normalized_pruned * pruned_influence[:, None]
    edge_mask = edge_scores >= dense_find_threshold(edge_scores.flatten(), edge_threshold)

    old_mask = node_mask.clone()
    node_mask[: -n_logits - n_tokens] &= edge_mask[:, : -n_logits - n_tokens].any(0)
    node_mask[:n_features] &= edge_mask[:n_features].any(1)
    while not torch.all(node_mask == old_mask):
        old_mask[:] = node_mask
        edge_mask[~node_mask] = False
        edge_mask[:, ~node_mask] = False
        node_mask[: -n_logits - n_tokens] &= edge_mask[:, : -n_logits - n_tokens].any(0)
        node_mask[:n_features] &= edge_mask[:n_features].any(1)
    # what the exporter keeps: edges between kept nodes
    edge_mask &= node_mask[:, None] & node_mask[None, :]

    sorted_scores, order = torch.sort(influence, descending=True)
    cumulative = torch.zeros_like(influence)
    cumulative[order] = torch.cumsum(sorted_scores, dim=0) / sorted_scores.sum()
    return node_mask, edge_mask, cumulative


def dense_scores(graph: Graph, normalized: Tensor, error_like: Tensor) -> tuple[float, float]:
    logit_weights = dense_logit_weights(graph)
    influence = dense_influence(normalized, logit_weights)
    token_influence = influence[graph.token_offset : graph.logit_offset].sum()
    error_influence = influence[error_like].sum()
    replacement = token_influence / (token_influence + error_influence)
    non_error = 1 - normalized[:, error_like].sum(-1)
    output_influence = influence + logit_weights
    completeness = (non_error * output_influence).sum() / output_influence.sum()
    return float(replacement), float(completeness)


def assert_matches_dense(
    graph: Graph, result: PruneResult, node_threshold: float, edge_threshold: float
) -> None:
    node_mask, edge_mask, cumulative = dense_prune(graph, node_threshold, edge_threshold)
    assert torch.equal(result.node_mask, node_mask)
    assert torch.equal(result.edge_mask, edge_mask[graph.edges[:, 0], graph.edges[:, 1]])
    torch.testing.assert_close(result.cumulative_influence, cumulative, rtol=1e-9, atol=1e-12)


# -- tests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("complete_rows", [True, False])
def test_node_influence_matches_dense_inverse(seed: int, complete_rows: bool) -> None:
    graph = random_graph(seed=seed, complete_rows=complete_rows)
    normalized, _, _ = dense_normalized(graph)
    expected = dense_influence(normalized, dense_logit_weights(graph))
    torch.testing.assert_close(node_influence(graph), expected, rtol=1e-9, atol=1e-12)
    # custom logit weights, given per logit
    weights = torch.arange(1, graph.n_logits + 1, dtype=torch.float64)
    full = torch.zeros(graph.n_nodes, dtype=torch.float64)
    full[graph.logit_offset :] = weights
    torch.testing.assert_close(
        node_influence(graph, weights), dense_influence(normalized, full), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("seed", range(3))
def test_layer_sweep_equals_power_iteration(seed: int) -> None:
    graph = random_graph(seed=seed, n_layers=5, features_per_site=3)
    start = dense_logit_weights(graph)
    assert Propagator(graph).sweeps
    slow = _power_iteration(normalized_abs_weights(graph), graph.edges[:, 0], graph.edges[:, 1], start, 20)
    torch.testing.assert_close(node_influence(graph), slow, rtol=1e-12, atol=1e-15)


def test_same_layer_edges_fall_back_to_power_iteration() -> None:
    graph = random_graph(seed=6, n_layers=3, features_per_site=3)
    layer = int(torch.mode(graph.features[:, 0]).values)
    same = [i for i in range(graph.n_features) if int(graph.features[i, 0]) == layer]
    assert len(same) >= 2
    extra = torch.tensor([[same[0], same[1]]])  # same layer: not level-ordered, still a DAG
    graph.edges = torch.cat([graph.edges, extra])
    graph.weights = torch.cat([graph.weights, torch.tensor([0.7])])
    graph.row_abs_totals = torch.zeros(graph.n_nodes)
    assert not Propagator(graph).sweeps
    normalized, _, _ = dense_normalized(graph)
    expected = dense_influence(normalized, dense_logit_weights(graph))
    torch.testing.assert_close(node_influence(graph), expected, rtol=1e-9, atol=1e-12)
    assert_matches_dense(graph, prune(graph), 0.8, 0.98)


def test_normalized_weights_fall_back_to_stored_rows() -> None:
    graph = random_graph(seed=3, complete_rows=False)
    graph.row_abs_totals = torch.zeros(graph.n_nodes)
    normalized = normalized_abs_weights(graph)
    row_sums = torch.zeros(graph.n_nodes, dtype=torch.float64).index_add_(0, graph.edges[:, 0], normalized)
    has_edges = torch.zeros(graph.n_nodes, dtype=torch.bool)
    has_edges[graph.edges[:, 0]] = True
    torch.testing.assert_close(row_sums[has_edges], torch.ones(int(has_edges.sum()), dtype=torch.float64))
    # partial rows: stated totals exceed the stored edges, so rows sum to less than one
    partial = random_graph(seed=3, complete_rows=False)
    sums = torch.zeros(partial.n_nodes, dtype=torch.float64).index_add_(
        0, partial.edges[:, 0], normalized_abs_weights(partial)
    )
    assert float(sums.max()) < 1.0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("complete_rows", [True, False])
def test_prune_matches_dense_reference(seed: int, complete_rows: bool) -> None:
    graph = random_graph(seed=seed, complete_rows=complete_rows, n_layers=4, features_per_site=3)
    result = prune(graph)
    assert_matches_dense(graph, result, 0.8, 0.98)
    assert result.node_mask[graph.token_offset :].all()


@pytest.mark.parametrize(
    ("node_threshold", "edge_threshold"),
    [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0), (0.5, 0.5), (0.3, 0.9), (0.99, 0.2)],
)
def test_prune_threshold_edge_cases(node_threshold: float, edge_threshold: float) -> None:
    for seed in (10, 11):
        graph = random_graph(seed=seed, n_layers=3, features_per_site=3)
        result = prune(graph, node_threshold=node_threshold, edge_threshold=edge_threshold)
        assert_matches_dense(graph, result, node_threshold, edge_threshold)
        kept = result.edge_mask
        assert result.node_mask[graph.edges[kept, 0]].all()
        assert result.node_mask[graph.edges[kept, 1]].all()


def test_prune_structure_and_monotonicity() -> None:
    graph = random_graph(seed=5, n_layers=4, features_per_site=3)
    result = prune(graph, 0.8, 0.98)
    kept_edges = graph.edges[result.edge_mask]
    kept_features = torch.nonzero(result.node_mask[: graph.n_features]).flatten()
    kept_errors = torch.nonzero(result.node_mask[graph.error_offset : graph.token_offset]).flatten()
    for node in kept_features.tolist():
        assert (kept_edges[:, 0] == node).any() and (kept_edges[:, 1] == node).any()
    for node in (kept_errors + graph.error_offset).tolist():
        assert (kept_edges[:, 1] == node).any()
    looser = prune(graph, 0.95, 0.99)
    strict = prune(graph, 0.5, 0.9)
    assert int(strict.node_mask.sum()) <= int(result.node_mask.sum()) <= int(looser.node_mask.sum())
    assert result.n_nodes_kept == int(result.node_mask.sum())


@pytest.mark.parametrize("bad", [-0.1, 1.1, float("nan")])
def test_prune_rejects_thresholds_outside_unit_interval(bad: float) -> None:
    graph = random_graph(seed=0)
    with pytest.raises(ValueError, match="node_threshold must be between"):
        prune(graph, node_threshold=bad)
    with pytest.raises(ValueError, match="edge_threshold must be between"):
        prune(graph, edge_threshold=bad)


def test_prune_graph_without_edges() -> None:
    graph = random_graph(seed=1)
    graph.edges = torch.zeros(0, 2, dtype=torch.long)
    graph.weights = torch.zeros(0)
    result = prune(graph)
    assert result.edge_mask.shape == (0,)
    assert result.node_mask[graph.token_offset :].all()
    assert torch.equal(result.cumulative_influence, torch.ones(graph.n_nodes, dtype=torch.float64))


def test_influence_raises_on_cycles() -> None:
    graph = random_graph(seed=2)
    a, b = 0, 1
    graph.edges = torch.cat([graph.edges, torch.tensor([[a, b], [b, a], [graph.logit_offset, a]])])
    graph.weights = torch.cat([graph.weights, torch.tensor([5.0, 5.0, 5.0])])
    graph.row_abs_totals = torch.zeros(graph.n_nodes)
    with pytest.raises(RuntimeError, match="converge"):
        node_influence(graph)


def test_cumulative_influence_orders_nodes() -> None:
    influence = torch.tensor([0.1, 0.5, 0.0, 0.4], dtype=torch.float64)
    torch.testing.assert_close(
        cumulative_influence(influence), torch.tensor([1.0, 0.5, 1.0, 0.9], dtype=torch.float64)
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("complete_rows", [True, False])
def test_graph_scores_match_dense(seed: int, complete_rows: bool) -> None:
    graph = random_graph(seed=seed, complete_rows=complete_rows)
    normalized, _, _ = dense_normalized(graph)
    error_like = torch.zeros(graph.n_nodes, dtype=torch.bool)
    error_like[graph.error_offset : graph.token_offset] = True
    replacement, completeness = graph_scores(graph)
    expected = dense_scores(graph, normalized, error_like)
    assert replacement == pytest.approx(expected[0], rel=1e-9)
    assert completeness == pytest.approx(expected[1], rel=1e-9)
    assert 0.0 <= replacement <= 1.0 and 0.0 <= completeness <= 1.0


def test_subgraph_scores() -> None:
    graph = random_graph(seed=7, n_layers=4, features_per_site=3)
    everything = list(range(graph.n_features))
    assert subgraph_scores(graph, everything) == pytest.approx(graph_scores(graph), rel=1e-12)

    pinned = [i for i in range(graph.n_features) if i % 2 == 0]
    by_id = subgraph_scores(graph, [graph.node_id(i) for i in pinned])
    by_index = subgraph_scores(graph, torch.tensor(pinned))
    assert by_id == pytest.approx(by_index, rel=1e-12)

    normalized, _, _ = dense_normalized(graph)
    in_subgraph = torch.zeros(graph.n_nodes, dtype=torch.bool)
    in_subgraph[pinned] = True
    in_subgraph[graph.token_offset :] = True
    normalized[~in_subgraph] = 0
    error_like = ~in_subgraph
    error_like[graph.error_offset : graph.token_offset] = True
    assert by_id == pytest.approx(dense_scores(graph, normalized, error_like), rel=1e-9)

    none = subgraph_scores(graph, [])
    assert none.replacement_score <= by_id.replacement_score + 1e-12
    with pytest.raises(ValueError, match="unknown node id"):
        subgraph_scores(graph, ["99_99_99"])
    with pytest.raises(ValueError, match="out of range"):
        subgraph_scores(graph, [graph.n_nodes])


def test_pruned_graph_keeps_kept_parts_and_identity() -> None:
    graph = random_graph(seed=4, n_layers=4, features_per_site=3)
    result = prune(graph)
    small = pruned_graph(graph, result)
    kept_features = result.node_mask[: graph.n_features]
    assert small.n_features == int(kept_features.sum())
    assert torch.equal(small.features, graph.features[kept_features])
    assert small.n_layers == graph.n_layers and small.n_pos == graph.n_pos
    assert small.edges.shape[0] == result.n_edges_kept

    old_ids = {
        graph.node_id(int(t)) + "<-" + graph.node_id(int(s)): float(w)
        for (t, s), w, k in zip(
            graph.edges.tolist(), graph.weights.tolist(), result.edge_mask.tolist(), strict=True
        )
        if k
    }
    new_ids = {
        small.node_id(int(t)) + "<-" + small.node_id(int(s)): float(w)
        for (t, s), w in zip(small.edges.tolist(), small.weights.tolist(), strict=True)
    }
    assert old_ids == new_ids

    # edges + bias + unexplored still add up to each target's value
    sums = torch.zeros(small.n_nodes).index_add_(0, small.edges[:, 0], small.weights)
    targets = torch.ones(small.n_nodes, dtype=torch.bool)
    targets[small.error_offset : small.logit_offset] = False
    torch.testing.assert_close(
        (sums + small.bias_terms + small.unexplored)[targets],
        small.target_values[targets],
        rtol=1e-5,
        atol=1e-5,
    )
    # rows keep their full normalisation
    keep_node = torch.ones(graph.n_nodes, dtype=torch.bool)
    keep_node[: graph.n_features] = kept_features
    torch.testing.assert_close(small.row_abs_totals, graph.row_abs_totals[keep_node])
    assert small.stats["pruning"]["node_threshold"] == 0.8
    with pytest.raises(ValueError, match="does not match this graph"):
        pruned_graph(small, result)
