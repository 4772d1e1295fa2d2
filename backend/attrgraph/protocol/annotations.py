"""Shared annotations: feature labels (per transcoder set, so a label shows on every graph with the
feature) and notes (on a graph, a node or a supernode of one graph).

Every item is a Redis hash (value, version, author, time, action) with a history list beside it that
holds every version ever written, oldest first: version n is history[n - 1]. Nothing here expires.
Writes are compare-and-set on the version (a Lua script), so two people editing one item never
silently overwrite each other: the loser gets the current item back (HTTP 409). A revert is a new
version whose value is an old one's. Each change is published on a pub/sub channel for live views.

Feature index ("which graphs use this feature"): filled lazily from the graphs' node hashes, for
every graph in graphs:recent not yet indexed, whenever someone asks. Each graph records which index
sets name it (graph:{id}:features), and evicting the graph (store.py) removes it from all of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import redis.asyncio as aioredis

from attrgraph.format.feature_keys import feature_key_text
from attrgraph.protocol.keys import Keys
from attrgraph.protocol.records import text

Kind = Literal["label", "note"]

# KEYS: item hash, history list, index hash. ARGV: expected version, value, author, time, index field,
# action. Returns {1, new version} or {0, current version}.
_WRITE = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if current ~= tonumber(ARGV[1]) then return {0, current} end
local version = current + 1
redis.call('HSET', KEYS[1], 'value', ARGV[2], 'version', version, 'author', ARGV[3], 'time', ARGV[4],
  'action', ARGV[6])
redis.call('RPUSH', KEYS[2], cjson.encode({value = ARGV[2], author = ARGV[3], time = tonumber(ARGV[4]),
  action = ARGV[6]}))
if ARGV[2] == '' then redis.call('HDEL', KEYS[3], ARGV[5])
else redis.call('HSET', KEYS[3], ARGV[5], ARGV[2]) end
return {1, version}
"""


# Enter a graph in the feature index, only while it is stored (an index entry for an evicted graph
# would never be removed). KEYS: graph, graph:features, features:indexed. ARGV: graph id, "1" when
# this is the last batch, then the features:{set}:{feature} keys.
_INDEX = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 3, #ARGV do
  redis.call('SADD', ARGV[i], ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[i])
