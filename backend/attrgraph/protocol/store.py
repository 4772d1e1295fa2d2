"""Graph storage in Redis: workers write graphs (sync), the API reads and pins them (async).

A graph is stored once per content address as gzip-compressed JSON, the exact bytes the API sends
(with Content-Encoding: gzip), so a cached fetch is one GET and no re-encoding. Next to it: a small
JSON summary and a per-node hash (a node with its incoming and outgoing edges) so the browser can
ask about one node of a huge graph.

Memory: unpinned graphs are an LRU cache bounded by `graph_cache_bytes`; each fetch refreshes a
graph's place. A graph that something refers to (a share link, an annotation) holds a reference in
graph:{id}:refs, leaves the LRU and is never evicted until its last reference is removed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from attrgraph.protocol.keys import RECENT_MAX, Keys
from attrgraph.protocol.records import text
from attrgraph.protocol.schemas import GraphSummary

# Commit a graph whose node hash is already written. The graph key is the commit marker: when two
# workers race on the same content address only the first commit counts its bytes.
_COMMIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
local size = tonumber(ARGV[4])
local now = tonumber(ARGV[5])
redis.call('HSET', KEYS[5], ARGV[1], size)
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(tonumber(ARGV[6]) + 1))
if redis.call('SCARD', KEYS[7]) == 0 then
  redis.call('ZADD', KEYS[4], now, ARGV[1])
  redis.call('INCRBY', KEYS[6], size)
end
return 1
"""

# Evict least recently used unpinned graphs until the total is within the bound. Never the graph
# just stored (ARGV[3]): a single graph bigger than the bound is still kept until the next one.
_EVICT = """
local bound = tonumber(ARGV[1])
local evicted = 0
while tonumber(redis.call('GET', KEYS[2]) or '0') > bound and evicted < 1000 do
  local popped = redis.call('ZPOPMIN', KEYS[1])
  if #popped == 0 then break end
  local gid = popped[1]
  if gid == ARGV[3] then
    redis.call('ZADD', KEYS[1], popped[2], gid)
    break
  end
  local size = tonumber(redis.call('HGET', KEYS[3], gid) or '0')
  local base = ARGV[2] .. gid
  -- The feature index entries go with the graph (annotations.py records them in :features).
  for _, feature_set in ipairs(redis.call('SMEMBERS', base .. ':features')) do
    redis.call('SREM', feature_set, gid)
  end
  redis.call('SREM', KEYS[5], gid)
  redis.call('DEL', base, base .. ':meta', base .. ':nodes', base .. ':features')
  redis.call('HDEL', KEYS[3], gid)
  redis.call('ZREM', KEYS[4], gid)
  redis.call('DECRBY', KEYS[2], size)
  evicted = evicted + 1
end
return evicted
"""

# Add (ARGV[2]=1) or remove (0) a reference. The first reference takes the graph out of the LRU and
# out of the byte count; removing the last puts it back as if just used.
_REF = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local size = tonumber(redis.call('HGET', KEYS[5], ARGV[1]) or '0')
if ARGV[2] == '1' then
  if redis.call('SADD', KEYS[2], ARGV[3]) == 1 and redis.call('SCARD', KEYS[2]) == 1 then
    if redis.call('ZREM', KEYS[3], ARGV[1]) == 1 then redis.call('DECRBY', KEYS[4], size) end
  end
else
  if redis.call('SREM', KEYS[2], ARGV[3]) == 1 and redis.call('SCARD', KEYS[2]) == 0 then
    if redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[1]) == 1 then redis.call('INCRBY', KEYS[4], size) end
  end
