"""Made-up graphs in the graph JSON format, for the fake tracer, the tests and the benchmarks.

Pure data (no torch). The node builders write the fields a traced graph has (docs/graph-format.md),
so scripted graphs (tests/support/dallas.py) and random ones share them. `synthetic_graph` makes a
random graph shaped like a traced one: embeddings, transcoder features at (layer, position), error
nodes, logits at the last position, and links only from a lower layer at the same or an earlier
position (errors and embeddings are pure sources).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from typing import Any

EMBEDDING = "embedding"
FEATURE = "cross layer transcoder"
ERROR = "mlp reconstruction error"
LOGIT = "logit"
VOCAB = 1000


def cantor(layer: int, index: int) -> int:
    """The `feature` field of a transcoder node: the Cantor pairing of (layer, feature index)."""
    return (layer + index) * (layer + index + 1) // 2 + index


def token_id(text: str, vocab: int = VOCAB) -> int:
    """A made-up but stable token id for `text`."""
    return zlib.crc32(text.encode()) % vocab


def embedding_node(token: str, token_id: int, pos: int) -> dict[str, Any]:
    return {
        "node_id": f"E_{token_id}_{pos}",
        "feature": pos,
        "layer": "E",
        "ctx_idx": pos,
        "feature_type": EMBEDDING,
        "jsNodeId": f"E_{token_id}-{pos}",
        "clerp": f'Emb: "{token}"',
        "influence": None,
        "activation": None,
    }


def feature_node(
    layer: int, index: int, pos: int, *, label: str, activation: float, influence: float
) -> dict[str, Any]:
    return {
        "node_id": f"{layer}_{index}_{pos}",
        "feature": cantor(layer, index),
        "layer": str(layer),
        "ctx_idx": pos,
        "feature_type": FEATURE,
        "jsNodeId": f"{layer}_{index}-0",
        "clerp": label,
        "influence": influence,
        "activation": activation,
    }


def error_node(layer: int, pos: int, *, label: str, influence: float) -> dict[str, Any]:
    return {
        "node_id": f"{layer}_-1_{pos}",
        "feature": -1,
        "layer": str(layer),
        "ctx_idx": pos,
        "feature_type": ERROR,
        "jsNodeId": f"{layer}_-1-{pos}",
        "clerp": label,
        "influence": influence,
        "activation": None,
    }


def logit_node(
    token: str, token_id: int, pos: int, *, n_layers: int, probability: float, is_target: bool
) -> dict[str, Any]:
    return {
        "node_id": f"{n_layers + 1}_{token_id}_{pos}",
        "feature": token_id,
        "layer": str(n_layers + 1),
        "ctx_idx": pos,
        "feature_type": LOGIT,
        "jsNodeId": f"L_{token_id}-{pos}",
        "clerp": f'Output "{token}" (p={probability:.3f})',
        "token_prob": probability,
        "is_target_logit": is_target,
        "influence": None,
        "activation": None,
    }


def level(node: dict[str, Any]) -> int:
    """The node's layer as a number; embeddings are -1, logits n_layers + 1."""
    return -1 if node["layer"] == "E" else int(node["layer"])


def document(
    prompt: str,
    tokens: Sequence[str],
    nodes: list[dict[str, Any]],
    links: list[dict[str, Any]],
    *,
    slug: str,
    scan: str,
    **metadata: Any,
) -> dict[str, Any]:
    """The whole graph JSON around `nodes` and `links`; `metadata` adds fields to its metadata."""
    return {
        "metadata": {
            "slug": slug,
            "scan": scan,
            "prompt_tokens": list(tokens),
            "prompt": prompt,
            "schema_version": 1,
            **metadata,
        },
        "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both"},
        "nodes": nodes,
        "links": links,
    }


def synthetic_graph(
    prompt: str,
    tokens: Sequence[str],
    *,
    n_features: int,
    links_per_node: int = 4,
    n_links: int | None = None,
    n_layers: int = 4,
    n_errors: int = 0,
    n_logits: int = 1,
    d_transcoder: int = 16384,
    max_influence: float = 0.79,
    seed: int = 0,
    slug: str = "synthetic",
    scan: str = "fake-model",
) -> dict[str, Any]:
    """A random graph with len(tokens) embeddings, n_features features, n_errors error nodes and
    n_logits logits (the first the target), in that order.

    Every feature and logit gets up to `links_per_node` incoming links from distinct lower-layer
    nodes at its position or before; with `n_links`, exactly that many links are spread over them
    instead. Influences rise with the node's place up to `max_influence` (below the default pruning
    threshold, so every node is drawn). Later positions hold more features, as in traced graphs.
    """
    if not tokens:
        raise ValueError("a graph needs at least one token")
    if n_logits < 1:
        raise ValueError("a graph needs at least one logit")
    if n_features > n_layers * len(tokens) * d_transcoder:
        raise ValueError("more features than (layer, position, index) triples")
    rng = random.Random(seed)
    n_pos = len(tokens)
    last = n_pos - 1
    nodes = [embedding_node(tok, token_id(tok), pos) for pos, tok in enumerate(tokens)]
    seen: set[tuple[int, int, int]] = set()
    for k in range(n_features):
        while True:
            layer = rng.randrange(n_layers)
            pos = min(last, int(n_pos * rng.random() ** 0.6))
            index = rng.randrange(d_transcoder)
            if (layer, index, pos) not in seen:
                seen.add((layer, index, pos))
                break
        nodes.append(
            feature_node(
                layer,
                index,
                pos,
                label=f"feature {layer}/{index}",
                activation=round(rng.uniform(0.2, 12), 3),
                influence=round(max_influence * (k + 1) / n_features, 5),
            )
        )
    for k in range(min(n_errors, n_layers * n_pos)):
        layer, pos = k % n_layers, last - k // n_layers
        nodes.append(error_node(layer, pos, label="Err", influence=round(rng.uniform(0.2, 0.7), 4)))
    for k in range(n_logits):
        nodes.append(
            logit_node(
                f" tok{k}",
                VOCAB + k,
                last,
                n_layers=n_layers,
                probability=round(0.5 / (k + 1), 4),
                is_target=k == 0,
            )
        )
    targets = [n for n in nodes if n["feature_type"] in (FEATURE, LOGIT)]
    sources_at: dict[tuple[int, int], list[str]] = {}

    def sources(target: dict[str, Any]) -> list[str]:
        key = (level(target), target["ctx_idx"])
        if key not in sources_at:
            sources_at[key] = [n["node_id"] for n in nodes if level(n) < key[0] and n["ctx_idx"] <= key[1]]
        return sources_at[key]

    links: dict[tuple[str, str], float] = {}

    def weight() -> float:
        return round(rng.gauss(0, 1) * (3 if rng.random() < 0.05 else 0.5), 4)

    if n_links is None:
        for target in targets:
            candidates = sources(target)
            for source in rng.sample(candidates, min(links_per_node, len(candidates))):
                links[(source, target["node_id"])] = weight()
    else:
        if n_links > sum(len(sources(t)) for t in targets):
            raise ValueError(f"{n_links} links do not fit in this graph")
        open_targets = [t for t in targets if sources(t)]
        while len(links) < n_links:
            target = rng.choice(open_targets)
            links.setdefault((rng.choice(sources(target)), target["node_id"]), weight())
    return document(
        prompt,
        tokens,
        nodes,
        [{"source": s, "target": t, "weight": w} for (s, t), w in links.items()],
        slug=slug,
        scan=scan,
    )
