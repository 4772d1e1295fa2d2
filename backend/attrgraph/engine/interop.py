"""Graph JSON export and import: the format of Neuronpedia's graph viewer and circuit-tracer.

Export (`to_json` / `dumps`) writes what circuit-tracer's `create_graph_files` writes, field for field
(see shared/interop/README.md): node ids `L_f_p` (features), `L_-1_p` (errors), `E_t_p` (token
embeddings), `{n_layers+1}_v_p` (logits); `feature` is the Cantor pairing of (layer, feature index);
links carry the signed direct effect. Extras that only this project reads go under
`metadata.attrgraph` so that `from_json` can rebuild a complete `Graph` (per-node target values,
bias terms, unexplored weight and full row totals, logit targets with their minus tokens, token ids).

Import (`from_json`) reads this project's exports and circuit-tracer's own (no `metadata.attrgraph`):
n_layers from the logit nodes' layer, token ids from the embedding node ids, features from the
feature node ids (jsNodeId or the Cantor `feature` as fallbacks), edges from the links.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from enum import Enum
from pathlib import PurePath
from typing import Any

import numpy as np
import orjson
import torch
from torch import Tensor

import attrgraph
from attrgraph.engine.graph import Graph, LogitTarget, NodeKind
from attrgraph.engine.pruning import (
    PruneResult,
    cumulative_influence,
    graph_scores,
    node_influence,
    subgraph_scores,
)

SCHEMA_VERSION = 1
ATTRGRAPH_FORMAT_VERSION = 1
GENERATOR_NAME = "attrgraph"

FEATURE_TYPE = "cross layer transcoder"  # circuit-tracer uses it for per-layer transcoders too
ERROR_TYPE = "mlp reconstruction error"
EMBEDDING_TYPE = "embedding"
LOGIT_TYPE = "logit"

NODE_VALUE_FIELDS = ("target_value", "bias_term", "unexplored", "row_abs_total")
GENERATION_SETTING_TYPES: dict[str, type] = {
    "max_n_logits": int,
    "desired_logit_prob": float,
    "batch_size": int,
    "max_feature_nodes": int,
}


class GraphFormatError(ValueError):
    """The graph JSON is malformed or is not in a format this module reads."""


# -- small helpers ------------------------------------------------------------------------------


def cantor_pair(layer: int, feature: int) -> int:
    """Neuronpedia's `feature` for a transcoder feature (schema_version 1)."""
    return (layer + feature) * (layer + feature + 1) // 2 + feature


def cantor_unpair(value: int) -> tuple[int, int]:
    """Inverse of `cantor_pair`: (layer, feature)."""
    w = (math.isqrt(8 * value + 1) - 1) // 2
    feature = value - w * (w + 1) // 2
    return w - feature, feature


def process_token(token: str) -> str:
    """Token text as circuit-tracer shows it (newline, tab and carriage return made visible)."""
    return token.replace("\n", "⏎").replace("\t", "→").replace("\r", "↵")


def _slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60].strip("-")
    return slug or "graph"


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _jsonable(value: Any) -> Any:
    """Settings / stats as plain JSON values (tensors to lists, enums to values, others to str)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return _finite_or_none(value)
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if isinstance(value, Tensor):
        return _jsonable(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray | np.generic):
        return _jsonable(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


# -- export -------------------------------------------------------------------------------------


def to_json(
    graph: Graph,
    *,
    prune_result: PruneResult | None = None,
    slug: str | None = None,
    scan: str | None = None,
    feature_json_base_url: str | None = None,
    node_threshold: float | None = None,
    clerps: Sequence[Sequence[str]] | None = None,
    pinned_ids: Sequence[str] | None = None,
    supernodes: Sequence[Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The graph as a Neuronpedia / circuit-tracer graph JSON document (plain Python values).

    prune_result: export only its kept nodes and edges (and, as circuit-tracer does, only the kept
        nodes that have a kept link, plus every embedding and logit); without it every feature and
        edge is exported, plus the error nodes that have an edge.
    slug: graph id (default: from the prompt); scan: model / dictionary id (default graph.model_id).
    feature_json_base_url: where the viewer finds `{base}/{feature}.json` feature files.
    node_threshold: metadata.node_threshold (default: the prune result's).
    clerps: `[[key, label], ...]` labels set by the user; key is a node id or a feature key
        `layer_feature`; they override `graph.feature_labels` and also travel in qParams.clerps.
    pinned_ids, supernodes: saved view state (qParams); the pinned subgraph's scores are added to
        metadata.attrgraph.scores.
    """
    return _build(
        graph,
        prune_result=prune_result,
        slug=slug,
        scan=scan,
        feature_json_base_url=feature_json_base_url,
        node_threshold=node_threshold,
        clerps=clerps,
        pinned_ids=pinned_ids,
        supernodes=supernodes,
        numpy_floats=False,
    )


