"""Feature keys: which transcoder feature a graph node is, as `layer_index` (say `20_15589`).

Shared labels are stored per feature key, so every reader of graph JSON must agree on it: the
engine's import, the API's label index and the page (frontend/src/lib/graphformat.js, kept equal to
this module by tests/e2e/browser/test_format_parity.py). A node's key comes from, in order:

1. its node_id `L_f_p`;
2. its jsNodeId `L_f-x` (when its `layer` field, if any, agrees);
3. its `feature`, the Cantor pair of (layer, index) (when the `layer` field, if any, agrees);
4. a node_id that is one number, read as a Cantor pair the same way.

Only feature nodes have keys: errors, embeddings and logits have none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from attrgraph.format.node_ids import (
    DIGITS,
    FEATURE_JS_ID,
    NodeType,
    cantor_unpair,
    node_type,
    parse_feature_id,
    whole_number,
)

_KEY_TEXT = re.compile(r"([0-9]+)_([0-9]+)")


@dataclass(frozen=True, order=True)
class FeatureKey:
    layer: int
    index: int

    @property
    def text(self) -> str:
        """`layer_index`: the form labels are stored and sent under."""
        return f"{self.layer}_{self.index}"


def parse_feature_key(text: str) -> FeatureKey | None:
    """`"20_15589"` -> FeatureKey(20, 15589); None for anything else."""
    match = _KEY_TEXT.fullmatch(text)
    return FeatureKey(int(match[1]), int(match[2])) if match else None


def feature_key(node: Mapping[str, Any]) -> FeatureKey | None:
    """The feature a node of graph JSON is; None when it is not a feature or does not say which."""
    if node_type(node.get("feature_type")) is not NodeType.FEATURE:
        return None
    node_id = str(node.get("node_id", ""))
    parsed = parse_feature_id(node_id)
    if parsed is not None:
        return FeatureKey(parsed[0], parsed[1])
    layer = whole_number(node.get("layer"))
    js_id = node.get("jsNodeId")
    js_match = FEATURE_JS_ID.fullmatch(js_id) if isinstance(js_id, str) else None
    if js_match and (layer is None or int(js_match[1]) == layer):
        return FeatureKey(int(js_match[1]), int(js_match[2]))
    for paired in (node.get("feature"), node_id if DIGITS.fullmatch(node_id) else None):
        value = whole_number(paired)
        if value is not None:
            key = FeatureKey(*cantor_unpair(value))
            if layer is None or key.layer == layer:
                return key
    return None


def feature_key_text(node: Mapping[str, Any]) -> str | None:
    """`feature_key` as `layer_index`, or None."""
    key = feature_key(node)
    return key.text if key is not None else None
