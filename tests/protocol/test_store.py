"""Graph storage: idempotent writes, the LRU memory bound, and pinning by references."""

from __future__ import annotations

import asyncio
import time

import redis
import redis.asyncio as aioredis

from attrgraph.format.synthetic import synthetic_graph
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