def dumps(
    graph: Graph,
    *,
    prune_result: PruneResult | None = None,
    slug: str | None = None,
    scan: str | None = None,
    feature_json_base_url: str | None = None,
    node_threshold: float | None = None,
    clerps: Sequence[Sequence[str]] | None = None,
    pinned_ids: Sequence[str] | None = None,
    supernodes: Sequence[Sequence[str]] | None = None,
    indent: bool = False,
) -> bytes:
    """`to_json` serialised with orjson. Float32 values are written in their shortest float32 form."""
    document = _build(
        graph,
        prune_result=prune_result,
        slug=slug,
        scan=scan,
        feature_json_base_url=feature_json_base_url,
        node_threshold=node_threshold,
        clerps=clerps,
        pinned_ids=pinned_ids,
        supernodes=supernodes,
        numpy_floats=True,
    )
    option = orjson.OPT_SERIALIZE_NUMPY | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(document, option=option)


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


def _build(
    graph: Graph,
    *,
    prune_result: PruneResult | None,
    slug: str | None,
    scan: str | None,
    feature_json_base_url: str | None,
    node_threshold: float | None,
    clerps: Sequence[Sequence[str]] | None,
    pinned_ids: Sequence[str] | None,
    supernodes: Sequence[Sequence[str]] | None,
    numpy_floats: bool,
) -> dict[str, Any]:
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

    ids: list[str] = [""] * n_nodes
    for index in used:
        ids[index] = graph.node_id(index)

    label_overrides: dict[str, str] = {}
    for pair in clerps or ():
        if len(pair) >= 2:
            label_overrides[str(pair[0])] = str(pair[1])

    cumulative_values = floats(cumulative.to(torch.float32))
    activation_values = floats(graph.activations)
    probabilities = [float(t.probability) for t in graph.logit_targets]
    feature_rows: list[list[int]] = graph.features.to(torch.long).tolist()
    nodes: list[dict[str, Any]] = []
    for index in used:
        node = _node_json(
            graph, index, ids[index], feature_rows, cumulative_values, activation_values, probabilities
        )
        _apply_label(node, feature_rows[index] if index < n_features else None, label_overrides)
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

    metadata = _metadata(
        graph,
        prune_result=prune_result,
        slug=slug,
        scan=scan,
        feature_json_base_url=feature_json_base_url,
        node_threshold=node_threshold,
    )
    metadata["attrgraph"] = _attrgraph_extras(graph, used, ids, edge_mask, prune_result, pinned_ids, floats)
    q_params: dict[str, Any] = {
        "pinnedIds": [str(i) for i in pinned_ids or ()],
        "supernodes": [[str(x) for x in group] for group in supernodes or ()],
        "linkType": "both",
        "clickedId": "",
        "sg_pos": "",
    }
    if clerps:
        q_params["clerps"] = [[str(x) for x in pair] for pair in clerps]
    return {"metadata": metadata, "qParams": q_params, "nodes": nodes, "links": links}


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
        js_node_id = f"{layer}_{feature}-0"
        feature_type = FEATURE_TYPE
        clerp = graph.feature_labels.get(f"{layer}_{feature}", "")
        activation = activations[index]
    elif kind is NodeKind.ERROR:
        layer, pos = divmod(index - graph.error_offset, graph.n_pos)
        feature_value = -1
        layer_text = str(layer)
        js_node_id = f"{layer}_-1-{pos}"
        feature_type = ERROR_TYPE
        clerp = f'Err: mlp "{process_token(graph.tokens[pos])}"'
    elif kind is NodeKind.TOKEN:
        pos = index - graph.token_offset
        feature_value = pos
        layer_text = "E"
        js_node_id = f"E_{graph.token_ids[pos]}-{pos}"
        feature_type = EMBEDDING_TYPE
        clerp = f'Emb: "{process_token(graph.tokens[pos])}"'
    else:
        i = index - graph.logit_offset
        target = graph.logit_targets[i]
        pos = graph.n_pos - 1
        feature_value = int(target.token_id)
        layer_text = str(graph.n_layers + 1)
        js_node_id = f"L_{target.token_id}-{pos}"
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


