"""Turn an exported graph (Neuronpedia / circuit-tracer JSON, see docs/graph-format.md) into what the
store keeps: the compressed JSON the API serves as is, a per-node index, and a summary.

Pure functions on dicts and bytes: no torch, so the tests and benchmarks use them without a model.
"""

from __future__ import annotations

import gzip
import re
import time
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import orjson

from attrgraph.protocol.schemas import GraphSummary

# Level 6 is the usual gzip default: within a few percent of the best ratio at a fraction of the time
# of 9, and the worker compresses each graph once while every fetch benefits.
GZIP_LEVEL = 6


def compress(payload: bytes) -> bytes:
    # mtime=0: the same graph always compresses to the same bytes (a stable ETag, reproducible tests).
    return gzip.compress(payload, compresslevel=GZIP_LEVEL, mtime=0)


def decompress(payload: bytes) -> bytes:
    return gzip.decompress(payload)


async def decompress_chunks(pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Inflate a gzip stream piece by piece (each output piece at most INFLATE_CHUNK_BYTES)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip header and trailer
    async for piece in pieces:
        data = inflater.decompress(piece, INFLATE_CHUNK_BYTES)
        while data:
            yield data
            data = inflater.decompress(inflater.unconsumed_tail, INFLATE_CHUNK_BYTES)
    rest = inflater.flush()
    if rest:
        yield rest
    if not inflater.eof:
        raise ValueError("the stored graph's gzip stream is truncated")


INFLATE_CHUNK_BYTES = 4 << 20


def node_index(graph: dict[str, Any]) -> dict[str, bytes]:
    """node id -> JSON {node, incoming, outgoing}: all a client needs to show one node and its
    neighbours without downloading the whole graph."""
    # Edges as tuples until each node is written: a graph of a million links would otherwise hold a
    # million small dicts at once (an imported graph's parse is bounded by memory, docs/benchmarks.md).
    incoming: dict[str, list[_Edge]] = defaultdict(list)
    outgoing: dict[str, list[_Edge]] = defaultdict(list)
    for link in graph.get("links", []):
        source, target = str(link["source"]), str(link["target"])
        edge = (source, target, float(link["weight"]))
        outgoing[source].append(edge)
        incoming[target].append(edge)
    index = {}
    for node in graph.get("nodes", []):
        node_id = str(node["node_id"])
        # Strongest first: a client showing the top few edges of a hub node reads a prefix.
        ins = _edges(incoming.get(node_id, []))
        outs = _edges(outgoing.get(node_id, []))
        index[node_id] = orjson.dumps({"node": node, "incoming": ins, "outgoing": outs})
    return index


_Edge = tuple[str, str, float]


def _edges(edges: list[_Edge]) -> list[dict[str, Any]]:
    edges.sort(key=lambda e: -abs(e[2]))
    return [{"source": s, "target": t, "weight": w} for s, t, w in edges]


_OUTPUT_CLERP = re.compile(r'^Output "(.*)" \(p=')
# Settings read off an exported graph's metadata (docs/graph-format.md), where the request's are not known.
_SETTING_KEYS = (
    "max_feature_nodes",
    "max_n_logits",
    "desired_logit_prob",
    "node_threshold",
    "edge_threshold",
)


def graph_target(graph: dict[str, Any]) -> list[str]:
    """The tokens of the graph's target output nodes (is_target_logit), from their labels."""
    found = []
    for node in graph.get("nodes", []):
        if isinstance(node, dict) and node.get("is_target_logit"):
            match = _OUTPUT_CLERP.match(str(node.get("clerp") or ""))
            if match:
                found.append(match.group(1))
    return found


def graph_settings(graph: dict[str, Any]) -> dict[str, int | float]:
    """The trace and pruning settings an exported graph's metadata records."""
    metadata = graph.get("metadata", {})
    merged: dict[str, Any] = {}
    for part in (metadata, metadata.get("generation_settings"), metadata.get("pruning_settings")):
        if isinstance(part, dict):
            merged.update({k: part[k] for k in _SETTING_KEYS if k in part})
    return {k: v for k, v in merged.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def encode(
    graph: dict[str, Any],
    *,
    graph_id: str,
    model: str,
    transcoders: str,
    target: list[str] | None = None,
    settings: dict[str, Any] | None = None,
) -> tuple[GraphSummary, bytes, dict[str, bytes]]:
    """(summary, gzip JSON, node index) for `store.GraphWriter.put`. `target` and `settings` are
    the request's, where known; otherwise the summary reads them off the graph."""
    raw = orjson.dumps(graph, option=orjson.OPT_SERIALIZE_NUMPY)
    metadata = graph.get("metadata", {})
    known = {
        k: v for k, v in (settings or {}).items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    meta = GraphSummary(
        graph_id=graph_id,
        prompt=str(metadata.get("prompt", "")),
        model=model,
        transcoders=transcoders,
        n_tokens=len(metadata.get("prompt_tokens", [])),
        n_nodes=len(graph.get("nodes", [])),
        n_links=len(graph.get("links", [])),
        created_at=time.time(),
        target=target or graph_target(graph),
        settings=known or graph_settings(graph),
    )
    return meta, compress(raw), node_index(graph)
