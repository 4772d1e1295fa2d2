"""Dependencies, as Annotated aliases (full-stack-fastapi-template style): a route declares
`queue: QueueDep` and gets the process-wide JobQueue built at startup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Request

from attrgraph.protocol.keys import Keys
from attrgraph.protocol.queue import JobQueue
from attrgraph.protocol.registry import ModelCatalog
from attrgraph.protocol.store import GraphStore
from attrgraph.protocol.worker_calls import WorkerCallClient
from attrgraph.settings import Settings


@dataclass
class Services:
    """Everything the routes use; one per app, created in the lifespan (api/app.py)."""

    settings: Settings
    redis: aioredis.Redis
    keys: Keys
    queue: JobQueue
    store: GraphStore
    catalog: ModelCatalog
    worker_calls: WorkerCallClient

    @classmethod
    def create(cls, settings: Settings, client: aioredis.Redis) -> Services:
        keys = Keys(settings.key_prefix)
        return cls(
            settings=settings,
            redis=client,
            keys=keys,
            queue=JobQueue(client, keys, settings.max_queue),
            store=GraphStore(client, keys),
            catalog=ModelCatalog(client, keys, settings.heartbeat_s, settings.default_model),
            worker_calls=WorkerCallClient(client, keys),
        )


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


def get_queue(services: ServicesDep) -> JobQueue:
    return services.queue


def get_store(services: ServicesDep) -> GraphStore:
    return services.store


def get_catalog(services: ServicesDep) -> ModelCatalog:
    return services.catalog


def get_worker_calls(services: ServicesDep) -> WorkerCallClient:
    return services.worker_calls


def get_redis(services: ServicesDep) -> aioredis.Redis:
    return services.redis


def get_keys(services: ServicesDep) -> Keys:
    return services.keys


SettingsDep = Annotated[Settings, Depends(get_settings)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
StoreDep = Annotated[GraphStore, Depends(get_store)]
CatalogDep = Annotated[ModelCatalog, Depends(get_catalog)]
WorkerCallsDep = Annotated[WorkerCallClient, Depends(get_worker_calls)]
RedisDep = Annotated[aioredis.Redis, Depends(get_redis)]
KeysDep = Annotated[Keys, Depends(get_keys)]
