"""Graph storage: idempotent writes, the LRU memory bound, and pinning by references."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aioredis

from attrgraph.format.synthetic import synthetic_graph
from attrgraph.protocol import store as store_module
from attrgraph.protocol import stored_graph
from attrgraph.protocol.keys import Keys
from attrgraph.protocol.schemas import GraphSummary
from attrgraph.protocol.store import GraphStore, GraphWriter
from attrgraph.settings import Settings


def _graph(n: int) -> tuple[GraphSummary, bytes, dict[str, bytes]]:
    document = synthetic_graph(f"prompt {n}", ["a", "b"], n_features=30, seed=n)
    return stored_graph.encode(document, graph_id=f"{n:032x}", model="fake", transcoders="fake-tc")


def _number(reply: bytes | str | None) -> int:
    assert reply is not None
    return int(reply)


def test_put_is_idempotent_and_bounded(settings: Settings, rclient: redis.Redis) -> None:
    keys = Keys(settings.key_prefix)
    meta, gz, nodes = _graph(1)
    size = len(gz) + sum(len(k) + len(v) for k, v in nodes.items())
    writer = GraphWriter(rclient, keys, cache_bytes=int(size * 2.5))  # room for two graphs
    assert writer.put(meta, gz, nodes) is True
    assert writer.put(meta, gz, nodes) is False  # same content address: nothing changes
    assert _number(rclient.get(keys.graphs_bytes)) == size

    async def read_first() -> None:
        client = aioredis.Redis.from_url(settings.redis_url or "")
        assert await GraphStore(client, keys).get_compressed(meta.graph_id) == gz  # refreshes its LRU place
        await client.aclose()

    for n in (2, 3):
        time.sleep(0.01)
        if n == 3:
            asyncio.run(read_first())
        writer.put(*_graph(n))
    # Three graphs do not fit in the bound: the least recently *used* one (2) went, not the oldest (1).
    assert rclient.exists(keys.graph(f"{1:032x}")) and rclient.exists(keys.graph(f"{3:032x}"))
    assert not rclient.exists(*keys.graph_keys(f"{2:032x}"))  # the whole graph went
    assert rclient.zscore(keys.graphs_recent, f"{2:032x}") is None
    assert _number(rclient.get(keys.graphs_bytes)) <= writer.cache_bytes


def test_pinned_graphs_are_never_evicted(settings: Settings, rclient: redis.Redis) -> None:
    keys = Keys(settings.key_prefix)
    meta, gz, nodes = _graph(10)
    writer = GraphWriter(rclient, keys, cache_bytes=1024)  # smaller than one graph
    writer.put(meta, gz, nodes)

    async def refs(*calls: tuple[str, str]) -> list[int | None]:
        client = aioredis.Redis.from_url(settings.redis_url or "")
        store = GraphStore(client, keys)
        out = [
            await (store.add_ref if op == "add" else store.remove_ref)(meta.graph_id, ref)
            for op, ref in calls
        ]
        out.append(await store.add_ref("f" * 32, "share:x"))  # no such graph
        await client.aclose()
        return out

    assert asyncio.run(refs(("add", "share:1"), ("add", "annotation:7"), ("add", "share:1"))) == [
        1,
        2,
        2,
        None,
    ]
    assert int(rclient.get(keys.graphs_bytes) or 0) == 0  # pinned bytes are outside the bound
    for n in range(11, 14):
        writer.put(*_graph(n))
    assert rclient.exists(keys.graph(meta.graph_id))  # survived three evicting writes
    assert asyncio.run(refs(("remove", "share:1"), ("remove", "annotation:7")))[:2] == [1, 0]
    writer.put(*_graph(20))
    assert not rclient.exists(keys.graph(meta.graph_id))  # an ordinary cache entry again


def test_node_index_has_every_edge_once() -> None:
    document = synthetic_graph("p", ["a", "b", "c"], n_features=12, links_per_node=3)
    index = stored_graph.node_index(document)
    assert set(index) == {n["node_id"] for n in document["nodes"]}
    import orjson

    incoming = sum(len(orjson.loads(v)["incoming"]) for v in index.values())
    outgoing = sum(len(orjson.loads(v)["outgoing"]) for v in index.values())
    assert incoming == outgoing == len(document["links"])


def test_large_graphs_are_read_a_piece_at_a_time(
    settings: Settings, rclient: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "READ_CHUNK_BYTES", 32 << 10)
    keys = Keys(settings.key_prefix)
    document = synthetic_graph("a big prompt", [f"t{i}" for i in range(40)], n_features=1000, seed=3)
    meta, gz, nodes = stored_graph.encode(
        document, graph_id=f"{77:032x}", model="fake", transcoders="fake-tc"
    )
    assert len(gz) > 2 * store_module.READ_CHUNK_BYTES  # several pieces
    GraphWriter(rclient, keys, cache_bytes=1 << 30).put(meta, gz, nodes)

    async def read() -> tuple[list[bytes], bytes, str]:
        client = aioredis.Redis.from_url(settings.redis_url or "")
        store = GraphStore(client, keys)
        stored = await store.open_compressed(meta.graph_id)
        assert stored is not None and stored.size == len(gz)
        pieces = [piece async for piece in stored.chunks()]
        inflated = b"".join([p async for p in stored_graph.decompress_chunks(stored.chunks())])
        assert await store.open_compressed("f" * 32) is None
        # Evicted after the first piece: the reader fails instead of ending early.
        gone = await store.open_compressed(meta.graph_id)
        assert gone is not None
        error = ""
        try:
            async for _ in gone.chunks():
                await client.delete(keys.graph(meta.graph_id))
        except store_module.GraphGoneError as exc:
            error = str(exc)
        await client.aclose()
        return pieces, inflated, error

    pieces, inflated, error = asyncio.run(read())
    assert len(pieces) > 2 and all(len(p) <= store_module.READ_CHUNK_BYTES for p in pieces)
    assert b"".join(pieces) == gz
    assert inflated == gzip.decompress(gz)
    assert "evicted" in error


def test_a_truncated_gzip_stream_is_an_error() -> None:
    payload = stored_graph.compress(b'{"nodes": []}' * 1000)

    async def inflate(data: bytes) -> bytes:
        async def pieces() -> AsyncIterator[bytes]:
            yield data

        return b"".join([p async for p in stored_graph.decompress_chunks(pieces())])

    assert asyncio.run(inflate(payload)) == b'{"nodes": []}' * 1000
    with pytest.raises(ValueError, match="truncated"):
        asyncio.run(inflate(payload[:-20]))
