"""Attention explanations as a service and the CLI ask for them: by node id, as plain JSON values.

* `edge_heads`: a graph edge (source and target node ids) split by the heads that carried it, each
  with its share of the edge and the attention pattern value at (target position, key position);
* `head_qk`: one head's score from a query to a key position split into QK pairs and marginals;
* `top_head_entries`: `--qk` at trace time, QK results for the top heads, each placed on the graph
  node it explains (the strongest exported target at its query position that has none yet), as
  attrgraph.format.qk entries.
"""

from __future__ import annotations

from typing import Any

import torch

from attrgraph.engine.attention.results import HeadLoadings, QKAttribution
from attrgraph.engine.attention.top import node_positions, qk_for_top_heads
from attrgraph.engine.attention.tracer import AttentionTracer, ProgressCallback
from attrgraph.engine.graph import Graph
from attrgraph.engine.pruning import PruneResult


class AttentionRequestError(ValueError):
    """A node, head or position that the graph or the model does not have."""


def node_index(graph: Graph, node_id: str) -> int:
    for i in range(graph.n_nodes):
        if graph.node_id(i) == node_id:
            return i
    raise AttentionRequestError(f"the graph has no node {node_id}")


def pattern_value(tracer: AttentionTracer, layer: int, head: int, query_pos: int, key_pos: int) -> float:
    return float(tracer.records[layer].pattern[0, head, query_pos, key_pos])


def edge_heads(tracer: AttentionTracer, graph: Graph, source_id: str, target_id: str) -> dict[str, Any]:
    """The edge's head loadings (largest first), by head and by (head, key position)."""
    target, source = node_index(graph, target_id), node_index(graph, source_id)
    try:
        loadings = tracer.head_loadings(graph, target, source)
    except ValueError as exc:
        raise AttentionRequestError(str(exc)) from None
    query_pos = tracer.target_of(graph, target).pos
    out = loadings.to_dict()
    out["query_pos"] = query_pos
    out["source_pos"] = int(tracer.sources.positions[tracer.source_column(graph, source)])
    weight = loadings.weight
    for item in out["head_loadings"]:
        item["pattern"] = pattern_value(tracer, item["layer"], item["head"], query_pos, item["key_pos"])
        item["share"] = item["loading"] / weight if weight else 0.0
    heads = sorted(loadings.by_head().items(), key=lambda kv: -abs(kv[1]))
    out["heads"] = [
        {"layer": layer, "head": head, "loading": value, "share": value / weight if weight else 0.0}
        for (layer, head), value in heads
    ]
    return out


def head_qk(
    tracer: AttentionTracer, layer: int, head: int, query_pos: int, key_pos: int, top: int = 10
) -> dict[str, Any]:
    record = tracer.records.get(layer)
    if record is None:
        raise AttentionRequestError(f"layer {layer} out of range (0..{tracer.rm.n_layers - 1})")
    if not 0 <= head < record.query.shape[1]:
        raise AttentionRequestError(f"head {head} out of range (0..{record.query.shape[1] - 1})")
    if not 0 <= key_pos <= query_pos < tracer.n_pos:
        raise AttentionRequestError(f"need 0 <= key_pos <= query_pos < {tracer.n_pos}")
    result = tracer.qk(layer, head, query_pos, key_pos).to_dict(top)
    result["pattern"] = pattern_value(tracer, layer, head, query_pos, key_pos)
    return result


def exported_ids(graph: Graph, pruned: PruneResult | None) -> set[str]:
    """The node ids an export with `pruned` writes (interop's rule: kept nodes with a kept link)."""
    if pruned is None:
        return {graph.node_id(i) for i in range(graph.n_nodes)}
    mask = pruned.node_mask.to(torch.bool).clone()
    mask[graph.token_offset :] = True
    targets, sources = graph.edges[:, 0], graph.edges[:, 1]
    kept = pruned.edge_mask.to(torch.bool) & mask[targets] & mask[sources]
    connected = torch.zeros(graph.n_nodes, dtype=torch.bool)
    connected[targets[kept]] = True
    connected[sources[kept]] = True
    connected[graph.token_offset :] = True
    return {graph.node_id(i) for i in torch.nonzero(mask & connected).flatten().tolist()}


def top_head_entries(
    tracer: AttentionTracer,
    graph: Graph,
    pruned: PruneResult | None,
    *,
    n_edges: int = 16,
    n_heads: int = 4,
    top: int = 10,
    progress: ProgressCallback | None = None,
) -> list[dict[str, Any]]:
    """QK results of the top heads, each on a distinct exported node at its query position."""
    results, loadings = qk_for_top_heads(tracer, graph, n_edges=n_edges, n_heads=n_heads, progress=progress)
    exported = exported_ids(graph, pruned)
    at_pos: dict[int, list[str]] = {}
    for i, pos in enumerate(node_positions(graph).tolist()):
        node_id = graph.node_id(i)
        if node_id in exported:
            at_pos.setdefault(pos, []).append(node_id)
    taken: set[str] = set()
    entries: list[dict[str, Any]] = []
    for result in results:
        node = _place(result, loadings, at_pos.get(result.query_pos, []), taken)
        if node is None:  # every exported node at the query position holds one already
            continue
        taken.add(node)
        data = result.to_dict(top)
        lists = data.pop("qk_tracing_results")
        del data["qk_only_nodes"]  # described once for the whole document (format.qk.attach)
        entries.append({"node_id": node, **lists, **data})
    return entries


def _place(
    result: QKAttribution, loadings: list[HeadLoadings], candidates: list[str], taken: set[str]
) -> str | None:
    """The exported node at the query position that the hop carries most into, else any free one."""
    hop = (result.layer, result.head, result.key_pos)
    carried: dict[str, float] = {}
    for edge in loadings:
        carried[edge.target] = carried.get(edge.target, 0.0) + abs(edge.loadings.get(hop, 0.0))
    free = [node for node in candidates if node not in taken]
    return max(free, key=lambda node: carried.get(node, 0.0), default=None)