def _apply_label(node: dict[str, Any], feature_row: list[int] | None, overrides: Mapping[str, str]) -> None:
    """User labels (clerps) by node id, or for features by `layer_feature` key."""
    if not overrides:
        return
    if node["node_id"] in overrides:
        node["clerp"] = overrides[node["node_id"]]
    elif feature_row is not None:
        key = f"{feature_row[0]}_{feature_row[2]}"
        if key in overrides:
            node["clerp"] = overrides[key]


def _metadata(
    graph: Graph,
    *,
    prune_result: PruneResult | None,
    slug: str | None,
    scan: str | None,
    feature_json_base_url: str | None,
    node_threshold: float | None,
) -> dict[str, Any]:
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


def _scores_json(scores: tuple[float, float]) -> dict[str, float | None]:
    return {
        "replacement_score": _finite_or_none(float(scores[0])),
        "completeness_score": _finite_or_none(float(scores[1])),
    }


def _attrgraph_extras(
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

    scores: dict[str, Any] = _scores_json(graph_scores(graph))
    if prune_result is not None:
        kept = torch.nonzero(prune_result.node_mask[: graph.n_features]).flatten()
        scores["pruned"] = _scores_json(subgraph_scores(graph, kept))
    if pinned_ids:
        known = {graph.node_id(i): i for i in range(n_nodes)}
        pinned = [known[p] for p in pinned_ids if p in known]
        scores["pinned"] = _scores_json(subgraph_scores(graph, pinned))

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
        "settings": _jsonable(graph.settings),
        "stats": _jsonable(graph.stats),
        "node_value_fields": list(NODE_VALUE_FIELDS),
        "node_values": node_values,
    }


def _nan_to_none(value: Any) -> Any:
    return None if not math.isfinite(float(value)) else value


# -- import -------------------------------------------------------------------------------------

_FEATURE_ID = re.compile(r"(\d+)_(\d+)_(\d+)")
_FEATURE_JS_ID = re.compile(r"(\d+)_(\d+)-\d+")
_ERROR_ID = re.compile(r"(\d+)_-1_(\d+)")
_EMBEDDING_ID = re.compile(r"E_(\d+)_(\d+)")
_EMBEDDING_JS_ID = re.compile(r"E_(\d+)-(\d+)")
_LOGIT_ID = re.compile(r"(\d+)_(\d+)_(\d+)")
_LOGIT_CLERP = re.compile(r'Output "(.*)" \(p=[^()]*\)', re.DOTALL)


def _fail(message: str) -> GraphFormatError:
    return GraphFormatError(f"graph JSON: {message}")


