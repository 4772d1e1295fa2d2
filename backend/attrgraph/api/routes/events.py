"""Live updates for everyone viewing a graph: Server-Sent Events fed by Redis pub/sub (label changes
in the graph's transcoder set, note changes on the graph), through the process's one subscriber
(api/live.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import StreamingResponse

from attrgraph.api.deps import KeysDep, ServicesDep, StoreDep
from attrgraph.api.live import LiveFull, LiveHub, Subscriber
from attrgraph.api.responses import ERRORS, not_found
from attrgraph.protocol.schemas import ID_PATTERN

router = APIRouter(tags=["events"])
KEEPALIVE_S = 15.0
READY_TIMEOUT_S = 5.0  # Redis not answering the SUBSCRIBE by then: 503 before any byte is sent


def get_hub(services: ServicesDep, request: Request) -> LiveHub:
    hub: LiveHub | None = getattr(request.app.state, "live_hub", None)
    if hub is None or hub.client is not services.redis:
        hub = LiveHub(services.redis, services.settings.max_live_streams)
        request.app.state.live_hub = hub
    return hub


def unavailable(detail: str) -> HTTPException:
    return HTTPException(status_code=503, detail=detail, headers={"Retry-After": "5"})


@router.get(
    "/api/graphs/{graph_id}/live",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "`ready`, then `label` / `note`"},
        **ERRORS,
    },
)
async def live(
    graph_id: Annotated[str, Path(pattern=ID_PATTERN)],
    request: Request,
    services: ServicesDep,
    store: StoreDep,
    keys: KeysDep,
) -> StreamingResponse:
    """`event: ready` once subscribed, then `event: label` / `event: note` with the changed item.
    The stream ends (and EventSource reconnects) when Redis fails or the client falls behind."""
    summary = await store.summary(graph_id)
    if summary is None:
        raise not_found(f"no graph {graph_id}")
    hub = get_hub(services, request)
    try:
        sub = hub.open([keys.graph_channel(graph_id), keys.labels_channel(summary.transcoders)])
    except LiveFull as full:
        raise unavailable(str(full)) from None
    try:
        await asyncio.wait_for(sub.ready.wait(), READY_TIMEOUT_S)
    except TimeoutError:
        hub.close(sub)
        raise unavailable("live updates are unavailable (storage not answering)") from None
    if sub.ended:
        hub.close(sub)
        raise unavailable("live updates are unavailable (storage failed)")
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(_stream(hub, sub, graph_id), media_type="text/event-stream", headers=headers)


async def _stream(hub: LiveHub, sub: Subscriber, graph_id: str) -> AsyncIterator[bytes]:
    try:
        yield b"event: ready\ndata: " + orjson.dumps({"graph_id": graph_id}) + b"\n\n"
        while True:
            try:
                chunk = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            if chunk is None:
                return
            yield chunk
    finally:
        hub.close(sub)
