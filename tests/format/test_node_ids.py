"""Node ids and types: the writers give the documented ids, the readers read both error conventions."""

from __future__ import annotations

import pytest

from attrgraph.format import node_ids as ids
from attrgraph.format.node_ids import NodeType, node_type


@pytest.mark.parametrize(
    ("feature_type", "expected"),
    [
        ("cross layer transcoder", NodeType.FEATURE),
        ("per layer transcoder", NodeType.FEATURE),
        ("lorsa", NodeType.FEATURE),
        (None, NodeType.FEATURE),
        ("mlp reconstruction error", NodeType.ERROR),
        ("lorsa error", NodeType.ERROR),
        ("MLP Reconstruction Error", NodeType.ERROR),
        ("embedding", NodeType.EMBEDDING),
        (" Embedding ", NodeType.EMBEDDING),
        ("logit", NodeType.LOGIT),
    ],
)
def test_node_types(feature_type: object, expected: NodeType) -> None:
    assert node_type(feature_type) is expected


def test_writers_follow_the_conventions() -> None:
    assert ids.feature_id(20, 15589, 5) == "20_15589_5"
    assert ids.feature_js_id(20, 15589) == "20_15589-0"
    assert ids.error_id(4, 3) == "4_-1_3"
    assert ids.error_js_id(4, 3) == "4_-1-3"
    assert ids.legacy_error_id(4, 3) == "0_4_3"
    assert ids.embedding_id(651, 1) == "E_651_1"
    assert ids.embedding_js_id(651, 1) == "E_651-1"
    assert ids.logit_id(26, 22605, 5) == "27_22605_5"
    assert ids.logit_js_id(22605, 5) == "L_22605-5"
    assert ids.process_token("a\nb\tc\r") == "a⏎b→c↵"


def test_cantor_pairing() -> None:
    assert ids.cantor_pair(20, 15589) == 121843834  # as circuit-tracer writes the example's feature
    assert ids.cantor_pair(0, 0) == 0 and ids.cantor_pair(1, 0) == 1 and ids.cantor_pair(0, 1) == 2
    for layer in (0, 1, 7, 61, 500):
        for index in (0, 1, 2, 999, 16383, 2_500_000, 10**9):
            assert ids.cantor_unpair(ids.cantor_pair(layer, index)) == (layer, index)
    # every number is exactly one pair
    seen = {ids.cantor_unpair(z) for z in range(5000)}
    assert len(seen) == 5000 and all(ids.cantor_pair(*pair) < 5000 for pair in seen)


def test_error_addresses_in_both_conventions() -> None:
    error = "mlp reconstruction error"
    assert ids.error_address({"node_id": "4_-1_3", "feature_type": error}) == (4, 3)
    assert ids.error_address({"node_id": "0_4_3", "feature_type": error}) == (4, 3)  # 0.5.0 and older
    assert ids.error_address({"node_id": "x", "jsNodeId": "4_-1-3"}) == (4, 3)
    # the layer / ctx_idx fields win over the id, as circuit-tracer always writes them
    assert ids.error_address({"node_id": "0_4_3", "layer": "4", "ctx_idx": 3}) == (4, 3)
    assert ids.error_address({"node_id": "9_9_9"}) is None
    assert ids.error_address({"node_id": "err"}) is None


def test_embedding_and_logit_readers() -> None:
    assert ids.embedding_address({"node_id": "E_651_1"}) == (651, 1)
    assert ids.embedding_address({"node_id": "emb", "jsNodeId": "E_651-1"}) == (651, 1)
    assert ids.embedding_address({"node_id": "emb"}) is None
    assert ids.logit_token('Output " Austin" (p=0.637)') == " Austin"
    assert ids.logit_token('Output "(x)" (p=1.000)') == "(x)"
    assert ids.logit_token("Austin") is None and ids.logit_token(None) is None
    assert ids.parse_feature_id("20_15589_5") == (20, 15589, 5)
    assert ids.parse_feature_id("20_-1_5") is None and ids.parse_feature_id("E_1_2") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3),
        (3.0, 3),
        ("3", 3),
        ("007", 7),
        (0, 0),
        (-1, None),
        (1.5, None),
        (True, None),
        ("3a", None),
        (" 3", None),
        ("", None),
        (None, None),
        ("٣", None),
    ],
)
def test_whole_numbers(value: object, expected: int | None) -> None:
    assert ids.whole_number(value) == expected
