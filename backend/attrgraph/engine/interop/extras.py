"""`metadata.attrgraph`: what only this project writes into graph JSON and reads back, so that an
import rebuilds a complete Graph (per-node target values, bias terms, unexplored weight and full row
totals, logit targets with their minus tokens, token ids, the scores, the settings)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from enum import Enum
from pathlib import PurePath
from typing import Any

import numpy as np
import torch
from torch import Tensor

from attrgraph.engine.graph import Graph
from attrgraph.engine.interop.reading import fail, read_number
from attrgraph.engine.pruning import PruneResult, graph_scores, subgraph_scores

ATTRGRAPH_FORMAT_VERSION = 1
NODE_VALUE_FIELDS = ("target_value", "bias_term", "unexplored", "row_abs_total")


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def jsonable(value: Any) -> Any:
    """Settings / stats as plain JSON values (tensors to lists, enums to values, others to str)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, Tensor):
        return jsonable(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray | np.generic):
        return jsonable(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


def scores_json(scores: tuple[float, float]) -> dict[str, float | None]:
    return {
        "replacement_score": finite_or_none(float(scores[0])),
        "completeness_score": finite_or_none(float(scores[1])),
    }


def attrgraph_extras(
    graph: Graph,
    used: list[int],
    ids: list[str],
    edge_mask: Tensor,
    prune_result: PruneResult | None,
    pinned_ids: Sequence[str] | None,
    floats: Callable[[Tensor], list[Any]],
) -> dict[str, Any]:
    n_nodes = graph.n_nodes
    edges = graph.edges.to(torch.long).reshape(-1, 2)
    targets = edges[:, 0]
    weights = graph.weights.detach().to(torch.float64)

    # Per-target values. Incoming edges left out of the export move into `unexplored`, so that
    # edges + bias + unexplored still equals the target value; row totals stay the full rows.
    dropped = torch.zeros(n_nodes, dtype=torch.float64).index_add_(
        0, targets, torch.where(edge_mask, torch.zeros_like(weights), weights)
    )
    stored_abs = torch.zeros(n_nodes, dtype=torch.float64).index_add_(0, targets, weights.abs())
    totals = graph.row_abs_totals.detach().to(torch.float64).reshape(-1)
    if totals.numel() != n_nodes:
        totals = torch.zeros(n_nodes, dtype=torch.float64)
    totals = torch.maximum(torch.nan_to_num(totals, nan=0.0), stored_abs)
    unexplored = graph.unexplored.detach().to(torch.float64) + dropped
    target_nodes = [i for i in used if i < graph.error_offset or i >= graph.logit_offset]
    index = torch.tensor(target_nodes, dtype=torch.long)
    columns = [
        floats(graph.target_values[index]),
        floats(graph.bias_terms[index]),
        floats(unexplored[index]),
        floats(totals[index]),
    ]
    node_values = {
        ids[node]: [_nan_to_none(column[k]) for column in columns] for k, node in enumerate(target_nodes)
    }

    scores: dict[str, Any] = scores_json(graph_scores(graph))
    if prune_result is not None:
        kept = torch.nonzero(prune_result.node_mask[: graph.n_features]).flatten()
        scores["pruned"] = scores_json(subgraph_scores(graph, kept))
    if pinned_ids:
        known = {graph.node_id(i): i for i in range(n_nodes)} | {ids[i]: i for i in used}
        pinned = [known[p] for p in pinned_ids if p in known]
        scores["pinned"] = scores_json(subgraph_scores(graph, pinned))

    return {
        "format_version": ATTRGRAPH_FORMAT_VERSION,
        "n_layers": graph.n_layers,
        "model_id": graph.model_id,
        "transcoder_id": graph.transcoder_id,
        "prompt": graph.prompt,
        "token_ids": [int(t) for t in graph.token_ids],
        "tokens": list(graph.tokens),
        "logit_targets": [
            {
                "token_id": int(t.token_id),
                "token": t.token,
                "probability": float(t.probability),
                "minus_token_id": t.minus_token_id,
                "minus_token": t.minus_token,
            }
            for t in graph.logit_targets
        ],
        "n_features_total": graph.n_features,
        "n_edges_total": int(edges.shape[0]),
        "pruned": prune_result is not None,
        "scores": scores,
        "settings": jsonable(graph.settings),
        "stats": jsonable(graph.stats),
        "node_value_fields": list(NODE_VALUE_FIELDS),
        "node_values": node_values,
    }


def _nan_to_none(value: Any) -> Any:
    return None if not math.isfinite(float(value)) else value


def apply_node_values(
    extras: Mapping[str, Any],
    index_of: Mapping[str, int],
    target_values: Tensor,
    bias_terms: Tensor,
    unexplored: Tensor,
    row_abs_totals: Tensor,
) -> None:
    values = extras.get("node_values")
    if values is None:
        return
    if not isinstance(values, dict):
        raise fail("metadata.attrgraph.node_values must be an object")
    fields = extras.get("node_value_fields", list(NODE_VALUE_FIELDS))
    if list(fields) != list(NODE_VALUE_FIELDS):
        raise fail(f"metadata.attrgraph.node_value_fields must be {list(NODE_VALUE_FIELDS)}")
    columns = (target_values, bias_terms, unexplored, row_abs_totals)
    for node_id, row in values.items():
        if node_id not in index_of:
            raise fail(f"metadata.attrgraph.node_values names unknown node {node_id!r}")
        if not isinstance(row, list) or len(row) != len(columns):
            raise fail(f"metadata.attrgraph.node_values[{node_id!r}] must be a list of {len(columns)}")
        index = index_of[node_id]
        for column, value in zip(columns, row, strict=True):
            column[index] = math.nan if value is None else read_number(value, f"node value of {node_id!r}")
