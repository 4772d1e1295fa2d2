"""Checks of a traced graph that several test modules make."""

from __future__ import annotations

import torch

from attrgraph.engine.graph import Graph


def row_sums(graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
    sums = torch.zeros(graph.n_nodes, dtype=torch.float64).index_add_(
        0, graph.edges[:, 0], graph.weights.double()
    )
    abs_sums = torch.zeros(graph.n_nodes, dtype=torch.float64).index_add_(
        0, graph.edges[:, 0], graph.weights.double().abs()
    )
    return sums, abs_sums


def target_nodes(graph: Graph) -> torch.Tensor:
    return torch.cat([torch.arange(graph.n_features), torch.arange(graph.logit_offset, graph.n_nodes)])


def completeness_errors(graph: Graph) -> torch.Tensor:
    """|edges + bias + unexplored - value| relative to the row's magnitude (sum of |terms|)."""
    sums, abs_sums = row_sums(graph)
    nodes = target_nodes(graph)
    bias, unexplored = graph.bias_terms.double()[nodes], graph.unexplored.double()[nodes]
    value = graph.target_values.double()[nodes]
    scale = abs_sums[nodes] + bias.abs() + unexplored.abs()
    return (sums[nodes] + bias + unexplored - value).abs() / scale.clamp_min(1e-12)
