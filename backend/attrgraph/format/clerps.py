"""Labels as clerps: how feature labels travel inside graph JSON.

A labelled feature node carries its label as `clerp`, and `qParams.clerps` lists `[key, label]`
pairs, key being a node id or a feature key `layer_index` (Neuronpedia's viewer and circuit-tracer
read either). Reading resolves every key to a feature key (feature_keys.py), so a label written on
one graph shows on every graph with that feature.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrgraph.format.feature_keys import feature_key, parse_feature_key

# The view-state fields every exported qParams has (the viewers expect them all).
QPARAMS_DEFAULTS: dict[str, Any] = {
    "pinnedIds": [],
    "supernodes": [],
    "linkType": "both",
    "clickedId": "",
    "sg_pos": "",
}


def clerp_key(key: object, nodes_by_id: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The feature key a clerp's key names: a feature node's id, or a feature key itself."""
    text = str(key)
    node = nodes_by_id.get(text)
    if node is not None:
        found = feature_key(node)
        return found.text if found is not None else None
    parsed = parse_feature_key(text)
    return parsed.text if parsed is not None else None


def labels_from_clerps(graph: Mapping[str, Any]) -> dict[str, str]:
    """feature key -> label from `qParams.clerps` (later pairs win; empty labels and keys that name
    no feature are skipped)."""
    nodes_by_id = {str(n.get("node_id")): n for n in graph.get("nodes") or [] if isinstance(n, dict)}
    q_params = graph.get("qParams")
    pairs = q_params.get("clerps") if isinstance(q_params, dict) else None
    labels: dict[str, str] = {}
    for pair in pairs if isinstance(pairs, list) else []:
        if not isinstance(pair, list | tuple) or len(pair) < 2:
            continue
        key = clerp_key(pair[0], nodes_by_id)
        label = str(pair[1]).strip()
        if key is not None and label:
            labels[key] = label
    return labels


def label_for(node: Mapping[str, Any], labels: Mapping[str, str]) -> str | None:
    """A node's label from `labels` keyed by node id or by feature key (node id first)."""
    by_id = labels.get(str(node.get("node_id")))
    if by_id:
        return by_id
    key = feature_key(node)
    return (labels.get(key.text) or None) if key is not None else None


def with_labels(graph: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    """The graph with each labelled feature's clerp set and the labels in `qParams.clerps` as
    `[node id, label]` pairs; `labels` is keyed by feature key."""
    clerps = []
    nodes = []
    for node in graph.get("nodes") or []:
        key = feature_key(node) if isinstance(node, dict) else None
        if key is not None and labels.get(key.text):
            node = {**node, "clerp": labels[key.text]}
            clerps.append([str(node["node_id"]), labels[key.text]])
        nodes.append(node)
    q_params = dict(graph.get("qParams") or {})
    for name, default in QPARAMS_DEFAULTS.items():
        q_params.setdefault(name, list(default) if isinstance(default, list) else default)
    if clerps:
        q_params["clerps"] = clerps
    return {**graph, "nodes": nodes, "qParams": q_params}
