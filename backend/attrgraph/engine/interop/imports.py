"""Graph JSON import: this project's exports (full fidelity, from `metadata.attrgraph`) and
circuit-tracer's or Neuronpedia's own: n_layers from the logit nodes' layer, token ids from the
embedding node ids, features as attrgraph.format reads them, edges from the links (links.py).
Raises GraphFormatError (a ValueError) on anything malformed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from attrgraph.engine.graph import Graph, NodeKind
from attrgraph.engine.interop.carried import collect
from attrgraph.engine.interop.extras import apply_node_values
from attrgraph.engine.interop.links import parse_links, resolve_colliding_sources
from attrgraph.engine.interop.reading import fail, load_document, node_kind, read_int, read_number
from attrgraph.engine.interop.tokens import logit_node_indices, prompt_tokens, read_logit_targets
from attrgraph.format import qk
from attrgraph.format.feature_keys import feature_key
from attrgraph.format.node_ids import (
    THREE_NUMBERS,
    embedding_address,
    error_address,
    logit_token,
    parse_feature_id,
)


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
    document = load_document(data)
    nodes = document.get("nodes")
    links = document.get("links")
    metadata = document.get("metadata", {})
    if not isinstance(nodes, list):
        raise fail("'nodes' must be a list")
    if not isinstance(links, list):
        raise fail("'links' must be a list")
    if not isinstance(metadata, dict):
        raise fail("'metadata' must be an object")
    extras = metadata.get("attrgraph")
    if extras is not None and not isinstance(extras, dict):
        raise fail("'metadata.attrgraph' must be an object")

    seen: dict[str, NodeKind] = {}
    colliding: set[str] = set()  # ids used by a layer-0 feature and an old-style (0_L_p) error node
    for k, node in enumerate(nodes):
        if not isinstance(node, dict):
            raise fail(f"node {k} is not an object")
        node_id = node.get("node_id")
        if not isinstance(node_id, str) or not node_id:
            raise fail(f"node {k} has no string node_id")
        feature_type = node.get("feature_type")
        if not isinstance(feature_type, str):
            raise fail(f"node {node_id!r} has no string feature_type")
        kind = node_kind(feature_type)
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
            raise fail(f"duplicate node id {node_id!r}{hint}")
        seen[node_id] = kind

    n_layers = _n_layers(nodes, extras)
    parsed = _parse_nodes(nodes)
    token_ids, tokens = prompt_tokens(parsed, metadata, extras)
    n_pos = len(token_ids)
    logit_targets = read_logit_targets(parsed, extras)

    n_features = len(parsed.features)
    error_offset = n_features
    token_offset = n_features + n_layers * n_pos
    logit_offset = token_offset + n_pos
    n_nodes = logit_offset + len(logit_targets)

    index_of: dict[str, int] = {node_id: i for i, node_id in enumerate(parsed.feature_ids)}
    index_of.update(_error_indices(parsed.errors, n_layers, n_pos, error_offset))
    for pos, (node_id, _) in parsed.tokens.items():
        index_of[node_id] = token_offset + pos
    for layer, pos, _ in parsed.features:
        if not 0 <= layer < n_layers or not 0 <= pos < n_pos:
            raise fail(f"feature at layer {layer}, position {pos} is outside {n_layers} layers x {n_pos}")
    logit_index = logit_node_indices(parsed, logit_targets)
    for node_id, i in logit_index.items():
        index_of[node_id] = logit_offset + i

    feature_index = {node_id: i for i, node_id in enumerate(parsed.feature_ids) if node_id in colliding}
    # Errors have no inputs, so a colliding id as a link's target is the feature.
    target_index_of = {**index_of, **feature_index}
    edges, weights = parse_links(links, index_of, error_offset, logit_offset, target_index_of)
    ambiguous = resolve_colliding_sources(links, edges, colliding, feature_index, parsed, n_pos, error_offset)
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
        apply_node_values(extras, index_of, target_values, bias_terms, unexplored, row_abs_totals)

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
    graph = Graph(
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
        feature_labels={**qk.outside_labels(document), **parsed.labels},
        attention=qk.read(document),
    )
    graph.carried = collect(document, graph, _graph_indices(nodes, index_of))
    return graph


def _error_indices(
    errors: list[tuple[str, int, int]], n_layers: int, n_pos: int, error_offset: int
) -> dict[str, int]:
    """Node id -> Graph index of each error node; two at one site (say a `lorsa error` and an
    `mlp reconstruction error`) do not fit a Graph, which holds one error per layer and position."""
    taken: dict[int, str] = {}
    for node_id, layer, pos in errors:
        if not 0 <= layer < n_layers or not 0 <= pos < n_pos:
            raise fail(f"error node {node_id!r} is outside {n_layers} layers x {n_pos} positions")
        index = error_offset + layer * n_pos + pos
        if index in taken:
            raise fail(
                f"error nodes {taken[index]!r} and {node_id!r} are both at layer {layer}, position {pos};"
                " a graph holds one error node per layer and position"
            )
        taken[index] = node_id
    return {node_id: index for index, node_id in taken.items()}


def _graph_indices(
    nodes: list[dict[str, Any]], index_of: Mapping[str, int]
) -> list[tuple[int, dict[str, Any]]]:
    """Each node with its Graph index; features by their order (an old error id may name one too)."""
    indexed = []
    n_features = 0
    for node in nodes:
        if node_kind(node["feature_type"]) is NodeKind.FEATURE:
            indexed.append((n_features, node))
            n_features += 1
        else:
            indexed.append((index_of[node["node_id"]], node))
    return indexed


def _text(extras: Mapping[str, Any] | None, key: str, fallback: Any) -> str:
    if extras is not None and isinstance(extras.get(key), str):
        return str(extras[key])
    return fallback if isinstance(fallback, str) else ""


def _n_layers(nodes: list[dict[str, Any]], extras: Mapping[str, Any] | None) -> int:
    if extras is not None and "n_layers" in extras:
        n_layers = read_int(extras["n_layers"], "metadata.attrgraph.n_layers")
    else:
        found = set()
        for node in nodes:
            if node_kind(node["feature_type"]) is NodeKind.LOGIT:
                layer = node.get("layer")
                if layer is None:
                    match = THREE_NUMBERS.fullmatch(node["node_id"])
                    layer = match.group(1) if match else None
                found.add(read_int(layer, f"layer of logit node {node['node_id']!r}"))
        if not found:
            raise fail("no logit nodes, so the number of layers is unknown")
        if len(found) > 1:
            raise fail(f"logit nodes disagree on their layer: {sorted(found)}")
        n_layers = found.pop() - 1
    if n_layers < 1:
        raise fail(f"the number of layers must be at least 1, got {n_layers}")
    return n_layers


def _parse_nodes(nodes: list[dict[str, Any]]) -> _Parsed:
    parsed = _Parsed()
    seen_features: set[tuple[int, int, int]] = set()
    for node in nodes:
        node_id: str = node["node_id"]
        kind = node_kind(node["feature_type"])
        if kind is NodeKind.FEATURE:
            layer, feature, pos = _feature_address(node)
            key = (layer, pos, feature)
            if key in seen_features:
                raise fail(f"feature {layer}_{feature} at position {pos} appears twice")
            seen_features.add(key)
            parsed.features.append(key)
            parsed.feature_ids.append(node_id)
            parsed.activations.append(
                read_number(node.get("activation"), f"activation of {node_id!r}", default=0.0)
            )
            clerp = node.get("clerp")
            if isinstance(clerp, str) and clerp:
                parsed.labels[f"{layer}_{feature}"] = clerp
        elif kind is NodeKind.ERROR:
            parsed.errors.append((node_id, *_error_address(node)))
        elif kind is NodeKind.TOKEN:
            found = embedding_address(node)
            if found is None:
                raise fail(f"embedding node {node_id!r} does not name its token (E_token_position)")
            token_id, pos = found
            if pos in parsed.tokens:
                raise fail(f"two embedding nodes at position {pos}")
            parsed.tokens[pos] = (node_id, token_id)
        else:
            match = THREE_NUMBERS.fullmatch(node_id)
            if match:
                vocab = int(match.group(2))
            else:
                vocab = read_int(node.get("feature"), f"vocabulary id (feature) of logit {node_id!r}")
            probability = read_number(node.get("token_prob"), f"token_prob of {node_id!r}", default=0.0)
            parsed.logits.append((node_id, vocab, probability, logit_token(node.get("clerp")) or ""))
    return parsed


def _feature_address(node: Mapping[str, Any]) -> tuple[int, int, int]:
    """(layer, feature index, position) of a feature node: the feature as attrgraph.format reads it
    (the same key the page and the label index use); the position from `L_f_p`, else ctx_idx."""
    node_id: str = node["node_id"]
    from_id = parse_feature_id(node_id)
    if from_id is not None:
        return from_id
    key = feature_key(node)
    if key is None:
        raise fail(f"cannot tell the feature index of node {node_id!r}")
    if "layer" in node and read_int(node["layer"], f"layer of {node_id!r}") != key.layer:
        raise fail(f"feature node {node_id!r} names layer {key.layer} but its layer field differs")
    if "ctx_idx" not in node:
        raise fail(f"feature node {node_id!r} is not L_f_p and has no ctx_idx")
    return key.layer, key.index, read_int(node["ctx_idx"], f"ctx_idx of {node_id!r}")


def _error_address(node: Mapping[str, Any]) -> tuple[int, int]:
    """(layer, position) of an error node, in either id convention (attrgraph.format.node_ids)."""
    node_id = node["node_id"]
    if "layer" in node and "ctx_idx" in node:
        layer = read_int(node["layer"], f"layer of {node_id!r}")
        return layer, read_int(node["ctx_idx"], f"ctx_idx of {node_id!r}")
    found = error_address(node)
    if found is None:
        raise fail(f"error node {node_id!r} has neither layer/ctx_idx nor an L_-1_p id")
    return found
