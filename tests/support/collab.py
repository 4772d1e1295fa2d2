"""Helpers for the collaboration tests: a stored graph without a worker (the circuit-tracer example)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis

from attrgraph.protocol import stored_graph
from attrgraph.protocol.keys import Keys
from attrgraph.protocol.store import GraphWriter
from attrgraph.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "circuit_tracer_example.json"
SCHEMA = Path(__file__).resolve().parents[1] / "data" / "graph-schema.json"
GRAPH_ID = "c0ffee" + "0" * 26
TRANSCODERS = "example-clt"


def example_graph() -> dict[str, Any]:
    graph: dict[str, Any] = json.loads(EXAMPLE.read_text())
    return graph


def store_example(settings: Settings, graph_id: str = GRAPH_ID, transcoders: str = TRANSCODERS) -> str:
    client = redis.Redis.from_url(settings.redis_url or "")
    try:
        meta, gz, nodes = stored_graph.encode(
            example_graph(), graph_id=graph_id, model="fake", transcoders=transcoders
        )
        GraphWriter(client, Keys(settings.key_prefix), settings.graph_cache_bytes).put(meta, gz, nodes)
    finally:
        client.close()
    return graph_id


def a_feature() -> tuple[int, int, str]:
    """(layer, index, node id) of the example's first feature node."""
    node = example_graph()["nodes"][0]
    layer, index, _ = str(node["node_id"]).split("_")
    return int(layer), int(index), str(node["node_id"])
