"""Which models this deployment can trace: workers advertise, the API reads.

A worker writes each model it loaded (with the revisions the content address needs) into the
keys.models hash, and keeps a short-lived keys.worker(id) key alive by heartbeats. The API never
loads a model, so this is how it knows names, revisions and whether anyone is serving them.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis
from pydantic import BaseModel

from attrgraph.protocol.keys import Keys, worker_ttl_s
from attrgraph.protocol.records import text
from attrgraph.protocol.schemas import ModelInfo


class WorkerInfo(BaseModel):
    worker_id: str
    host: str
    pid: int
    device: str
    models: list[str]
    started_at: float
    current_job: str | None = None


class WorkerRegistry:
    """Sync, used by the worker's heartbeat thread."""

    def __init__(self, client: redis.Redis, keys: Keys, heartbeat_s: float) -> None:
        self.r = client
        self.keys = keys
        self.ttl = worker_ttl_s(heartbeat_s)

    def advertise(self, worker: WorkerInfo, models: list[ModelInfo]) -> None:
        # Written on every heartbeat, not once: a Redis that restarted without persistence learns
        # about its workers again within one heartbeat.
        with self.r.pipeline(transaction=False) as pipe:
            if models:
                pipe.hset(
                    self.keys.models,
                    mapping={m.name: m.model_dump_json(exclude={"workers", "default"}) for m in models},
                )
            pipe.set(self.keys.worker(worker.worker_id), worker.model_dump_json(), ex=self.ttl)
            pipe.zadd(self.keys.workers, {worker.worker_id: time.time()})
            # Workers that died without withdrawing leave an entry; an hour later it goes.
            pipe.zremrangebyscore(self.keys.workers, "-inf", time.time() - 3600)
            pipe.execute()

    def withdraw(self, worker_id: str) -> None:
        with self.r.pipeline(transaction=False) as pipe:
            pipe.delete(self.keys.worker(worker_id))
            pipe.zrem(self.keys.workers, worker_id)
            pipe.execute()


class ModelCatalog:
    """Async, used by the API."""

    def __init__(
        self, client: aioredis.Redis, keys: Keys, heartbeat_s: float, default_model: str | None
    ) -> None:
        self.r = client
        self.keys = keys
        self.ttl = worker_ttl_s(heartbeat_s)
        self.default_model = default_model

    async def workers(self) -> list[WorkerInfo]:
        cutoff = time.time() - self.ttl
        ids = await self.r.zrangebyscore(self.keys.workers, cutoff, "+inf")
        if not ids:
            return []
        raw = await self.r.mget([self.keys.worker(text(i)) for i in ids])
        return [WorkerInfo.model_validate(orjson.loads(v)) for v in raw if v is not None]

    async def models(self) -> list[ModelInfo]:
        raw: Any = await self.r.hgetall(self.keys.models)
        serving: dict[str, int] = {}
        for worker in await self.workers():
            for name in worker.models:
                serving[name] = serving.get(name, 0) + 1
        models = sorted(
            (ModelInfo.model_validate(orjson.loads(v)) for v in raw.values()), key=lambda m: m.name
        )
        default = self._default([m.name for m in models])
        return [
            m.model_copy(update={"workers": serving.get(m.name, 0), "default": m.name == default})
            for m in models
        ]

    async def get(self, name: str | None) -> ModelInfo | None:
        """The named model, or the default one for None; None when nobody advertised it."""
        for model in await self.models():
            if (name is None and model.default) or model.name == name:
                return model
        return None

    def _default(self, names: list[str]) -> str | None:
        if self.default_model in names:
            return self.default_model
        return names[0] if names else None
