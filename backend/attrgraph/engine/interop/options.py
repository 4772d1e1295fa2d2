"""What an export may add to a graph besides the graph itself: one options object that `to_json`,
`dumps` and the document builder share, instead of the same nine keywords passed down each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from attrgraph.engine.pruning import PruneResult


@dataclass(frozen=True)
class ExportOptions:
    """prune_result: export only its kept nodes and edges (and, as circuit-tracer does, only the kept
        nodes that have a kept link, plus every embedding and logit); without it every feature and
        edge is exported, plus the error nodes that have an edge.
    slug: graph id (default: from the prompt); scan: model / dictionary id (default graph.model_id).
    feature_json_base_url: where the viewer finds `{base}/{feature}.json` feature files.
    node_threshold: metadata.node_threshold (default: the prune result's).
    clerps: `[[key, label], ...]` labels set by the user; key is a node id or a feature key
        `layer_index`; they override `graph.feature_labels` and also travel in qParams.clerps.
    pinned_ids, supernodes: saved view state (qParams); the pinned subgraph's scores are added to
        metadata.attrgraph.scores.
    """

    prune_result: PruneResult | None = None
    slug: str | None = None
    scan: str | None = None
    feature_json_base_url: str | None = None
    node_threshold: float | None = None
    clerps: Sequence[Sequence[str]] | None = None
    pinned_ids: Sequence[str] | None = None
    supernodes: Sequence[Sequence[str]] | None = None


class ExportFields(TypedDict, total=False):
    """ExportOptions' fields as keywords (`to_json(graph, slug=...)`); None leaves the options' value."""

    prune_result: PruneResult | None
    slug: str | None
    scan: str | None
    feature_json_base_url: str | None
    node_threshold: float | None
    clerps: Sequence[Sequence[str]] | None
    pinned_ids: Sequence[str] | None
    supernodes: Sequence[Sequence[str]] | None
