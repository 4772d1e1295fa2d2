"""Graph JSON export: what circuit-tracer's `create_graph_files` writes, field for field and in its
order (docs/graph-format.md), plus this project's extras under `metadata.attrgraph` (extras.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Unpack

import numpy as np
import orjson
import torch
from torch import Tensor

import attrgraph
from attrgraph.engine.graph import Graph, NodeKind
from attrgraph.engine.interop.carried import node_fields, write_back
from attrgraph.engine.interop.extras import attrgraph_extras
from attrgraph.engine.interop.options import ExportFields, ExportOptions
from attrgraph.engine.pruning import cumulative_influence, node_influence
from attrgraph.format import qk
from attrgraph.format.clerps import QPARAMS_DEFAULTS, label_for
from attrgraph.format.node_ids import (
    EMBEDDING_TYPE,
    ERROR_TYPE,
    FEATURE_TYPE,
    LOGIT_TYPE,
    cantor_pair,
    embedding_js_id,
    error_js_id,
    feature_js_id,
    logit_js_id,
    process_token,
)

SCHEMA_VERSION = 1
GENERATOR_NAME = "attrgraph"
GENERATION_SETTING_TYPES: dict[str, type] = {
    "max_n_logits": int,
    "desired_logit_prob": float,
    "batch_size": int,
    "max_feature_nodes": int,
}


def to_json(
    graph: Graph, options: ExportOptions | None = None, **fields: Unpack[ExportFields]
) -> dict[str, Any]:
    """The graph as a Neuronpedia / circuit-tracer graph JSON document (plain Python values).

    Pass an ExportOptions (options.py says what each field does), or its fields as keywords; keywords
    that are not None override the options object's.
    """
    return build_document(graph, _merge(options, fields), numpy_floats=False)


def dumps(
    graph: Graph,
    options: ExportOptions | None = None,
    *,
    indent: bool = False,
    **fields: Unpack[ExportFields],
) -> bytes:
    """`to_json` serialised with orjson. Float32 values are written in their shortest float32 form."""
    document = build_document(graph, _merge(options, fields), numpy_floats=True)
    option = orjson.OPT_SERIALIZE_NUMPY | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(document, option=option)


def _merge(options: ExportOptions | None, fields: ExportFields) -> ExportOptions:
    given: dict[str, Any] = {name: value for name, value in fields.items() if value is not None}
    return replace(options or ExportOptions(), **given)


def _slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60].strip("-")
    return slug or "graph"


def _float_converter(numpy_floats: bool) -> Callable[[Tensor], list[Any]]:
    """float32 values as a list: numpy float32 scalars (orjson writes them short) or Python floats."""

    def convert(values: Tensor) -> list[Any]:
        array = values.detach().cpu().to(torch.float32).numpy()
        return list(array) if numpy_floats else array.tolist()

    return convert


def _sorted_edges(targets: Tensor, sources: Tensor, mask: Tensor, n_nodes: int) -> Tensor:
    """Indices of the masked edges ordered by (target, source), as circuit-tracer lists them."""
    kept = torch.nonzero(mask).flatten()
    keys = targets[kept] * n_nodes + sources[kept]
    return kept[torch.argsort(keys, stable=True)]


def build_document(graph: Graph, options: ExportOptions, *, numpy_floats: bool) -> dict[str, Any]:
    """The graph JSON document; float values as numpy float32 scalars (for orjson) or Python floats."""
    prune_result = options.prune_result
    node_threshold = options.node_threshold
    clerps, pinned_ids, supernodes = options.clerps, options.pinned_ids, options.supernodes
    floats = _float_converter(numpy_floats)
    n_nodes = graph.n_nodes
    n_features = graph.n_features
    edges = graph.edges.to(torch.long).reshape(-1, 2)
    targets, sources = edges[:, 0], edges[:, 1]
    n_edges = int(edges.shape[0])

    if prune_result is not None:
        if prune_result.node_mask.numel() != n_nodes or prune_result.edge_mask.numel() != n_edges:
            raise ValueError("prune_result does not match this graph (mask sizes differ)")
        node_mask = prune_result.node_mask.to(torch.bool).clone()
        node_mask[graph.token_offset :] = True
        edge_mask = prune_result.edge_mask.to(torch.bool) & node_mask[targets] & node_mask[sources]
        cumulative = prune_result.cumulative_influence
        if node_threshold is None:
            node_threshold = prune_result.node_threshold
    else:
        node_mask = torch.ones(n_nodes, dtype=torch.bool)
        edge_mask = torch.ones(n_edges, dtype=torch.bool)
        cumulative = cumulative_influence(node_influence(graph))

    connected = torch.zeros(n_nodes, dtype=torch.bool)
    connected[targets[edge_mask]] = True
    connected[sources[edge_mask]] = True
    connected[graph.token_offset :] = True
    if prune_result is None:
        connected[:n_features] = True
    used = torch.nonzero(node_mask & connected).flatten().tolist()

    carried = node_fields(graph)  # an imported graph's own node ids and fields, written back
    ids: list[str] = [""] * n_nodes
    for index in used:
        ids[index] = carried[index].get("node_id", "") if index in carried else ""
        ids[index] = ids[index] or graph.node_id(index)

    label_overrides = {str(pair[0]): str(pair[1]) for pair in clerps or () if len(pair) >= 2}

    cumulative_values = floats(cumulative.to(torch.float32))
    activation_values = floats(graph.activations)
    probabilities = [float(t.probability) for t in graph.logit_targets]
    feature_rows: list[list[int]] = graph.features.to(torch.long).tolist()
    nodes: list[dict[str, Any]] = []
    for index in used:
        node = _node_json(
            graph, index, ids[index], feature_rows, cumulative_values, activation_values, probabilities
        )
        label = label_for(node, label_overrides) if label_overrides else None
        if label is not None:
            node["clerp"] = label
        nodes.append(node)

    order = _sorted_edges(targets, sources, edge_mask, n_nodes)
    ids_array = np.array(ids, dtype=object)
    link_sources = ids_array[sources[order].numpy()].tolist()
    link_targets = ids_array[targets[order].numpy()].tolist()
    link_weights = floats(graph.weights[order])
    links = [
        {"source": s, "target": t, "weight": w}
        for s, t, w in zip(link_sources, link_targets, link_weights, strict=True)
    ]

    metadata = _metadata(graph, options, node_threshold)
    metadata["attrgraph"] = attrgraph_extras(graph, used, ids, edge_mask, prune_result, pinned_ids, floats)
    q_params: dict[str, Any] = {
        **QPARAMS_DEFAULTS,
        "pinnedIds": [str(i) for i in pinned_ids or ()],
        "supernodes": [[str(x) for x in group] for group in supernodes or ()],
    }
    if clerps:
        q_params["clerps"] = [[str(x) for x in pair] for pair in clerps]
    document = {"metadata": metadata, "qParams": q_params, "nodes": nodes, "links": links}
    if graph.attention:
        qk.attach(document, graph.attention, graph.feature_labels)
    write_back(document, graph, used, carried)  # last: an imported graph's values as they came
    return document


def _node_json(
    graph: Graph,
    index: int,
    node_id: str,
    feature_rows: list[list[int]],
    cumulative: list[Any],
    activations: list[Any],
    probabilities: list[float],
) -> dict[str, Any]:
    """One node with circuit-tracer's field set and order (frontend/graph_models.py Node)."""
    kind = graph.kind(index)
    token_prob: float = 0.0
    is_target_logit = False
    influence: Any = cumulative[index]
    activation: Any = None
    if kind is NodeKind.FEATURE:
        layer, pos, feature = feature_rows[index]
        feature_value = cantor_pair(layer, feature)
        layer_text = str(layer)
        js_node_id = feature_js_id(layer, feature)
        feature_type = FEATURE_TYPE
        clerp = graph.feature_labels.get(f"{layer}_{feature}", "")
        activation = activations[index]
    elif kind is NodeKind.ERROR:
        layer, pos = divmod(index - graph.error_offset, graph.n_pos)
        feature_value = -1
        layer_text = str(layer)
        js_node_id = error_js_id(layer, pos)
        feature_type = ERROR_TYPE
        clerp = f'Err: mlp "{process_token(graph.tokens[pos])}"'
    elif kind is NodeKind.TOKEN:
        pos = index - graph.token_offset
        feature_value = pos
        layer_text = "E"
        js_node_id = embedding_js_id(graph.token_ids[pos], pos)
        feature_type = EMBEDDING_TYPE
        clerp = f'Emb: "{process_token(graph.tokens[pos])}"'
    else:
        i = index - graph.logit_offset
        target = graph.logit_targets[i]
        pos = graph.n_pos - 1
        feature_value = int(target.token_id)
        layer_text = str(graph.n_layers + 1)
        js_node_id = logit_js_id(target.token_id, pos)
        feature_type = LOGIT_TYPE
        token_prob = probabilities[i]
        is_target_logit = i == 0
        clerp = f'Output "{process_token(target.label)}" (p={token_prob:.3f})'
        influence = None  # circuit-tracer leaves logits without influence; the viewer always keeps them
    return {
        "node_id": node_id,
        "feature": feature_value,
        "layer": layer_text,
        "ctx_idx": pos,
        "feature_type": feature_type,
        "token_prob": token_prob,
        "is_target_logit": is_target_logit,
        "run_idx": 0,
        "reverse_ctx_idx": 0,
        "jsNodeId": js_node_id,
        "clerp": clerp,
        "influence": influence,
        "activation": activation,
    }