def _load(data: bytes | bytearray | memoryview | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(data, Mapping):
        return data
    if isinstance(data, bytes | bytearray | memoryview | str):
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise _fail(f"not valid JSON ({error})") from error
        if not isinstance(parsed, dict):
            raise _fail("the top level must be an object")
        return parsed
    raise _fail(f"expected bytes, str or dict, got {type(data).__name__}")


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise _fail(f"{what} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _fail(f"{what} must be an integer, got {value!r}")


def _number(value: Any, what: str, *, default: float | None = None) -> float:
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(f"{what} must be a number, got {value!r}")
    return float(value)


def _kind_of(feature_type: str) -> NodeKind:
    text = feature_type.strip().lower()
    if text == EMBEDDING_TYPE:
        return NodeKind.TOKEN
    if text == LOGIT_TYPE:
        return NodeKind.LOGIT
    if "error" in text:
        return NodeKind.ERROR
    return NodeKind.FEATURE


class _Parsed:
    """Nodes of a graph JSON sorted into the Graph's blocks."""

    def __init__(self) -> None:
        self.features: list[tuple[int, int, int]] = []
        self.activations: list[float] = []
        self.feature_ids: list[str] = []
        self.errors: list[tuple[str, int, int]] = []
        self.tokens: dict[int, tuple[str, int]] = {}
        self.logits: list[tuple[str, int, float, str]] = []
        self.labels: dict[str, str] = {}


def from_json(data: bytes | bytearray | memoryview | str | Mapping[str, Any]) -> Graph:
    """A Graph from graph JSON: this project's export (full fidelity) or circuit-tracer's.

    Raises GraphFormatError (a ValueError) on anything malformed.
    """
    document = _load(data)
    nodes = document.get("nodes")
    links = document.get("links")
    metadata = document.get("metadata", {})
    if not isinstance(nodes, list):
        raise _fail("'nodes' must be a list")
    if not isinstance(links, list):
        raise _fail("'links' must be a list")
    if not isinstance(metadata, dict):
        raise _fail("'metadata' must be an object")
    extras = metadata.get("attrgraph")
    if extras is not None and not isinstance(extras, dict):
        raise _fail("'metadata.attrgraph' must be an object")

    seen: dict[str, NodeKind] = {}
    colliding: set[str] = set()  # ids used by a layer-0 feature and an old-style (0_L_p) error node
    for k, node in enumerate(nodes):
        if not isinstance(node, dict):
            raise _fail(f"node {k} is not an object")
        node_id = node.get("node_id")
        if not isinstance(node_id, str) or not node_id:
            raise _fail(f"node {k} has no string node_id")
        feature_type = node.get("feature_type")
        if not isinstance(feature_type, str):
            raise _fail(f"node {node_id!r} has no string feature_type")
        kind = _kind_of(feature_type)
        if node_id in seen and {kind, seen[node_id]} == {NodeKind.FEATURE, NodeKind.ERROR}:
            # circuit-tracer 0.5.0 still writes error nodes as 0_L_p; feature_type tells them apart.
            colliding.add(node_id)
            continue
        if node_id in seen:
            hint = ""
            if NodeKind.ERROR in (kind, seen[node_id]):
                hint = (
                    " (older circuit-tracer releases wrote error nodes as 0_L_p, which collides with"
                    " layer-0 feature ids; re-export with a current release)"
                )
            raise _fail(f"duplicate node id {node_id!r}{hint}")
        seen[node_id] = kind

    n_layers = _n_layers(nodes, extras)
    parsed = _parse_nodes(nodes, n_layers)
    token_ids, tokens = _prompt_tokens(parsed, metadata, extras)
    n_pos = len(token_ids)
    logit_targets = _logit_targets(parsed, extras)

    n_features = len(parsed.features)
    error_offset = n_features
    token_offset = n_features + n_layers * n_pos
    logit_offset = token_offset + n_pos
    n_nodes = logit_offset + len(logit_targets)

    index_of: dict[str, int] = {node_id: i for i, node_id in enumerate(parsed.feature_ids)}
    for node_id, layer, pos in parsed.errors:
        if not 0 <= layer < n_layers or not 0 <= pos < n_pos:
            raise _fail(f"error node {node_id!r} is outside {n_layers} layers x {n_pos} positions")
        index_of[node_id] = error_offset + layer * n_pos + pos
    for pos, (node_id, _) in parsed.tokens.items():
        index_of[node_id] = token_offset + pos
    for layer, pos, _ in parsed.features:
        if not 0 <= layer < n_layers or not 0 <= pos < n_pos:
            raise _fail(f"feature at layer {layer}, position {pos} is outside {n_layers} layers x {n_pos}")
    logit_index = _logit_node_indices(parsed, logit_targets)
    for node_id, i in logit_index.items():
        index_of[node_id] = logit_offset + i

    feature_index = {node_id: i for i, node_id in enumerate(parsed.feature_ids) if node_id in colliding}
    # Errors have no inputs, so a colliding id as a link's target is the feature.
    target_index_of = {**index_of, **feature_index}
    edges, weights = _parse_links(links, index_of, error_offset, logit_offset, target_index_of)
    ambiguous = _resolve_colliding_sources(
        links, edges, colliding, feature_index, parsed, n_pos, error_offset
    )
    targets = edges[:, 0]
    stored = torch.zeros(n_nodes, dtype=torch.float64).index_add_(0, targets, weights.to(torch.float64))
    stored_abs = torch.zeros(n_nodes, dtype=torch.float64).index_add_(
        0, targets, weights.to(torch.float64).abs()
    )
    target_values = stored.clone()
    bias_terms = torch.zeros(n_nodes, dtype=torch.float64)
    unexplored = torch.zeros(n_nodes, dtype=torch.float64)
    row_abs_totals = stored_abs.clone()
    if extras is not None:
        _apply_node_values(extras, index_of, target_values, bias_terms, unexplored, row_abs_totals)

    settings = extras.get("settings") if extras is not None else None
    stats = extras.get("stats") if extras is not None else None
    info = metadata.get("info")
    generator = info.get("generator") if isinstance(info, dict) else None
    generator_name = generator.get("name") if isinstance(generator, dict) else None
    if not isinstance(stats, dict):
        stats = {"imported_from": generator_name if isinstance(generator_name, str) else "circuit-tracer"}
    if colliding:
        stats = {**stats, "colliding_node_ids": len(colliding), "ambiguous_links": ambiguous}
    scan = metadata.get("scan")
    scan_text = scan if isinstance(scan, str) else ""
    transcoder_list = metadata.get("transcoder_list")
    listed = [str(t) for t in transcoder_list] if isinstance(transcoder_list, list) else []
    prompt = _text(extras, "prompt", metadata.get("prompt"))

    features = torch.tensor(parsed.features, dtype=torch.long).reshape(-1, 3)
    return Graph(
        prompt=prompt,
        token_ids=token_ids,
        tokens=tokens,
        n_layers=n_layers,
        model_id=_text(extras, "model_id", scan_text),
        transcoder_id=_text(extras, "transcoder_id", ",".join(listed) or scan_text),
        features=features,
        activations=torch.tensor(parsed.activations, dtype=torch.float32),
        logit_targets=logit_targets,
        edges=edges,
        weights=weights,
        target_values=target_values.to(torch.float32),
        bias_terms=bias_terms.to(torch.float32),
        unexplored=unexplored.to(torch.float32),
        row_abs_totals=row_abs_totals.to(torch.float32),
        settings=dict(settings) if isinstance(settings, dict) else {},
        stats=dict(stats),
        feature_labels=parsed.labels,
    )


def _text(extras: Mapping[str, Any] | None, key: str, fallback: Any) -> str:
    if extras is not None and isinstance(extras.get(key), str):
        return str(extras[key])
    return fallback if isinstance(fallback, str) else ""


def _n_layers(nodes: list[dict[str, Any]], extras: Mapping[str, Any] | None) -> int:
    if extras is not None and "n_layers" in extras:
        n_layers = _int(extras["n_layers"], "metadata.attrgraph.n_layers")
    else:
        found = set()
        for node in nodes:
            if _kind_of(node["feature_type"]) is NodeKind.LOGIT:
                layer = node.get("layer")
                if layer is None:
                    match = _LOGIT_ID.fullmatch(node["node_id"])
                    layer = match.group(1) if match else None
                found.add(_int(layer, f"layer of logit node {node['node_id']!r}"))
        if not found:
            raise _fail("no logit nodes, so the number of layers is unknown")
        if len(found) > 1:
            raise _fail(f"logit nodes disagree on their layer: {sorted(found)}")
        n_layers = found.pop() - 1
    if n_layers < 1:
        raise _fail(f"the number of layers must be at least 1, got {n_layers}")
    return n_layers


def _parse_nodes(nodes: list[dict[str, Any]], n_layers: int) -> _Parsed:
    parsed = _Parsed()
    seen_features: set[tuple[int, int, int]] = set()
    for node in nodes:
        node_id: str = node["node_id"]
        kind = _kind_of(node["feature_type"])
        if kind is NodeKind.FEATURE:
            layer, feature, pos = _feature_key(node)
            key = (layer, pos, feature)
            if key in seen_features:
                raise _fail(f"feature {layer}_{feature} at position {pos} appears twice")
            seen_features.add(key)
            parsed.features.append(key)
            parsed.feature_ids.append(node_id)
            parsed.activations.append(
                _number(node.get("activation"), f"activation of {node_id!r}", default=0.0)
            )
            clerp = node.get("clerp")
            if isinstance(clerp, str) and clerp:
                parsed.labels[f"{layer}_{feature}"] = clerp
        elif kind is NodeKind.ERROR:
            match = _ERROR_ID.fullmatch(node_id)
            if "layer" in node and "ctx_idx" in node:
                layer = _int(node["layer"], f"layer of {node_id!r}")
                pos = _int(node["ctx_idx"], f"ctx_idx of {node_id!r}")
            elif match:
                layer, pos = int(match.group(1)), int(match.group(2))
            else:
                raise _fail(f"error node {node_id!r} has neither layer/ctx_idx nor an L_-1_p id")
            parsed.errors.append((node_id, layer, pos))
        elif kind is NodeKind.TOKEN:
            match = _EMBEDDING_ID.fullmatch(node_id)
            js_id = node.get("jsNodeId")
            if match is None and isinstance(js_id, str):
                match = _EMBEDDING_JS_ID.fullmatch(js_id)
            if match is None:
                raise _fail(f"embedding node {node_id!r} does not name its token (E_token_position)")
            token_id, pos = int(match.group(1)), int(match.group(2))
            if pos in parsed.tokens:
                raise _fail(f"two embedding nodes at position {pos}")
            parsed.tokens[pos] = (node_id, token_id)
        else:
            match = _LOGIT_ID.fullmatch(node_id)
            if match:
                vocab = int(match.group(2))
            else:
                vocab = _int(node.get("feature"), f"vocabulary id (feature) of logit {node_id!r}")
            probability = _number(node.get("token_prob"), f"token_prob of {node_id!r}", default=0.0)
            clerp = node.get("clerp")
            clerp_match = _LOGIT_CLERP.fullmatch(clerp) if isinstance(clerp, str) else None
            parsed.logits.append((node_id, vocab, probability, clerp_match.group(1) if clerp_match else ""))
    return parsed


def _feature_key(node: Mapping[str, Any]) -> tuple[int, int, int]:
    """(layer, feature index, position) of a feature node: from `L_f_p`, else layer/ctx_idx + jsNodeId
    `L_f-0`, else layer/ctx_idx + the Cantor-paired `feature`."""
    node_id: str = node["node_id"]
    match = _FEATURE_ID.fullmatch(node_id)
    if match:
        return int(match.group(1)), int(match.group(2)), int(match.group(3))
    if "layer" not in node or "ctx_idx" not in node:
        raise _fail(f"feature node {node_id!r} is not L_f_p and has no layer / ctx_idx")
    layer = _int(node["layer"], f"layer of {node_id!r}")
    pos = _int(node["ctx_idx"], f"ctx_idx of {node_id!r}")
    js_id = node.get("jsNodeId")
    js_match = _FEATURE_JS_ID.fullmatch(js_id) if isinstance(js_id, str) else None
    if js_match and int(js_match.group(1)) == layer:
        return layer, int(js_match.group(2)), pos
    feature = node.get("feature")
    if isinstance(feature, int) and not isinstance(feature, bool) and feature >= 0:
        paired_layer, index = cantor_unpair(feature)
        if paired_layer == layer:
            return layer, index, pos
    raise _fail(f"cannot tell the feature index of node {node_id!r}")


def _prompt_tokens(
    parsed: _Parsed, metadata: Mapping[str, Any], extras: Mapping[str, Any] | None
) -> tuple[list[int], list[str]]:
    prompt_tokens = metadata.get("prompt_tokens")
    if extras is not None and isinstance(extras.get("token_ids"), list):
        token_ids = [_int(t, "metadata.attrgraph.token_ids entry") for t in extras["token_ids"]]
    else:
        if isinstance(prompt_tokens, list) and prompt_tokens:
            n_pos = len(prompt_tokens)
        elif parsed.tokens:
            n_pos = max(parsed.tokens) + 1
        else:
            raise _fail("no embedding nodes and no prompt_tokens: the prompt is unknown")
        missing = [p for p in range(n_pos) if p not in parsed.tokens]
        if missing:
            raise _fail(f"no embedding node (E_token_position) for positions {missing[:10]}")
        token_ids = [parsed.tokens[p][1] for p in range(n_pos)]
    n_pos = len(token_ids)
    if n_pos == 0:
        raise _fail("the prompt has no tokens")
    for pos, (node_id, token_id) in parsed.tokens.items():
        if pos >= n_pos or token_ids[pos] != token_id:
            raise _fail(f"embedding node {node_id!r} does not match the prompt's tokens")
    if extras is not None and isinstance(extras.get("tokens"), list) and len(extras["tokens"]) == n_pos:
        tokens = [str(t) for t in extras["tokens"]]
    elif isinstance(prompt_tokens, list) and len(prompt_tokens) == n_pos:
        tokens = [str(t) for t in prompt_tokens]
    else:
        tokens = [str(t) for t in token_ids]
    return token_ids, tokens


def _logit_targets(parsed: _Parsed, extras: Mapping[str, Any] | None) -> list[LogitTarget]:
    raw = extras.get("logit_targets") if extras is not None else None
    if raw is None:
        if not parsed.logits:
            raise _fail("no logit nodes")
        return [
            LogitTarget(token_id=vocab, token=token, probability=probability)
            for _, vocab, probability, token in parsed.logits
        ]
    if not isinstance(raw, list) or not raw:
        raise _fail("metadata.attrgraph.logit_targets must be a non-empty list")
    targets = []
    for k, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise _fail(f"logit target {k} is not an object")
        minus_id = entry.get("minus_token_id")
        minus_token = entry.get("minus_token")
        targets.append(
            LogitTarget(
                token_id=_int(entry.get("token_id"), f"logit target {k} token_id"),
                token=str(entry.get("token", "")),
                probability=_number(entry.get("probability"), f"logit target {k} probability"),
                minus_token_id=None
                if minus_id is None
                else _int(minus_id, f"logit target {k} minus_token_id"),
                minus_token=None if minus_token is None else str(minus_token),
            )
        )
    return targets


def _logit_node_indices(parsed: _Parsed, targets: list[LogitTarget]) -> dict[str, int]:
    """node id -> logit index. Logit nodes pair with targets in order, matched on vocabulary id."""
    result: dict[str, int] = {}
    remaining = list(range(len(targets)))
    for node_id, vocab, _, _ in parsed.logits:
        match = next((i for i in remaining if targets[i].token_id == vocab), None)
        if match is None:
            raise _fail(f"logit node {node_id!r} matches no logit target")
        remaining.remove(match)
        result[node_id] = match
    return result


def _resolve_colliding_sources(
    links: list[Any],
    edges: Tensor,
    colliding: set[str],
    feature_index: Mapping[str, int],
    parsed: _Parsed,
    n_pos: int,
    error_offset: int,
) -> int:
    """Point links from a colliding id at the node they can come from; return how many stay ambiguous.

    An id `0_L_p` names both layer-0 feature L and the layer-L error at p. An error at layer L feeds
    only targets above L, so a link into a target at layer <= L comes from the feature. Otherwise
    both are possible and the error is kept, as a viewer that maps ids to the last node would.
    """
    if not colliding:
        return 0
    ambiguous = 0
    for k, link in enumerate(links):
        source = link["source"]
        if source not in colliding:
            continue
        error_layer = (int(edges[k, 1]) - error_offset) // n_pos
        target = int(edges[k, 0])
        target_layer = parsed.features[target][0] if target < error_offset else None
        if target_layer is not None and target_layer <= error_layer:
            edges[k, 1] = feature_index[source]
        else:
            ambiguous += 1
    return ambiguous


def _parse_links(
    links: list[Any],
    index_of: Mapping[str, int],
    error_offset: int,
    logit_offset: int,
    target_index_of: Mapping[str, int] | None = None,
) -> tuple[Tensor, Tensor]:
    """(edges (n, 2) [target, source], weights float32). A fast path for well-formed links; on any
    problem the checking loop finds the first bad link and says what is wrong with it."""
    target_index_of = target_index_of or index_of
    try:
        targets = [target_index_of[link["target"]] for link in links]
        sources = [index_of[link["source"]] for link in links]
        weights = [link["weight"] for link in links]
    except (KeyError, TypeError):
        _check_links(links, index_of, error_offset, logit_offset, target_index_of)
        raise _fail("malformed links") from None
    if not all(type(w) is float or type(w) is int for w in weights):
        _check_links(links, index_of, error_offset, logit_offset, target_index_of)
    edges = torch.tensor([targets, sources], dtype=torch.long).T.reshape(-1, 2).contiguous()
    target_index, source_index = edges[:, 0], edges[:, 1]
    if bool(((target_index >= error_offset) & (target_index < logit_offset)).any()) or bool(
        (source_index >= logit_offset).any()
    ):
        _check_links(links, index_of, error_offset, logit_offset, target_index_of)
    return edges, torch.tensor(weights, dtype=torch.float32)


def _check_links(
    links: list[Any],
    index_of: Mapping[str, int],
    error_offset: int,
    logit_offset: int,
    target_index_of: Mapping[str, int],
) -> None:
    for k, link in enumerate(links):
        if not isinstance(link, dict):
            raise _fail(f"link {k} is not an object")
        source, target, weight = link.get("source"), link.get("target"), link.get("weight")
        if not isinstance(source, str) or not isinstance(target, str):
            raise _fail(f"link {k} needs string source and target node ids")
        if source not in index_of:
            raise _fail(f"link {k} comes from unknown node {source!r}")
        if target not in target_index_of:
            raise _fail(f"link {k} goes to unknown node {target!r}")
        if error_offset <= target_index_of[target] < logit_offset:
            raise _fail(f"link {k} goes into {target!r}, but errors and embeddings have no inputs")
        if index_of[source] >= logit_offset:
            raise _fail(f"link {k} comes from logit {source!r}, but logits have no outputs")
        _number(weight, f"weight of link {k}")


def _apply_node_values(
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
        raise _fail("metadata.attrgraph.node_values must be an object")
    fields = extras.get("node_value_fields", list(NODE_VALUE_FIELDS))
    if list(fields) != list(NODE_VALUE_FIELDS):
        raise _fail(f"metadata.attrgraph.node_value_fields must be {list(NODE_VALUE_FIELDS)}")
    columns = (target_values, bias_terms, unexplored, row_abs_totals)
    for node_id, row in values.items():
        if node_id not in index_of:
            raise _fail(f"metadata.attrgraph.node_values names unknown node {node_id!r}")
        if not isinstance(row, list) or len(row) != len(columns):
            raise _fail(f"metadata.attrgraph.node_values[{node_id!r}] must be a list of {len(columns)}")
        index = index_of[node_id]
        for column, value in zip(columns, row, strict=True):
            column[index] = math.nan if value is None else _number(value, f"node value of {node_id!r}")
