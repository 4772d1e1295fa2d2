"""The API app factory: `uvicorn --factory attrgraph.api.app:create_app`.

The API process only talks to Redis: it never imports torch or loads a model, so it starts in a
second, stays responsive while workers trace, and scales separately from them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

import attrgraph
from attrgraph.api import pages
from attrgraph.api.deps import Services
from attrgraph.api.docs import add_offline_docs
from attrgraph.api.limits import BodySizeLimit
from attrgraph.api.responses import OrjsonResponse
from attrgraph.api.routes import (
    attention,
    events,
    features,
    graphs,
    interventions,
    jobs,
    labels,
    models,
    notes,
    tokenize,
    views,
)
from attrgraph.settings import DEFAULT_REDIS_URL, Settings, get_settings


def redis_client(settings: Settings) -> aioredis.Redis:
    # Blocking reads (SSE, worker-call replies) wait at most predictions_timeout_s; a socket silent for
    # longer than that means a dead server, and the request gets a 503 instead of hanging.
    # After a Redis restart every pooled connection is dead and fails its next command with
    # ConnectionError; from_url() gives connections no retries, so each would be one 503. Retried
    # on a fresh connection (a few times, backing off) they succeed. Timeouts are not retried: a
    # server that stopped answering would hold the request for several socket timeouts.
    return aioredis.Redis.from_url(
        settings.redis_url or DEFAULT_REDIS_URL,
        socket_connect_timeout=5,
        socket_timeout=max(settings.predictions_timeout_s, settings.worker_call_timeout_s) + 15,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), 3, supported_errors=(RedisConnectionError,)),
    )


def create_app(settings: Settings | None = None, client: aioredis.Redis | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = client is None
        redis = client if client is not None else redis_client(settings)
        app.state.services = Services.create(settings, redis)
        try:
            yield
        finally:
            if own:
                await redis.aclose()

    app = FastAPI(
        title="attrgraph",
        version=attrgraph.__version__,
        description="Attribution graphs of language models, as a service. Submit a prompt, follow the job's "
        "progress, fetch the graph (whole, or one node at a time).",
        default_response_class=OrjsonResponse,
        lifespan=lifespan,
        docs_url=None,  # add_offline_docs: Swagger UI from /static, not a CDN
    )
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_request_bytes,
        per_path={"/api/imports": settings.max_import_bytes},
    )
    app.add_middleware(pages.SecurityHeaders)  # outermost: a 413 gets the headers too

    @app.exception_handler(RedisError)
    async def redis_unavailable(request: Request, exc: RedisError) -> OrjsonResponse:
        return OrjsonResponse(
            {"detail": f"storage unavailable: {type(exc).__name__}"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's own handler echoes the input back; input with a lone surrogate cannot be encoded
        # as UTF-8 and would turn the 422 into a 500. ASCII-escaped JSON can carry anything.
        body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True, default=str)
        return Response(body, status_code=422, media_type="application/json")

    for module in (graphs, jobs, models, tokenize, features, interventions, labels, notes, views, events):
        app.include_router(module.router)
    app.include_router(attention.router)
    app.include_router(pages.router)  # the explorer's pages
    app.mount("/static", pages.static_files(), name="static")
    add_offline_docs(app)
    return app
