"""Feature dashboards (top activating examples, logit effects), cached in Redis from the workers."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Response

from attrgraph.api import worker_calls
from attrgraph.api.deps import CatalogDep, KeysDep, RedisDep, SettingsDep, WorkerCallsDep
from attrgraph.api.responses import ERRORS, not_found
from attrgraph.protocol.keys import FEATURE_TTL_S
from attrgraph.protocol.schemas import NAME_PATTERN

router = APIRouter(prefix="/api/features", tags=["features"])


@router.get(
    "/{transcoder_set}/{layer}/{index}",
    response_class=Response,
    responses={
        200: {
            "content": {"application/json": {}},
            "description": "The feature's dashboard (Neuronpedia feature-detail format plus `label`)",
        },
        **ERRORS,
    },
)
async def feature(
    transcoder_set: Annotated[str, Path(pattern=NAME_PATTERN)],
    layer: Annotated[int, Path(ge=0, le=1000)],
    index: Annotated[int, Path(ge=0, le=100_000_000)],
    catalog: CatalogDep,
    calls: WorkerCallsDep,
    redis: RedisDep,
    keys: KeysDep,
    settings: SettingsDep,
) -> Response:
    key = keys.feature(transcoder_set, layer, index)
    cached = await redis.get(key)
    if cached is not None:
        return Response(cached, media_type="application/json")
    owner = next(
        (
            m
            for m in await catalog.models()
            for t in m.transcoders
            if t.name == transcoder_set and t.has_dashboards
        ),
        None,
    )
    if owner is None:
        raise not_found(f"no dashboards for transcoder set {transcoder_set!r}")
    args: dict[str, Any] = {"transcoders": transcoder_set, "layer": layer, "index": index}
    detail = await worker_calls.call_worker(calls, owner, "feature", args, settings.worker_call_timeout_s)
    body = orjson.dumps(detail, option=orjson.OPT_SERIALIZE_NUMPY)
    await redis.set(key, body, ex=FEATURE_TTL_S)
    return Response(body, media_type="application/json")
