"""Request limits: a body-size cap (ASGI middleware) and per-client rate limits (a fixed one-minute
window counter in Redis, shared by every API process) on graph generation and on writes."""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from attrgraph.api.deps import ServicesDep
from attrgraph.protocol.keys import RATE_WINDOW_S, Keys
from attrgraph.settings import Settings


class BodySizeLimit:
    """413 for bodies over `max_bytes`, declared (Content-Length) or streamed (chunked), before any
    route parses them."""

    def __init__(self, app: ASGIApp, max_bytes: int, per_path: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Routes that take whole documents (graph imports) get their own, larger bound.
        self.per_path = per_path or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.per_path.get(scope["path"], self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
            await self._reject(send, max_bytes)
            return
        received = 0
        started = rejected = False

        async def limited_receive() -> Message:
            nonlocal received, rejected
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    # Answer 413 now and tell the app the client left, so it stops reading; whatever
                    # it tries to send after that is dropped (FastAPI would turn an exception here
                    # into a 400).
                    if not started:
                        rejected = True
                        await self._reject(send, max_bytes)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, tracking_send)

    async def _reject(self, send: Send, max_bytes: int) -> None:
        body = b'{"detail":"request body too large (at most %d bytes)"}' % max_bytes
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# Where every client whose address is unknowable is counted (see client_id).
UNTRUSTED_FORWARDED = "forwarded-untrusted"


def client_id(request: Request, settings: Settings) -> str:
    """Who a request counts against. X-Forwarded-For names the client only when forwarding is
    trusted (behind our own proxy). Otherwise a request carrying it is counted in one shared bucket:
    uvicorn run directly applies --proxy-headers (its default) to connections from 127.0.0.1 and has
    then already replaced the peer address with the header's value, so neither can be believed, and
    a client varying the header must not get a fresh count each time."""
    forwarded = request.headers.get("x-forwarded-for", "")
    if forwarded:
        if settings.trust_forwarded_for:
            return forwarded.split(",")[0].strip()[:64]
        return UNTRUSTED_FORWARDED
    return request.client.host if request.client else "unknown"


async def check_rate(redis: aioredis.Redis, keys: Keys, settings: Settings, request: Request) -> None:
    """429 with Retry-After once a client has started `rate_limit_per_minute` graphs this minute."""
    await count_against_limit(
        redis,
        keys,
        settings,
        request,
        bucket="",
        per_minute=settings.rate_limit_per_minute,
        what="new graphs",
    )


async def count_against_limit(
    redis: aioredis.Redis,
    keys: Keys,
    settings: Settings,
    request: Request,
    *,
    bucket: str,
    per_minute: int,
    what: str,
) -> None:
    """Count one request of this client in `bucket`; 429 with Retry-After past `per_minute` of them
    in the current minute. Buckets keep unrelated limits (graphs, writes) from sharing a count."""
    now = time.time()
    key = keys.rate(bucket + client_id(request, settings), int(now // RATE_WINDOW_S))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.incr(key)
        pipe.expire(key, RATE_WINDOW_S)
        count, _ = await pipe.execute()
    if count > per_minute:
        retry = int(RATE_WINDOW_S - now % RATE_WINDOW_S) + 1
        raise HTTPException(
            status_code=429,
            detail=f"rate limit: at most {per_minute} {what} a minute per client",
            headers={"Retry-After": str(retry)},
        )


async def limit_tokenize(services: ServicesDep, request: Request) -> None:
    """A dependency: POST /api/tokenize counts against tokenize_rate_per_minute (each call is a
    worker round trip, and with predictions a forward pass)."""
    settings = services.settings
    await count_against_limit(
        services.redis,
        services.keys,
        settings,
        request,
        bucket="tokenize:",
        per_minute=settings.tokenize_rate_per_minute,
        what="tokenize requests",
    )
