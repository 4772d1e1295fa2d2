"""What this server can trace (as advertised by its workers), and a health check."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from attrgraph.api.deps import CatalogDep, RedisDep, SettingsDep
from attrgraph.protocol.schemas import ModelList

router = APIRouter(prefix="/api", tags=["models"])


@router.get("/models", response_model=ModelList)
async def list_models(catalog: CatalogDep, settings: SettingsDep) -> ModelList:
    models = await catalog.models()
    default = next((m.name for m in models if m.default), None)
    return ModelList(default_model=default, max_prompt_tokens=settings.max_prompt_tokens, models=models)


class Health(BaseModel):
    redis: bool
    workers: int
    models: list[str]


@router.get("/health", response_model=Health)
async def health(catalog: CatalogDep, redis: RedisDep) -> Health:
    """Liveness for load balancers and `attrgraph serve`: Redis answers; how many workers are up."""
    await redis.ping()
    workers = await catalog.workers()
    return Health(redis=True, workers=len(workers), models=sorted({m for w in workers for m in w.models}))
