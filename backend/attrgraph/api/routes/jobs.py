"""Jobs (graphs and interventions alike): status, live progress as Server-Sent Events, cancellation."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Path
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError

from attrgraph.api.auth import WriterDep
from attrgraph.api.collab import WRITE_ERRORS
from attrgraph.api.deps import CatalogDep, QueueDep
from attrgraph.api.responses import ERRORS, not_found
from attrgraph.protocol.queue import JobQueue
from attrgraph.protocol.records import JobRecord, RecordError
from attrgraph.protocol.registry import ModelCatalog
from attrgraph.protocol.schemas import ID_PATTERN, CancelResult, JobStatus

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

JobId = Annotated[str, Path(pattern=ID_PATTERN)]
TERMINAL = ("done", "failed", "cancelled")
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
POLL_MS = 1000  # how long one read waits for events; queue position is re-checked between reads


async def _load(queue: JobQueue, job_id: str) -> JobRecord:
    try:
        job = await queue.get(job_id)
    except RecordError:
        raise not_found(f"job {job_id} was written by another version of the service") from None
    if job is None:
        raise not_found(f"no job {job_id} (finished jobs are kept for a day)")
    return job


async def _status(queue: JobQueue, job: JobRecord) -> JobStatus:
    position = await queue.position(job) if job.state == "queued" else None
    return JobStatus(
        job_id=job.job_id,
        kind=job.kind,
        state=job.state,
        model=job.model,
        transcoders=job.payload.transcoders,
        prompt=job.payload.prompt,
        result_id=job.result_id,
        graph_id=job.graph_id,
        position=position,
        phase=job.phase,
        percent=job.percent,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


@router.get("/{job_id}", response_model=JobStatus, responses=ERRORS)
async def get_job(job_id: JobId, queue: QueueDep) -> JobStatus:
    return await _status(queue, await _load(queue, job_id))


@router.delete("/{job_id}", response_model=CancelResult, responses={**ERRORS, **WRITE_ERRORS})
async def cancel_job(job_id: JobId, queue: QueueDep, author: WriterDep) -> CancelResult:
    """Cancel: a queued job stops at once, a running one at its worker's next progress report.
    Requests that joined the same job are cancelled with it, so cancelling is a write: with tokens
    it needs one, a read-only server refuses anonymous clients, and it counts against the write
    limit (anyone could otherwise join a job by resubmitting its prompt and cancel it)."""
    job = await _load(queue, job_id)
    state = await queue.cancel(job)
    if state is None:
        raise not_found(f"no job {job_id}")
    return CancelResult(job_id=job_id, state=state, cancel_requested=state in ("running", "cancelled"))  # type: ignore[arg-type]


def _sse(event: str, data: dict[str, object], event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


async def _event_stream(
    queue: JobQueue, catalog: ModelCatalog, job: JobRecord, after: str
) -> AsyncIterator[bytes]:
    try:
        async for chunk in _events(queue, catalog, job, after):
            yield chunk
    except RedisError:
        # Headers are sent, so no error status is possible: end the stream; EventSource clients
        # reconnect with Last-Event-ID and resume where they were.
        return


async def _waiting_for_worker(catalog: ModelCatalog, model: str) -> bool:
    """No worker serves the job's model yet (the service is starting, a worker loads its model)."""
    found = await catalog.get(model)
    return found is None or found.workers == 0


async def _events(queue: JobQueue, catalog: ModelCatalog, job: JobRecord, after: str) -> AsyncIterator[bytes]:
    last_queued: tuple[int, bool] | None = None
    last_sent = time.monotonic()
    while True:
        for event_id, event in await queue.events(job.job_id, after, POLL_MS):
            after = event_id
            last_sent = time.monotonic()
            yield _sse(event.event, event.data, event_id)
            if event.terminal:
                return
        current = await queue.get(job.job_id)
        if current is None:
            yield _sse("failed", {"job_id": job.job_id, "message": "the job expired"})
            return
        if current.state in TERMINAL:
            # The final event is written with the state; read once more in case it landed between.
            for event_id, event in await queue.events(job.job_id, after, 1):
                yield _sse(event.event, event.data, event_id)
                if event.terminal:
                    return
            yield _sse(current.state, {"job_id": job.job_id, **job.result_ref()})
            return
        if current.state == "queued":
            queued = (await queue.position(current), await _waiting_for_worker(catalog, current.model))
            if queued != last_queued:
                last_queued = queued
                last_sent = time.monotonic()
                position, waiting = queued
                yield _sse(
                    "queued", {"job_id": job.job_id, "position": position, "waiting_for_worker": waiting}
                )
        if time.monotonic() - last_sent > KEEPALIVE_S:
            last_sent = time.monotonic()
            yield b": keepalive\n\n"


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-Sent Events: queued (position, waiting_for_worker), started, "
            "progress (phase, percent), requeued, then one of done (graph_id or intervention_id), "
            "failed (message), cancelled.",
        },
        **ERRORS,
    },
)
async def job_events(
    job_id: JobId,
    queue: QueueDep,
    catalog: CatalogDep,
    last_event_id: Annotated[str, Header(pattern=r"^(\d{1,20}-\d{1,20})?$")] = "",
) -> StreamingResponse:
    """Follow a job live. Reconnecting with Last-Event-ID resumes after that event."""
    job = await _load(queue, job_id)
    return StreamingResponse(
        _event_stream(queue, catalog, job, last_event_id or "0-0"),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
