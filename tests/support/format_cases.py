"""Graph JSON nodes in every convention the format reads (docs/graph-format.md): the cases that the
Python package attrgraph.format and its JavaScript twin (frontend/src/lib/graphformat.js) must
answer alike."""

from __future__ import annotations

import random
from typing import Any

from attrgraph.format.node_ids import cantor_pair

_DROP = object()


def _feature(node_id: Any, feature_layer: int, index: int, **fields: Any) -> dict[str, Any]:
    """A feature node as circuit-tracer writes it, with `fields` replaced (_DROP: left out)."""
    layer = feature_layer
    node: dict[str, Any] = {
        "node_id": node_id,
        "feature": cantor_pair(layer, index),
        "layer": str(layer),
        "ctx_idx": 3,
        "feature_type": "cross layer transcoder",
        "jsNodeId": f"{layer}_{index}-0",
    }
    node.update(fields)
    return {k: v for k, v in node.items() if v is not _DROP}


def node_cases() -> list[dict[str, Any]]:
    cases = [
        # features: every source of the key, and sources that disagree with the layer field
        _feature("20_15589_5", 20, 15589),
        _feature("feature-a", 20, 15589),
        _feature("feature-a", 20, 15589, jsNodeId="x"),
        _feature("feature-a", 20, 15589, jsNodeId=_DROP),
        _feature(str(cantor_pair(20, 15589)), 20, 15589, jsNodeId=_DROP, feature=_DROP),
        _feature(str(cantor_pair(20, 15589)), 20, 15589, jsNodeId=_DROP, feature=_DROP, layer=_DROP),
        _feature("feature-a", 20, 15589, layer="7"),
        _feature("feature-a", 20, 15589, layer=_DROP),
        _feature("feature-a", 20, 15589, jsNodeId="x", layer=_DROP),
        _feature("feature-a", 20, 15589, jsNodeId="x", feature=str(cantor_pair(20, 15589))),
        _feature("feature-a", 0, 0, jsNodeId="x"),
        _feature("feature-a", 20, 15589, jsNodeId="x", feature=True),
        _feature("feature-a", 20, 15589, jsNodeId="x", feature=-5),
        _feature("feature-a", 20, 15589, jsNodeId="x", feature="12a"),
        _feature("feature-a", 20, 15589, jsNodeId="x", feature=_DROP),
        _feature("feature-a", 20, 15589, jsNodeId="x", feature=float(cantor_pair(20, 15589))),
        _feature("feature-a", 20, 15589, jsNodeId="x", feature=1.5),
        _feature("20_15589_5", 20, 15589, feature_type="Cross Layer Transcoder "),
        _feature("3_7_1", 3, 7, feature_type="lorsa"),
        _feature("3_7_1", 3, 7, feature_type="per layer transcoder"),
        _feature("3_7_1", 3, 7, feature_type=_DROP),
        _feature(None, 3, 7, jsNodeId=None),
        # errors: today's ids, circuit-tracer 0.5.0's colliding ids, jsNodeIds only
        {
            "node_id": "4_-1_4",
            "feature": -1,
            "layer": "4",
            "ctx_idx": 4,
            "feature_type": "mlp reconstruction error",
        },
        {
            "node_id": "0_4_4",
            "feature": -1,
            "layer": "4",
            "ctx_idx": 4,
            "feature_type": "mlp reconstruction error",
        },
        {"node_id": "0_4_4", "feature_type": "mlp reconstruction error"},
        {"node_id": "4_-1_4", "feature_type": "mlp reconstruction error"},
        {"node_id": "err", "jsNodeId": "4_-1-4", "feature_type": "mlp reconstruction error"},
        {"node_id": "err", "feature_type": "lorsa error"},
        {"node_id": "1_2_3", "feature_type": "mlp reconstruction error"},
        # embeddings and logits are never features
        {"node_id": "E_651_1", "feature": 1, "layer": "E", "ctx_idx": 1, "feature_type": "embedding"},
        {"node_id": "27_22605_5", "feature": 22605, "layer": "27", "ctx_idx": 5, "feature_type": "logit"},
        {"node_id": "27_22605_5", "feature_type": " Logit"},
    ]
    # Cantor numbers from small to large: the page's float square root must still land exactly.
    rng = random.Random(0)
    for _ in range(40):
        layer, index = rng.randrange(0, 80), rng.choice([rng.randrange(0, 50), rng.randrange(0, 10**7)])
        cases.append(_feature(f"n{index}", layer, index, jsNodeId=_DROP))
    for w in (10**6, 4 * 10**6 - 1):  # values on a diagonal's first and last number
        cases.append(_feature("d", w, 0, jsNodeId=_DROP))
        cases.append(_feature("d", 0, w, jsNodeId=_DROP))
    return cases
