"""The attribution graph: nodes, sparse weighted edges, and what pruning decided.

Node order (the index space every edge uses), as in circuit-tracer so numbers line up:

    [ features (n_features) | errors (n_layers * n_pos, layer-major) | tokens (n_pos) | logits (n_logits) ]

Edges are stored sparsely as (target, source, weight) triples: memory grows with the edges kept, not
with the square of the node count. Only feature and logit nodes are targets (have incoming edges).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import torch
from torch import Tensor


class NodeKind(StrEnum):
    FEATURE = "feature"
    ERROR = "error"
    TOKEN = "token"
    LOGIT = "logit"


@dataclass(frozen=True)
class LogitTarget:
    """One output the graph explains.

    For an ordinary target `token_id` is the vocabulary id and `minus_token_id` is None. For a
    logit difference (A minus B) `token_id` is A and `minus_token_id` is B.
    """

    token_id: int
    token: str
    probability: float
    minus_token_id: int | None = None
    minus_token: str | None = None

    @property
    def label(self) -> str:
        if self.minus_token_id is None:
            return self.token
        return f"{self.token} − {self.minus_token}"


@dataclass
class Graph:
    """An attribution graph for one prompt.

    Attributes callers use most:
      features     (n_features, 3) int64: layer, position, feature index of each feature node
      activations  (n_features,) float32: activation of each feature node
      edges        (n_edges, 2) int64: [target node, source node]
      weights      (n_edges,) float32: signed direct effect of source on target
      target_values (n_nodes,) float32: each target's input (pre-activation / demeaned logit); 0 for sources
      bias_terms   (n_nodes,) float32: the part of each target's input that comes from no node (biases)
      unexplored   (n_nodes,) float32: signed weight from features left out of the graph (max_feature_nodes)
                   or edges dropped by max_edges_per_target, so edges + bias + unexplored == target value
    """

    prompt: str
    token_ids: list[int]
    tokens: list[str]
    n_layers: int
    model_id: str
    transcoder_id: str
    features: Tensor
    activations: Tensor
    logit_targets: list[LogitTarget]
    edges: Tensor
    weights: Tensor
    target_values: Tensor
    bias_terms: Tensor
    unexplored: Tensor
    row_abs_totals: Tensor
    settings: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    feature_labels: dict[str, str] = field(default_factory=dict)
    # what an imported graph JSON held that the fields above do not model (engine/interop/carried.py)
    carried: dict[str, Any] = field(default_factory=dict)
    # QK attributions written onto nodes at export (attrgraph.format.qk entries; `--qk`)
    attention: list[dict[str, Any]] = field(default_factory=list)

    # -- index arithmetic -------------------------------------------------------------------

    @property
    def n_pos(self) -> int:
        return len(self.token_ids)

    @property
    def n_features(self) -> int:
        return int(self.features.shape[0])

    @property
    def n_logits(self) -> int:
        return len(self.logit_targets)

    @property
    def error_offset(self) -> int:
        return self.n_features

    @property
    def token_offset(self) -> int:
        return self.n_features + self.n_layers * self.n_pos

    @property
    def logit_offset(self) -> int:
        return self.token_offset + self.n_pos

    @property
    def n_nodes(self) -> int:
        return self.logit_offset + self.n_logits

    def error_index(self, layer: int, pos: int) -> int:
        return self.error_offset + layer * self.n_pos + pos

    def token_index(self, pos: int) -> int:
        return self.token_offset + pos

    def logit_index(self, i: int) -> int:
        return self.logit_offset + i

    def kind(self, node: int) -> NodeKind:
        if node < self.error_offset:
            return NodeKind.FEATURE
        if node < self.token_offset:
            return NodeKind.ERROR
        if node < self.logit_offset:
            return NodeKind.TOKEN
        return NodeKind.LOGIT

    def node_id(self, node: int) -> str:
        """The interop node id (docs/graph-format.md): `L_f_p`, `L_-1_p`, `E_t_p`, `{L+1}_v_p`."""
        kind = self.kind(node)
        if kind is NodeKind.FEATURE:
            layer, pos, feature = (int(v) for v in self.features[node])
            return f"{layer}_{feature}_{pos}"
        if kind is NodeKind.ERROR:
            layer, pos = divmod(node - self.error_offset, self.n_pos)
            return f"{layer}_-1_{pos}"
        if kind is NodeKind.TOKEN:
            pos = node - self.token_offset
            return f"E_{self.token_ids[pos]}_{pos}"
        target = self.logit_targets[node - self.logit_offset]
        return f"{self.n_layers + 1}_{target.token_id}_{self.n_pos - 1}"

    def logit_probabilities(self) -> Tensor:
        return torch.tensor([t.probability for t in self.logit_targets], dtype=torch.float32)

    def dense_adjacency(self) -> Tensor:
        """(n_nodes, n_nodes) matrix, rows = targets. For tests and small graphs only."""
        matrix = torch.zeros(self.n_nodes, self.n_nodes, dtype=torch.float32)
        matrix.index_put_((self.edges[:, 0], self.edges[:, 1]), self.weights, accumulate=True)
        return matrix
