"""Scripted attention results for the Dallas backend, in the shape engine.attention.requests gives.

An edge that crosses positions is carried by three heads (HEAD_SHARES: layer 0 head 3 most); a
same-position edge by none. A head's QK attribution pairs the nodes at its query position with
those at its key position, plus one contributor outside the graph (a `qk_only_nodes` entry), and
its terms sum to its score as the engine's do. Deterministic, instant, no torch.
"""

from __future__ import annotations

from typing import Any

from attrgraph.format.qk import qk_only_node
from attrgraph.protocol.records import AttentionPayload
from attrgraph.worker.tracer import UserError
from tests.support.dallas import HEAD_SHARES, label_for


def scripted_attention(job: AttentionPayload, graph: dict[str, Any]) -> dict[str, Any]:
    nodes = {n["node_id"]: n for n in graph["nodes"]}
    if job.edge is not None:
        source, target = nodes.get(job.edge.source), nodes.get(job.edge.target)
        if source is None or target is None:
            raise UserError("the graph has no such node")
        weights = {(link["source"], link["target"]): link["weight"] for link in graph["links"]}
        weight = float(weights.get((job.edge.source, job.edge.target), 0.0))
        q, k = int(target["ctx_idx"]), int(source["ctx_idx"])
        shares = [] if q == k else HEAD_SHARES
        loadings = [
            {
                "layer": lh[0],
                "head": lh[1],
                "key_pos": k,
                "loading": weight * share,
                "pattern": pattern,
                "share": share,
            }
            for lh, share, pattern in shares
        ]
        return {
            "source": job.edge.source,
            "target": job.edge.target,
            "weight": weight,
            "same_position": weight if q == k else 0.0,
            "query_pos": q,
            "source_pos": k,
            "head_loadings": loadings,
            "heads": [{key: item[key] for key in ("layer", "head", "loading", "share")} for item in loadings],
            "labels": _labels([job.edge.source, job.edge.target], nodes),
        }
    head = job.head
    assert head is not None
    at = {
        p: [n for n in graph["nodes"] if n["ctx_idx"] == p and n["feature_type"] != "logit"][:3]
        for p in (head.query_pos, head.key_pos)
    }
    q_nodes = [n["node_id"] for n in at[head.query_pos]]
    outside = f"0_499_{head.key_pos}"
    k_nodes = [n["node_id"] for n in at[head.key_pos]] + [outside]
    pairs = [
        [a, b, round(2.0 / (1 + i + j), 4)] for i, a in enumerate(q_nodes) for j, b in enumerate(k_nodes)
    ]
    pairs.sort(key=lambda p: -abs(p[2]))
    q_marg = [[a, round(sum(p[2] for p in pairs if p[0] == a) + 0.1, 4)] for a in q_nodes]
    k_marg = [[b, round(sum(p[2] for p in pairs if p[1] == b) - 0.2, 4)] for b in k_nodes]
    pairs_total = sum(p[2] for p in pairs)
    q_bias_terms, k_bias_terms, bias = -0.2 * len(k_nodes), 0.1 * len(q_nodes), -1.5
    score = pairs_total + q_bias_terms + k_bias_terms + bias
    pattern = next((p for lh, _, p in HEAD_SHARES if lh == (head.layer, head.head)), 0.05)
    return {
        "layer": head.layer,
        "head": head.head,
        "query_pos": head.query_pos,
        "key_pos": head.key_pos,
        "score": score,
        "softcapped_score": score,
        "scale": 0.25,
        "bias": bias,
        "q_bias_terms": q_bias_terms,
        "k_bias_terms": k_bias_terms,
        "pairs_total": pairs_total,
        "pattern": pattern,
        "qk_tracing_results": {
            "pair_wise_contributors": pairs[: job.top],
            "top_q_marginal_contributors": q_marg[: job.top],
            "top_k_marginal_contributors": k_marg[: job.top],
        },
        "qk_only_nodes": [qk_only_node(outside)],
        "labels": _labels([*q_nodes, *k_nodes], nodes),
    }


def _labels(node_ids: list[str], nodes: dict[str, Any]) -> dict[str, str]:
    labels = {}
    for node_id in node_ids:
        node = nodes.get(node_id)
        if node is not None and node.get("clerp"):
            labels[node_id] = str(node["clerp"])
        elif node is None and node_id.count("_") == 2:
            layer, index, _ = node_id.split("_")
            labels[node_id] = label_for(int(layer), int(index))
    return labels