end
return redis.call('SCARD', KEYS[2])
"""


class _Put:
    """The two script calls that store one graph, the same for the worker's sync client and the
    API's async one: commit it (its node hash is written first), then evict down to the bound."""

    def __init__(
        self, keys: Keys, meta: GraphSummary, gz_json: bytes, nodes: dict[str, bytes], cache_bytes: int
    ) -> None:
        k = keys
        gid = meta.graph_id
        size = len(gz_json) + sum(len(n) + len(v) for n, v in nodes.items())
        summary = meta.model_copy(update={"bytes": size}).model_dump_json(exclude={"pinned"})
        self.nodes_key = k.graph_nodes(gid)
        self.commit_keys = [
            k.graph(gid),
            k.graph_meta(gid),
            k.graphs_recent,
            k.graphs_lru,
            k.graphs_sizes,
            k.graphs_bytes,
            k.graph_refs(gid),
        ]
        self.commit_args: list[Any] = [gid, gz_json, summary, size, time.time(), RECENT_MAX]
        self.evict_keys = [k.graphs_lru, k.graphs_bytes, k.graphs_sizes, k.graphs_recent, k.features_indexed]
        self.evict_args: list[Any] = [cache_bytes, k.graph_prefix, gid]


NODE_BATCH_BYTES = 4 * 1024 * 1024


def node_batches(nodes: dict[str, bytes]) -> Iterator[dict[str, bytes]]:
    """The node index in HSETs of a few MB: one command for a whole big graph makes the client
    build a second copy of it (hundreds of MB for an imported graph of 50 MB)."""
    batch: dict[str, bytes] = {}
    size = 0
    for node_id, data in nodes.items():
        batch[node_id] = data
        size += len(node_id) + len(data)
        if size >= NODE_BATCH_BYTES:
            yield batch
            batch, size = {}, 0
    if batch:
        yield batch


class GraphWriter:
    """The worker's side: store a finished graph and keep the cache within its bound."""

    def __init__(self, client: redis.Redis, keys: Keys, cache_bytes: int) -> None:
        self.r = client
        self.keys = keys
        self.cache_bytes = cache_bytes
        self._commit = client.register_script(_COMMIT)
        self._evict = client.register_script(_EVICT)

    def exists(self, graph_id: str) -> bool:
        return bool(self.r.exists(self.keys.graph(graph_id)))

    def put(self, meta: GraphSummary, gz_json: bytes, nodes: dict[str, bytes]) -> bool:
        """Store a graph; False when the same graph was already there (nothing changes)."""
        if self.exists(meta.graph_id):
            return False
        put = _Put(self.keys, meta, gz_json, nodes, self.cache_bytes)
        for batch in node_batches(nodes):
            self.r.hset(put.nodes_key, mapping=batch)  # type: ignore[arg-type]
        stored = bool(self._commit(keys=put.commit_keys, args=put.commit_args))
        self._evict(keys=put.evict_keys, args=put.evict_args)
        return stored


READ_CHUNK_BYTES = 1 << 20


class GraphGoneError(RuntimeError):
    """A graph was evicted while it was being read."""


class StoredBytes:
    """One stored value read a piece at a time."""

    def __init__(self, client: aioredis.Redis, key: str, size: int) -> None:
        self.r, self.key, self.size = client, key, size

    async def chunks(self) -> AsyncIterator[bytes]:
        for start in range(0, self.size, READ_CHUNK_BYTES):
            end = min(start + READ_CHUNK_BYTES, self.size)
            piece = await self.r.getrange(self.key, start, end - 1)
            assert isinstance(piece, bytes)  # the API client does not decode responses
            if len(piece) != end - start:
                # Evicted mid-read (graphs are immutable, so a short piece can only mean gone):
                # abort rather than send a truncated body as if it were whole.
                raise GraphGoneError(f"{self.key} was evicted while it was read")
            yield piece