def _metadata(graph: Graph, options: ExportOptions, node_threshold: float | None) -> dict[str, Any]:
    slug, scan = options.slug, options.scan
    prune_result, feature_json_base_url = options.prune_result, options.feature_json_base_url
    metadata: dict[str, Any] = {
        "slug": slug if slug is not None else _slugify(graph.prompt),
        "scan": scan if scan is not None else graph.model_id,
        "transcoder_list": [],
        "prompt_tokens": [process_token(t) for t in graph.tokens],
        "prompt": graph.prompt,
    }
    if node_threshold is not None:
        metadata["node_threshold"] = float(node_threshold)
    metadata["schema_version"] = SCHEMA_VERSION
    if feature_json_base_url is not None:
        metadata["feature_details"] = {"feature_json_base_url": feature_json_base_url}
    metadata["info"] = {"generator": {"name": GENERATOR_NAME, "version": attrgraph.__version__}}
    generation: dict[str, Any] = {}
    for key, kind in GENERATION_SETTING_TYPES.items():
        value = graph.settings.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            generation[key] = kind(value)
    metadata["generation_settings"] = generation
    if prune_result is not None:
        metadata["pruning_settings"] = {
            "node_threshold": float(prune_result.node_threshold),
            "edge_threshold": float(prune_result.edge_threshold),
        }
    return metadata
