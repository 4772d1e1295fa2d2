"""What attention explanations return: QK attributions of one head's score, head loadings of one edge.

Both keep every term, so a reader can check them: a QK attribution's pairs, one-sided bias terms and
bias sum to its score; an edge's head loadings (plus its same-position part) sum to its weight.
`to_dict` gives Neuronpedia's shape (`qk_tracing_results`, `qk_only_nodes`) plus those checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from attrgraph.format.node_ids import EMBEDDING_TYPE, ERROR_TYPE, FEATURE_TYPE, parse_feature_id


@dataclass
class QKAttribution:
    """The pre-softmax score of head `head` at layer `layer` from `query_pos` to `key_pos`, split.

    q = sum_i q_parts[i] + q_bias and k = sum_j k_parts[j] + k_bias (each part one source's direct
    contribution through the frozen model, rotary embeddings and QK-norms included), so

        score = scale * q.k = sum_ij pairs[i, j] + sum_i q_with_k_bias[i] + sum_j k_with_q_bias[j] + bias
    """

    layer: int
    head: int
    query_pos: int
    key_pos: int
    score: float  # scale * q.k from the forward pass itself (before any soft-capping)
    scale: float
    softcap: float | None
    q_nodes: list[str]  # (n_q,) node ids of the sources with a nonzero part in q
    k_nodes: list[str]  # (n_k,)
    q_parts: Tensor  # (n_q, d_head)
    k_parts: Tensor  # (n_k, d_head)
    q_bias: Tensor  # (d_head,)
    k_bias: Tensor  # (d_head,)
    graph_nodes: frozenset[str] = field(default_factory=frozenset)  # nodes of the graph it explains

    @property
    def pairs(self) -> Tensor:
        """(n_q, n_k) scale * q_i . k_j"""
        return self.scale * self.q_parts.double() @ self.k_parts.double().T

    @property
    def q_with_k_bias(self) -> Tensor:
        return self.scale * self.q_parts.double() @ self.k_bias.double()  # (n_q,)

    @property
    def k_with_q_bias(self) -> Tensor:
        return self.scale * self.k_parts.double() @ self.q_bias.double()  # (n_k,)

    @property
    def bias(self) -> float:
        """The score with every source at zero."""
        return float(self.scale * self.q_bias.double() @ self.k_bias.double())

    @property
    def q_marginals(self) -> Tensor:
        """(n_q,) each query-side source's part of the score: scale * q_i . k (k whole, bias included)."""
        k = self.k_parts.double().sum(0) + self.k_bias.double()
        return self.scale * self.q_parts.double() @ k

    @property
    def k_marginals(self) -> Tensor:
        q = self.q_parts.double().sum(0) + self.q_bias.double()
        return self.scale * self.k_parts.double() @ q  # (n_k,)

    def decomposed_score(self) -> float:
        total = self.pairs.sum() + self.q_with_k_bias.sum() + self.k_with_q_bias.sum()
        return float(total) + self.bias

    @property
    def softcapped_score(self) -> float:
        """The score the softmax sees (Gemma 2 soft-caps it; the split is of the score before)."""
        if self.softcap is None:
            return self.score
        return float(self.softcap * torch.tanh(torch.tensor(self.score / self.softcap)))

    def to_dict(self, top: int = 10) -> dict[str, Any]:
        """Neuronpedia's `qk_tracing_results` (largest |attribution| first) plus checkable fields."""
        pairs = self.pairs
        order = pairs.abs().flatten().argsort(descending=True)[:top].tolist()
        n_k = pairs.shape[1]
        pair_list = [
            [self.q_nodes[i // n_k], self.k_nodes[i % n_k], float(pairs.flatten()[i])] for i in order
        ]
        q_top = _top(self.q_nodes, self.q_marginals, top)
        k_top = _top(self.k_nodes, self.k_marginals, top)
        used = {p[0] for p in pair_list} | {p[1] for p in pair_list} | {n for n, _ in q_top + k_top}
        outside = sorted(n for n in used if self.graph_nodes and n not in self.graph_nodes)
        return {
            "layer": self.layer,
            "head": self.head,
            "query_pos": self.query_pos,
            "key_pos": self.key_pos,
            "score": self.score,
            "softcapped_score": self.softcapped_score,
            "scale": self.scale,
            "bias": self.bias,
            "q_bias_terms": float(self.k_with_q_bias.sum()),  # q's bias with each key-side source
            "k_bias_terms": float(self.q_with_k_bias.sum()),  # k's bias with each query-side source
            "pairs_total": float(pairs.sum()),
            "qk_tracing_results": {
                "pair_wise_contributors": pair_list,
                "top_q_marginal_contributors": [[n, v] for n, v in q_top],
                "top_k_marginal_contributors": [[n, v] for n, v in k_top],
            },
            "qk_only_nodes": [qk_only_node(n) for n in outside],
        }


def _top(nodes: list[str], values: Tensor, top: int) -> list[tuple[str, float]]:
    order = values.abs().argsort(descending=True)[:top].tolist()
    return [(nodes[i], float(values[i])) for i in order]


def qk_only_node(node_id: str) -> dict[str, Any]:
    """A node descriptor for a contributor outside the (pruned) graph, flagged as Neuronpedia does."""
    entry: dict[str, Any] = {"node_id": node_id, "is_from_qk_tracing": True}
    layer, middle, pos = node_id.split("_")
    entry["ctx_idx"] = int(pos)
    if layer == "E":
        entry.update(feature_type=EMBEDDING_TYPE, layer="E", feature=int(pos))
    elif middle == "-1":
        entry.update(feature_type=ERROR_TYPE, layer=layer, feature=-1)
    else:
        parsed = parse_feature_id(node_id)
        entry.update(feature_type=FEATURE_TYPE, layer=layer, feature=parsed[1] if parsed else int(middle))
    return entry


@dataclass
class HeadLoadings:
    """An edge's weight split by the attention head that carried it into the target's position.

    Last hop: every path from a source at p_s to a target at p_t != p_t enters p_t for the last
    time through exactly one (layer, head, key position), so the loadings partition the weight.
    """

    source: str
    target: str
    weight: float  # the edge weight recomputed here (one backward pass)
    same_position: float  # paths that never leave the target's position (p_s == p_t: all of it)
    loadings: dict[tuple[int, int, int], float]  # (layer, head, key_pos) -> part of the weight

    def by_head(self) -> dict[tuple[int, int], float]:
        heads: dict[tuple[int, int], float] = {}
        for (layer, head, _), value in self.loadings.items():
            heads[(layer, head)] = heads.get((layer, head), 0.0) + value
        return heads

    def total(self) -> float:
        return self.same_position + sum(self.loadings.values())

    def to_dict(self) -> dict[str, Any]:
        ordered = sorted(self.loadings.items(), key=lambda kv: -abs(kv[1]))
        return {
            "source": self.source,
            "target": self.target,
            "weight": self.weight,
            "same_position": self.same_position,
            "head_loadings": [
                {"layer": layer, "head": head, "key_pos": key_pos, "loading": value}
                for (layer, head, key_pos), value in ordered
            ],
        }