class GraphStore:
    """The API's side: fetch graphs, nodes and lists; pin and unpin; store an imported graph."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.r = client
        self.keys = keys
        self._ref = client.register_script(_REF)
        self._commit = client.register_script(_COMMIT)
        self._evict = client.register_script(_EVICT)

    async def put(
        self, meta: GraphSummary, gz_json: bytes, nodes: dict[str, bytes], cache_bytes: int
    ) -> bool:
        """Store a graph as a worker does (`GraphWriter.put`), on the API's own async client;
        False when the same graph was already there."""
        if await self.exists(meta.graph_id):
            return False
        put = _Put(self.keys, meta, gz_json, nodes, cache_bytes)
        for batch in node_batches(nodes):
            await self.r.hset(put.nodes_key, mapping=batch)  # type: ignore[arg-type]
        stored = bool(await self._commit(keys=put.commit_keys, args=put.commit_args))
        await self._evict(keys=put.evict_keys, args=put.evict_args)
        return stored

    async def open_compressed(self, graph_id: str) -> StoredBytes | None:
        """The gzip bytes as pieces of at most READ_CHUNK_BYTES (GETRANGE), so a fetch holds one
        piece at a time however big the graph; refreshes the graph's LRU place. None if absent."""
        key = self.keys.graph(graph_id)
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.strlen(key)
            pipe.zadd(self.keys.graphs_lru, {graph_id: time.time()}, xx=True)  # XX: pinned stay out
            size, _ = await pipe.execute()
        if not size:
            return None
        return StoredBytes(self.r, key, int(size))

    async def get_compressed(self, graph_id: str) -> bytes | None:
        """The gzip bytes, refreshing the graph's LRU place in the same round trip."""
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.graph(graph_id))
            pipe.zadd(self.keys.graphs_lru, {graph_id: time.time()}, xx=True)  # XX: pinned stay out
            data, _ = await pipe.execute()
        return data  # type: ignore[no-any-return]

    async def exists(self, graph_id: str) -> bool:
        return bool(await self.r.exists(self.keys.graph(graph_id)))

    async def node(self, graph_id: str, node_id: str) -> bytes | None:
        found: Any = await self.r.hget(self.keys.graph_nodes(graph_id), node_id)
        return found  # type: ignore[no-any-return]

    async def summary(self, graph_id: str) -> GraphSummary | None:
        found = await self.summaries([graph_id])
        return found[0] if found else None

    async def summaries(self, graph_ids: Iterable[str]) -> list[GraphSummary]:
        ids = list(graph_ids)
        if not ids:
            return []
        async with self.r.pipeline(transaction=False) as pipe:
            for gid in ids:
                pipe.get(self.keys.graph_meta(gid))
                pipe.scard(self.keys.graph_refs(gid))
            raw = await pipe.execute()
        out = []
        for meta_json, refs in zip(raw[::2], raw[1::2], strict=True):
            if meta_json is not None:  # evicted between listing and reading
                meta = GraphSummary.model_validate(orjson.loads(meta_json))
                out.append(meta.model_copy(update={"pinned": refs > 0}))
        return out

    async def recent(self, limit: int, offset: int = 0) -> list[GraphSummary]:
        ids = await self.r.zrevrange(self.keys.graphs_recent, offset, offset + limit - 1)
        return await self.summaries(text(i) for i in ids)

    async def add_ref(self, graph_id: str, ref: str) -> int | None:
        """Pin: `ref` (say "share:abc") now refers to the graph. None if there is no such graph."""
        return await self._change_ref(graph_id, ref, add=True)

    async def remove_ref(self, graph_id: str, ref: str) -> int | None:
        """Unpin one reference; with none left the graph is an ordinary cache entry again."""
        return await self._change_ref(graph_id, ref, add=False)

    async def _change_ref(self, graph_id: str, ref: str, *, add: bool) -> int | None:
        k = self.keys
        count = await self._ref(
            keys=[k.graph(graph_id), k.graph_refs(graph_id), k.graphs_lru, k.graphs_bytes, k.graphs_sizes],
            args=[graph_id, "1" if add else "0", ref, time.time()],
        )
        return None if int(count) < 0 else int(count)
