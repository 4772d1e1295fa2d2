"""What the import's parts share: the error it raises and readers of JSON values that say what is
wrong when a value is not what the format promises."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from attrgraph.engine.graph import NodeKind
from attrgraph.format.node_ids import NodeType, node_type


class GraphFormatError(ValueError):
    """The graph JSON is malformed or is not in a format this module reads."""


_NODE_KINDS = {
    NodeType.FEATURE: NodeKind.FEATURE,
    NodeType.ERROR: NodeKind.ERROR,
    NodeType.EMBEDDING: NodeKind.TOKEN,
    NodeType.LOGIT: NodeKind.LOGIT,
}


def fail(message: str) -> GraphFormatError:
    return GraphFormatError(f"graph JSON: {message}")


def load_document(data: bytes | bytearray | memoryview | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(data, Mapping):
        return data
    if isinstance(data, bytes | bytearray | memoryview | str):
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise fail(f"not valid JSON ({error})") from error
        if not isinstance(parsed, dict):
            raise fail("the top level must be an object")
        return parsed
    raise fail(f"expected bytes, str or dict, got {type(data).__name__}")


def read_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise fail(f"{what} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise fail(f"{what} must be an integer, got {value!r}")


def read_number(value: Any, what: str, *, default: float | None = None) -> float:
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(f"{what} must be a number, got {value!r}")
    return float(value)


def node_kind(feature_type: str) -> NodeKind:
    """The Graph block a node of this `feature_type` goes in (attrgraph.format decides the type)."""
    return _NODE_KINDS[node_type(feature_type)]
