"""The links of an imported graph: node ids to Graph indices, with a fast path for well-formed links,
a checking loop that names the first bad one, and the old error ids that collide with features."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import torch
from torch import Tensor

from attrgraph.engine.interop.reading import fail, read_number


class FeatureRows(Protocol):
    features: list[tuple[int, int, int]]


def resolve_colliding_sources(
    links: list[Any],
    edges: Tensor,
    colliding: set[str],
    feature_index: Mapping[str, int],
    parsed: FeatureRows,
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


def parse_links(
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
        check_links(links, index_of, error_offset, logit_offset, target_index_of)
        raise fail("malformed links") from None
    if not all(type(w) is float or type(w) is int for w in weights):
        check_links(links, index_of, error_offset, logit_offset, target_index_of)
    edges = torch.tensor([targets, sources], dtype=torch.long).T.reshape(-1, 2).contiguous()
    target_index, source_index = edges[:, 0], edges[:, 1]
    if bool(((target_index >= error_offset) & (target_index < logit_offset)).any()) or bool(
        (source_index >= logit_offset).any()
    ):
        check_links(links, index_of, error_offset, logit_offset, target_index_of)
    return edges, torch.tensor(weights, dtype=torch.float32)


def check_links(
    links: list[Any],
    index_of: Mapping[str, int],
    error_offset: int,
    logit_offset: int,
    target_index_of: Mapping[str, int],
) -> None:
    for k, link in enumerate(links):
        if not isinstance(link, dict):
            raise fail(f"link {k} is not an object")
        source, target, weight = link.get("source"), link.get("target"), link.get("weight")
        if not isinstance(source, str) or not isinstance(target, str):
            raise fail(f"link {k} needs string source and target node ids")
        if source not in index_of:
            raise fail(f"link {k} comes from unknown node {source!r}")
        if target not in target_index_of:
            raise fail(f"link {k} goes to unknown node {target!r}")
        if error_offset <= target_index_of[target] < logit_offset:
            raise fail(f"link {k} goes into {target!r}, but errors and embeddings have no inputs")
        if index_of[source] >= logit_offset:
            raise fail(f"link {k} comes from logit {source!r}, but logits have no outputs")
        read_number(weight, f"weight of link {k}")
