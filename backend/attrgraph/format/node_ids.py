"""Node ids and node types of the graph JSON (docs/graph-format.md): how each kind of node is named,
and how to read a name back, in both error-node conventions circuit-tracer has used.

| node                              | node_id             | jsNodeId        | feature                |
|-----------------------------------|---------------------|-----------------|------------------------|
| transcoder feature f, layer L, p  | `L_f_p`             | `L_f-0`         | Cantor pair of (L, f)  |
| MLP reconstruction error, L, p    | `L_-1_p`            | `L_-1-p`        | -1                     |
|   (circuit-tracer 0.5.0 and older)| `0_L_p`             |                 |                        |
| embedding of token id t at p      | `E_t_p`             | `E_t-p`         | p                      |
| logit of vocabulary id v at p     | `{n_layers+1}_v_p`  | `L_v-p`         | v                      |

The old error id `0_L_p` is also the id of layer-0 feature L at p: only `feature_type` tells them apart.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from enum import Enum
from typing import Any

FEATURE_TYPE = "cross layer transcoder"  # circuit-tracer writes it for per-layer transcoders too
ERROR_TYPE = "mlp reconstruction error"
EMBEDDING_TYPE = "embedding"
LOGIT_TYPE = "logit"


class NodeType(Enum):
    FEATURE = "feature"
    ERROR = "error"
    EMBEDDING = "embedding"
    LOGIT = "logit"


def node_type(feature_type: object) -> NodeType:
    """What a `feature_type` names. Any type with "error" in it is an error node (circuit-tracer's
    `mlp reconstruction error`, Neuronpedia's `lorsa error`); any other unknown type is a feature."""
    text = str(feature_type if feature_type is not None else "").strip().lower()
    if text == EMBEDDING_TYPE:
        return NodeType.EMBEDDING
    if text == LOGIT_TYPE:
        return NodeType.LOGIT
    if "error" in text:
        return NodeType.ERROR
    return NodeType.FEATURE


# -- Cantor pairing: Neuronpedia's single-number `feature` of a transcoder feature ----------------


def cantor_pair(layer: int, index: int) -> int:
    return (layer + index) * (layer + index + 1) // 2 + index


def cantor_unpair(value: int) -> tuple[int, int]:
    """Inverse of `cantor_pair`: (layer, index)."""
    w = (math.isqrt(8 * value + 1) - 1) // 2
    index = value - w * (w + 1) // 2
    return w - index, index


# -- writing ids ------------------------------------------------------------------------------------


def feature_id(layer: int, index: int, pos: int) -> str:
    return f"{layer}_{index}_{pos}"


def error_id(layer: int, pos: int) -> str:
    return f"{layer}_-1_{pos}"


def legacy_error_id(layer: int, pos: int) -> str:
    """The id circuit-tracer 0.5.0 and earlier gave error nodes (it collides with layer-0 features)."""
    return f"0_{layer}_{pos}"


def embedding_id(token_id: int, pos: int) -> str:
    return f"E_{token_id}_{pos}"


def logit_id(n_layers: int, vocab_id: int, pos: int) -> str:
    return f"{n_layers + 1}_{vocab_id}_{pos}"


def feature_js_id(layer: int, index: int) -> str:
    return f"{layer}_{index}-0"


def error_js_id(layer: int, pos: int) -> str:
    return f"{layer}_-1-{pos}"


def embedding_js_id(token_id: int, pos: int) -> str:
    return f"E_{token_id}-{pos}"


def logit_js_id(vocab_id: int, pos: int) -> str:
    return f"L_{vocab_id}-{pos}"


def process_token(token: str) -> str:
    """Token text as circuit-tracer shows it (newline, tab and carriage return made visible)."""
    return token.replace("\n", "⏎").replace("\t", "→").replace("\r", "↵")


# -- reading ids ------------------------------------------------------------------------------------

DIGITS = re.compile(r"[0-9]+")
THREE_NUMBERS = re.compile(r"([0-9]+)_([0-9]+)_([0-9]+)")  # `L_f_p` features, `{n+1}_v_p` logits, old errors
FEATURE_JS_ID = re.compile(r"([0-9]+)_([0-9]+)-[0-9]+")
ERROR_ID = re.compile(r"([0-9]+)_-1_([0-9]+)")
ERROR_JS_ID = re.compile(r"([0-9]+)_-1-([0-9]+)")
EMBEDDING_ID = re.compile(r"E_([0-9]+)_([0-9]+)")
EMBEDDING_JS_ID = re.compile(r"E_([0-9]+)-([0-9]+)")
LOGIT_CLERP = re.compile(r'Output "(.*)" \(p=[^()]*\)', re.DOTALL)


def whole_number(value: Any) -> int | None:
    """A JSON value as a non-negative integer (`3`, `3.0` or `"3"`), else None (graphformat.js
    `wholeNumber` reads values the same way)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and value >= 0 else None
    if isinstance(value, str) and DIGITS.fullmatch(value):
        return int(value)
    return None


def parse_feature_id(node_id: str) -> tuple[int, int, int] | None:
    """(layer, index, position) of an `L_f_p` id."""
    match = THREE_NUMBERS.fullmatch(node_id)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def error_address(node: Mapping[str, Any]) -> tuple[int, int] | None:
    """(layer, position) of an error node: its `layer` / `ctx_idx` fields, else its id in either
    convention (`L_-1_p`, or the old `0_L_p`), else its jsNodeId `L_-1-p`."""
    layer, pos = whole_number(node.get("layer")), whole_number(node.get("ctx_idx"))
    if layer is not None and pos is not None:
        return layer, pos
    node_id = str(node.get("node_id", ""))
    match = ERROR_ID.fullmatch(node_id) or ERROR_JS_ID.fullmatch(str(node.get("jsNodeId", "")))
    if match:
        return int(match[1]), int(match[2])
    old = THREE_NUMBERS.fullmatch(node_id)
    if old and old[1] == "0":
        return int(old[2]), int(old[3])
    return None


def embedding_address(node: Mapping[str, Any]) -> tuple[int, int] | None:
    """(token id, position) of an embedding node, from `E_t_p` or its jsNodeId `E_t-p`."""
    match = EMBEDDING_ID.fullmatch(str(node.get("node_id", "")))
    if match is None:
        match = EMBEDDING_JS_ID.fullmatch(str(node.get("jsNodeId", "")))
    return (int(match[1]), int(match[2])) if match else None


def logit_token(clerp: object) -> str | None:
    """The token a logit node's clerp `Output "tok" (p=0.637)` names."""
    match = LOGIT_CLERP.fullmatch(clerp) if isinstance(clerp, str) else None
    return match[1] if match else None
