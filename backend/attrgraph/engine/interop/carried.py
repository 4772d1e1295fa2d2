"""What an imported graph JSON holds that a Graph does not model, kept so that an export writes it
back unchanged: Neuronpedia's QK tracing (`qk_tracing_results` on nodes, the top-level
`qk_only_nodes`, `is_from_qk_tracing`), its `lorsa` / `lorsa error` node types with their own node
ids, any other node field (`lorsa_pattern`, `sae_name`, ...) or top-level key, and the entries of
`metadata.feature_details` (`neuronpedia_source_set`, `neuronpedia_lorsa_source_set`) and
`metadata.info` besides those an export writes itself.

`Graph.carried` holds them as plain JSON values:

    {"document": {key: value}, "feature_details": {...}, "info": {...}, "transcoder_list": [...],
     "nodes": [[graph index, canonical id, {field: value}], ...]}

A node's fields apply only while the graph still has that node at that index (its canonical id,
`Graph.node_id`, is unchanged), so a graph derived from an imported one never mislabels a node.
Error nodes named in a circuit-tracer convention (`L_-1_p`, or the old `0_L_p` that collides with
features) keep neither id nor jsNodeId: the export writes the current convention.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from attrgraph.engine.graph import Graph, NodeKind
from attrgraph.format.node_ids import (
    EMBEDDING_TYPE,
    ERROR_ID,
    ERROR_TYPE,
    FEATURE_TYPE,
    LOGIT_TYPE,
    THREE_NUMBERS,
    cantor_pair,
    embedding_js_id,
    error_js_id,
    feature_js_id,
    logit_js_id,
    process_token,
)

# Fields an export computes from the graph itself (values, labels); never carried.
COMPUTED = frozenset(
    {"ctx_idx", "token_prob", "is_target_logit", "run_idx", "reverse_ctx_idx", "influence", "activation"}
)
IDENTITY = ("node_id", "feature", "layer", "feature_type", "jsNodeId")
DOCUMENT_KEYS = frozenset({"metadata", "qParams", "nodes", "links"})


def collect(
    document: Mapping[str, Any], graph: Graph, indexed: Sequence[tuple[int, Mapping[str, Any]]]
) -> dict[str, Any]:
    """The carried part of `document`; `indexed` pairs each node with its index in `graph`."""
    carried: dict[str, Any] = {}
    rest = {k: v for k, v in document.items() if k not in DOCUMENT_KEYS}
    if rest:
        carried["document"] = rest
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    for key, written in (("feature_details", set()), ("info", {"generator"})):  # the writer: the export
        value = metadata.get(key)
        extra = {k: v for k, v in value.items() if k not in written} if isinstance(value, Mapping) else {}
        if extra:
            carried[key] = extra
    transcoders = metadata.get("transcoder_list")
    if isinstance(transcoders, list) and transcoders:
        carried["transcoder_list"] = transcoders
    nodes = []
    for index, node in indexed:
        own = canonical(graph, index)
        fields = {k: v for k, v in node.items() if k not in own and k not in COMPUTED}
        fields.update({k: node[k] for k in IDENTITY if k in node and node[k] != own[k]})
        if graph.kind(index) is not NodeKind.FEATURE and node.get("clerp") not in ("", None, own["clerp"]):
            fields["clerp"] = node["clerp"]  # a feature's clerp is its label (Graph.feature_labels)
        if graph.kind(index) is NodeKind.ERROR and _circuit_tracer_error_id(str(node.get("node_id", ""))):
            fields.pop("node_id", None)
            fields.pop("jsNodeId", None)
        if fields:
            nodes.append([index, own["node_id"], fields])
    if nodes:
        carried["nodes"] = nodes
    return carried


def node_fields(graph: Graph) -> dict[int, dict[str, Any]]:
    """Graph index -> the carried fields of that node, for the nodes the graph still has as imported."""
    out: dict[int, dict[str, Any]] = {}
    for index, own_id, fields in graph.carried.get("nodes", ()):
        if 0 <= index < graph.n_nodes and graph.node_id(index) == own_id:
            out[index] = fields
    return out


def write_back(
    document: dict[str, Any], graph: Graph, used: Sequence[int], fields: Mapping[int, Any]
) -> None:
    """Put the carried values into an export of `graph` (its nodes are those of `used`, in order);
    node ids were already given out by the export, so that links use them."""
    carried = graph.carried
    for index, node in zip(used, document["nodes"], strict=True):
        extra = fields.get(index)
        if extra:
            node.update(extra)
    metadata = document["metadata"]
    if "feature_details" in carried:
        metadata["feature_details"] = {**carried["feature_details"], **metadata.get("feature_details", {})}
    if "info" in carried:
        metadata["info"] = {**carried["info"], **metadata.get("info", {})}
    if "transcoder_list" in carried and not metadata.get("transcoder_list"):
        metadata["transcoder_list"] = carried["transcoder_list"]
    document.update(carried.get("document", {}))


def canonical(graph: Graph, index: int) -> dict[str, Any]:
    """The identity fields and clerp an export writes for node `index` (export.py's `_node_json`)."""
    kind = graph.kind(index)
    if kind is NodeKind.FEATURE:
        layer, _, feature = (int(v) for v in graph.features[index])
        js = feature_js_id(layer, feature)
        return _node(graph.node_id(index), cantor_pair(layer, feature), str(layer), FEATURE_TYPE, js, "")
    if kind is NodeKind.ERROR:
        layer, pos = divmod(index - graph.error_offset, graph.n_pos)
        clerp = f'Err: mlp "{process_token(graph.tokens[pos])}"'
        return _node(graph.node_id(index), -1, str(layer), ERROR_TYPE, error_js_id(layer, pos), clerp)
    if kind is NodeKind.TOKEN:
        pos = index - graph.token_offset
        clerp = f'Emb: "{process_token(graph.tokens[pos])}"'
        js = embedding_js_id(graph.token_ids[pos], pos)
        return _node(graph.node_id(index), pos, "E", EMBEDDING_TYPE, js, clerp)
    target = graph.logit_targets[index - graph.logit_offset]
    clerp = f'Output "{process_token(target.label)}" (p={float(target.probability):.3f})'
    js = logit_js_id(target.token_id, graph.n_pos - 1)
    return _node(graph.node_id(index), int(target.token_id), str(graph.n_layers + 1), LOGIT_TYPE, js, clerp)


def _node(
    node_id: str, feature: int, layer: str, feature_type: str, js_id: str, clerp: str
) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "feature": feature,
        "layer": layer,
        "feature_type": feature_type,
        "jsNodeId": js_id,
        "clerp": clerp,
    }


def _circuit_tracer_error_id(node_id: str) -> bool:
    old = THREE_NUMBERS.fullmatch(node_id)
    return ERROR_ID.fullmatch(node_id) is not None or (old is not None and old[1] == "0")
