"""QK attributions in graph JSON, as Neuronpedia writes them, plus the fields that make them checkable.

Neuronpedia puts a `qk_tracing_results` object on the node whose attention it explains
(`pair_wise_contributors` [[q node, k node, attribution], ...], `top_q_marginal_contributors` and
`top_k_marginal_contributors` [[node, attribution], ...]) and describes contributors that are not
among the graph's nodes in a top-level `qk_only_nodes` object keyed by node id. Here the explained
thing is one head's pre-softmax score from a query to a key position, so each object also carries
`layer`, `head`, `query_pos`, `key_pos`, `score` (after the scale) and `bias`, and the sums that
make `pairs_total + q_bias_terms + k_bias_terms + bias == score` checkable by anyone.

An entry is that object plus the `node_id` it sits on; `attach` writes entries into a document and
`read` gets them back, so an import followed by an export keeps them unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from attrgraph.format.node_ids import EMBEDDING_TYPE, ERROR_TYPE, FEATURE_TYPE, cantor_pair, parse_feature_id

RESULTS_FIELD = "qk_tracing_results"
ONLY_NODES_FIELD = "qk_only_nodes"
CONTRIBUTOR_LISTS = ("pair_wise_contributors", "top_q_marginal_contributors", "top_k_marginal_contributors")


def qk_only_node(node_id: str, label: str = "") -> dict[str, Any]:
    """A descriptor for a contributor outside the graph's nodes, flagged as Neuronpedia does."""
    entry: dict[str, Any] = {"node_id": node_id, "jsNodeId": node_id, "is_from_qk_tracing": True}
    layer, middle, pos = node_id.rsplit("_", 2) if node_id.count("_") >= 2 else (node_id, "", "0")
    entry["ctx_idx"] = int(pos) if pos.isdigit() else 0
    if layer == "E":
        entry.update(feature_type=EMBEDDING_TYPE, layer="E", feature=entry["ctx_idx"])
    elif middle == "-1":
        entry.update(feature_type=ERROR_TYPE, layer=layer, feature=-1)
    else:
        parsed = parse_feature_id(node_id)
        feature = cantor_pair(parsed[0], parsed[1]) if parsed else None
        entry.update(feature_type=FEATURE_TYPE, layer=layer, feature=feature)
    entry["clerp"] = label
    return entry


def contributors(entry: Mapping[str, Any]) -> set[str]:
    """Every node id an entry's lists name."""
    ids: set[str] = set()
    for name in CONTRIBUTOR_LISTS:
        for item in entry.get(name) or ():
            ids.update(str(x) for x in item[:-1])
    return ids


def attach(document: dict[str, Any], entries: Iterable[Mapping[str, Any]], labels: Mapping[str, str]) -> None:
    """Put each entry on its node (`node_id`) and describe outside contributors in `qk_only_nodes`.

    labels: feature key `layer_index` -> label, for the descriptors' clerps. Entries whose node is
    not in the document are refused (ValueError): dropping them silently would lose results.
    """
    by_id = {str(n["node_id"]): n for n in document["nodes"]}
    outside: set[str] = set()
    for entry in entries:
        node_id = str(entry["node_id"])
        if node_id not in by_id:
            raise ValueError(f"QK result for node {node_id}, which the document does not contain")
        by_id[node_id][RESULTS_FIELD] = {k: v for k, v in entry.items() if k != "node_id"}
        outside |= contributors(entry) - by_id.keys()
    if outside:
        only = {}
        for node_id in sorted(outside):
            parsed = parse_feature_id(node_id)
            label = labels.get(f"{parsed[0]}_{parsed[1]}", "") if parsed else ""
            only[node_id] = qk_only_node(node_id, label)
        document[ONLY_NODES_FIELD] = only


def read(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The entries of a document (nodes in order), each its node's object plus `node_id`."""
    out: list[dict[str, Any]] = []
    for node in document.get("nodes") or ():
        result = node.get(RESULTS_FIELD) if isinstance(node, Mapping) else None
        if isinstance(result, Mapping):
            out.append({"node_id": str(node["node_id"]), **result})
    return out


def outside_labels(document: Mapping[str, Any]) -> dict[str, str]:
    """Feature key -> label of the `qk_only_nodes` descriptors (their clerps), so a re-export
    describes them as the import found them."""
    only = document.get(ONLY_NODES_FIELD)
    labels: dict[str, str] = {}
    for node_id, node in only.items() if isinstance(only, Mapping) else ():
        parsed = parse_feature_id(str(node_id))
        clerp = node.get("clerp") if isinstance(node, Mapping) else None
        if parsed and isinstance(clerp, str) and clerp:
            labels[f"{parsed[0]}_{parsed[1]}"] = clerp
    return labels
