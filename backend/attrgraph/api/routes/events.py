"""Live updates for everyone viewing a graph: Server-Sent Events fed by Redis pub/sub (label changes
in the graph's transcoder set, note changes on the graph)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse

from attrgraph.api.deps import KeysDep, RedisDep, StoreDep
from attrgraph.api.responses import ERRORS, not_found
from attrgraph.protocol.records import text
from attrgraph.protocol.schemas import ID_PATTERN

router = APIRouter(tags=["events"])
KEEPALIVE_S = 15.0


@router.get("/api/graphs/{graph_id}/live", responses=ERRORS)
async def live(
    graph_id: Annotated[str, Path(pattern=ID_PATTERN)],
    request: Request,
    store: StoreDep,
    redis_client: RedisDep,
    keys: KeysDep,
) -> StreamingResponse:
    """`event: ready` once subscribed, then `event: label` / `event: note` with the changed item."""
    summary = await store.summary(graph_id)
    if summary is None:
        raise not_found(f"no graph {graph_id}")
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(keys.graph_channel(graph_id), keys.labels_channel(summary.transcoders))

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b"event: ready\ndata: " + orjson.dumps({"graph_id": graph_id}) + b"\n\n"
            idle = 0.0
            while not await request.is_disconnected():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None:
                    idle += 1.0
                    if idle >= KEEPALIVE_S:
                        idle = 0.0
                        yield b": keepalive\n\n"
                    continue
                idle = 0.0
                data = message["data"]
                payload = orjson.loads(data)
                name = text(payload.get("event", "message"))
                yield f"event: {name}\n".encode() + b"data: " + orjson.dumps(payload) + b"\n\n"
        finally:
            await pubsub.unsubscribe()
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
