"""Feature keys: every way a graph JSON names a feature gives the same `layer_index`, and nodes that
are not features (or do not say which) have none."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from attrgraph.format.feature_keys import FeatureKey, feature_key, feature_key_text, parse_feature_key
from attrgraph.format.node_ids import cantor_pair
from tests.support.collab import example_graph
from tests.support.format_cases import node_cases

PAIRED = cantor_pair(20, 15589)


def node(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "node_id": "20_15589_5",
        "feature": PAIRED,
        "layer": "20",
        "ctx_idx": 5,
        "feature_type": "cross layer transcoder",
        "jsNodeId": "20_15589-0",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, "20_15589"),
        ({"node_id": "feature-a"}, "20_15589"),  # jsNodeId
        ({"node_id": "feature-a", "jsNodeId": "x"}, "20_15589"),  # Cantor `feature`
        ({"node_id": "feature-a", "jsNodeId": "x", "feature": str(PAIRED)}, "20_15589"),
        ({"node_id": str(PAIRED), "jsNodeId": "x", "feature": "none"}, "20_15589"),  # the id is the pair
        ({"node_id": "feature-a", "layer": "7"}, None),  # neither jsNodeId nor Cantor agrees with layer 7
        (  # the jsNodeId names another layer; the Cantor pair agrees with the layer field
            {"node_id": "feature-a", "jsNodeId": "20_3-0", "layer": "21", "feature": cantor_pair(21, 4)},
            "21_4",
        ),
        ({"node_id": "feature-a", "layer": "E"}, "20_15589"),  # an unreadable layer checks nothing
        ({"node_id": "feature-a", "jsNodeId": "x", "feature": -1}, None),
        ({"node_id": "feature-a", "jsNodeId": "x", "feature": True}, None),
        ({"feature_type": "lorsa"}, "20_15589"),
        ({"feature_type": "mlp reconstruction error"}, None),
        ({"feature_type": "embedding"}, None),
        ({"feature_type": "logit"}, None),
    ],
)
def test_feature_key_sources(fields: dict[str, Any], expected: str | None) -> None:
    assert feature_key_text(node(**fields)) == expected


def test_every_convention_of_the_example_gives_the_node_id_key() -> None:
    """Take each feature of a real circuit-tracer export and strip what names it, source by source."""
    features = [n for n in example_graph()["nodes"] if n["feature_type"] == "cross layer transcoder"]
    assert features
    for original in features:
        layer, index, _ = (int(x) for x in original["node_id"].split("_"))
        want = FeatureKey(layer, index)
        variants = [
            original,
            {**original, "node_id": "n"},
            {**original, "node_id": "n", "jsNodeId": None},
            {**original, "node_id": str(original["feature"]), "jsNodeId": None, "feature": None},
        ]
        for variant in variants:
            assert feature_key(variant) == want, variant


def test_parse_feature_key() -> None:
    assert parse_feature_key("20_15589") == FeatureKey(20, 15589)
    assert FeatureKey(20, 15589).text == "20_15589"
    for bad in ("20", "20_15589_5", "a_b", "20_-1", " 20_1", "20_1 "):
        assert parse_feature_key(bad) is None


def test_cases_shared_with_the_page_are_all_answered() -> None:
    """The parity cases (tests/support/format_cases.py) are JSON and exercise both outcomes."""
    cases = node_cases()
    json.dumps(cases)  # they travel to the browser as JSON
    keys = [feature_key_text(copy.deepcopy(c)) for c in cases]
    assert any(k is None for k in keys) and sum(k is not None for k in keys) > 40