end
if ARGV[2] == '1' then redis.call('SADD', KEYS[3], ARGV[1]) end
return 1
"""
INDEX_BATCH = 2000
WRITE_BATCH = 500


@dataclass(frozen=True)
class Item:
    kind: Kind
    scope: str  # transcoder set (labels) or graph id (notes)
    key: str  # feature key layer_index (labels) or note target
    value: str = ""
    version: int = 0  # 0: never written
    author: str | None = None
    time: float | None = None
    action: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "scope": self.scope,
            "key": self.key,
            "value": self.value,
            "version": self.version,
            "author": self.author,
            "time": self.time,
            "action": self.action,
        }


class Conflict(Exception):
    def __init__(self, current: Item) -> None:
        super().__init__(f"version conflict: the item is at version {current.version}")
        self.current = current


class NoSuchVersion(Exception):
    pass


class Annotations:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.r = client
        self.keys = keys
        self._write = client.register_script(_WRITE)
        self._index_script = client.register_script(_INDEX)

    # --- items -------------------------------------------------------------------------------------

    def _index(self, kind: Kind, scope: str) -> str:
        return self.keys.labels(scope) if kind == "label" else self.keys.notes(scope)

    def channel(self, kind: Kind, scope: str) -> str:
        return self.keys.labels_channel(scope) if kind == "label" else self.keys.graph_channel(scope)

    async def get(self, kind: Kind, scope: str, key: str) -> Item:
        raw = await self.r.hgetall(self.keys.annotation(kind, scope, key))
        return _item(kind, scope, key, raw)

    async def get_many(self, kind: Kind, scope: str, keys: list[str]) -> list[Item]:
        async with self.r.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(self.keys.annotation(kind, scope, key))
            raws = await pipe.execute()
        return [_item(kind, scope, key, raw) for key, raw in zip(keys, raws, strict=True)]

    async def write(
        self,
        kind: Kind,
        scope: str,
        key: str,
        value: str,
        *,
        author: str,
        expected: int,
        action: str = "edit",
    ) -> Item:
        """Compare-and-set: the new item, or Conflict carrying the current one."""
        now = time.time()
        ok, version = await self._write(
            keys=[
                self.keys.annotation(kind, scope, key),
                self.keys.annotation_history(kind, scope, key),
                self._index(kind, scope),
            ],
            args=[expected, value, author, repr(now), key, action],
        )
        if not int(ok):
            raise Conflict(await self.get(kind, scope, key))
        item = Item(kind, scope, key, value, int(version), author, now, action)
        await self.r.publish(self.channel(kind, scope), orjson.dumps({"event": kind, **item.to_json()}))
        return item

    async def write_many(
        self, kind: Kind, scope: str, entries: list[tuple[str, str, int]], *, author: str, action: str
    ) -> tuple[list[Item], list[str]]:
        """Compare-and-set each (key, value, expected version), pipelined: (written, conflicted keys).
        The same script and events as `write`, for bulk writers such as imports."""
        written: list[Item] = []
        conflicts: list[str] = []
        for start in range(0, len(entries), WRITE_BATCH):
            batch = entries[start : start + WRITE_BATCH]
            now = time.time()
            async with self.r.pipeline(transaction=False) as pipe:
                for key, value, expected in batch:
                    keys = [
                        self.keys.annotation(kind, scope, key),
                        self.keys.annotation_history(kind, scope, key),
                        self._index(kind, scope),
                    ]
                    await self._write(
                        keys=keys, args=[expected, value, author, repr(now), key, action], client=pipe
                    )
                results = await pipe.execute()
            done = []
            for (key, value, _), (ok, version) in zip(batch, results, strict=True):
                if int(ok):
                    done.append(Item(kind, scope, key, value, int(version), author, now, action))
                else:
                    conflicts.append(key)
            async with self.r.pipeline(transaction=False) as pipe:
                for item in done:
                    pipe.publish(self.channel(kind, scope), orjson.dumps({"event": kind, **item.to_json()}))
                await pipe.execute()
            written.extend(done)
        return written, conflicts

    async def history(self, kind: Kind, scope: str, key: str) -> list[Item]:
        raw = await self.r.lrange(self.keys.annotation_history(kind, scope, key), 0, -1)
        out = []
        for n, entry in enumerate(raw, start=1):
            e = orjson.loads(entry)
            out.append(
                Item(kind, scope, key, str(e["value"]), n, e.get("author"), e.get("time"), e.get("action"))
            )
        return out

    async def revert(
        self, kind: Kind, scope: str, key: str, to_version: int, *, author: str, expected: int | None
    ) -> Item:
        entry = await self.r.lindex(self.keys.annotation_history(kind, scope, key), to_version - 1)
        if to_version < 1 or entry is None:
            raise NoSuchVersion(f"no version {to_version}")
        if expected is None:
            expected = (await self.get(kind, scope, key)).version
        value = str(orjson.loads(entry)["value"])
        return await self.write(
            kind, scope, key, value, author=author, expected=expected, action=f"revert:{to_version}"
        )

    async def all_values(self, kind: Kind, scope: str) -> dict[str, str]:
        raw = await self.r.hgetall(self._index(kind, scope))
        return {text(k): text(v) for k, v in raw.items()}

    async def search_labels(self, transcoder_set: str, query: str, limit: int) -> list[tuple[str, str]]:
        """(feature key, label) whose label contains `query` (case-insensitive), by feature key."""
        q = query.casefold()
        labels = await self.all_values("label", transcoder_set)
        found = sorted((k, v) for k, v in labels.items() if q in v.casefold())
        return found[:limit]

    # --- the feature index -------------------------------------------------------------------------

    async def graph_features(self, graph_id: str) -> list[str]:
        """The feature keys a stored graph uses (from its node hash), sorted; read by attrgraph.format
        as the page reads them, whatever convention the graph's node ids follow."""
        values = await self.r.hvals(self.keys.graph_nodes(graph_id))
        found = set()
        for raw in values:
            key = feature_key_text(orjson.loads(raw).get("node", {}))
            if key is not None:
                found.add(key)
        return sorted(found)

    async def index_graph(self, graph_id: str, transcoder_set: str) -> list[str]:
        features = await self.graph_features(graph_id)
        if not await self.r.sismember(self.keys.features_indexed, graph_id):
            await self.index_features(graph_id, transcoder_set, features)
        return features

    async def index_features(self, graph_id: str, transcoder_set: str, features: list[str]) -> bool:
        """Enter a stored graph's features in the index; False when the graph is gone."""
        k = self.keys
        sets = [k.feature_graphs(transcoder_set, f) for f in features]
        starts = range(0, max(len(sets), 1), INDEX_BATCH)
        for start in starts:
            last = "1" if start == starts[-1] else "0"
            batch = sets[start : start + INDEX_BATCH]
            keys = [k.graph(graph_id), k.graph_features(graph_id), k.features_indexed]
            if not int(await self._index_script(keys=keys, args=[graph_id, last, *batch])):
                return False
        return True

    async def index_recent(self) -> None:
        """Enter every recent graph not indexed yet (most are, after the first call)."""
        ids = [text(i) for i in await self.r.zrange(self.keys.graphs_recent, 0, -1)]
        if not ids:
            return
        seen = await self.r.smismember(self.keys.features_indexed, ids)
        for gid, done in zip(ids, seen, strict=True):
            if not int(done):
                meta = await self.r.get(self.keys.graph_meta(gid))
                if meta is not None:
                    await self.index_graph(gid, str(orjson.loads(meta)["transcoders"]))

    async def graphs_using(self, transcoder_set: str, feature: str) -> list[str]:
        await self.index_recent()
        members = await self.r.smembers(self.keys.feature_graphs(transcoder_set, feature))
        return sorted(text(m) for m in members)


def _item(kind: Kind, scope: str, key: str, raw: dict[Any, Any]) -> Item:
    if not raw:
        return Item(kind, scope, key)
    fields = {text(k): text(v) for k, v in raw.items()}
    return Item(
        kind,
        scope,
        key,
        fields.get("value", ""),
        int(fields.get("version", "0")),
        fields.get("author"),
        float(fields["time"]) if "time" in fields else None,
        fields.get("action"),
    )
