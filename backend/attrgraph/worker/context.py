"""What a job handler is given, and how a job's computation ends.

Handlers (traces.py, interventions.py) see only a JobContext: the job, the tracer, where results
go, the model lock and a progress reporter. They never reach into the Worker, so the loop imports
the handlers and nothing imports the loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import redis

from attrgraph.protocol.consumer import Consumer
from attrgraph.protocol.keys import Keys
from attrgraph.protocol.records import JobEvent, JobRecord
from attrgraph.protocol.store import GraphWriter
from attrgraph.worker.tracer import Progress, Tracer, UserError

log = logging.getLogger("attrgraph.worker")
T = TypeVar("T")

PROGRESS_INTERVAL_S = 0.2  # at most this often per phase: events stay few, cancellation stays quick


class JobCancelled(Exception):
    """Someone cancelled the job (DELETE /api/jobs/{id}); raised from its progress reports."""


class WorkerStopping(Exception):
    """The worker is shutting down; the job goes back to the queue for another worker."""


@dataclass(frozen=True)
class JobContext:
    job: JobRecord
    tracer: Tracer
    redis: redis.Redis
    keys: Keys
    store: GraphWriter
    # Tracing hooks the model; worker calls' predictions run it too: one at a time.
    model_lock: threading.Lock
    progress: Progress

    @property
    def base(self) -> dict[str, str]:
        """What every event of this job says: the job and the id of its result."""
        return {"job_id": self.job.job_id, **self.job.result_ref()}


def guarded(ctx: JobContext, compute: Callable[[], T]) -> T | JobEvent:
    """Run one job's computation: its result, or the event that ends the job otherwise.

    Cancellation and a user's error end the job; a stopping worker or a lost Redis propagate (the
    claim is handed back or reclaimed); anything else fails the job, never the worker.
    """
    try:
        return compute()
    except JobCancelled:
        return JobEvent(event="cancelled", data={**ctx.base, "message": "cancelled by request"})
    except UserError as exc:
        return JobEvent(event="failed", data={**ctx.base, "message": str(exc)})
    except (WorkerStopping, redis.ConnectionError, redis.TimeoutError):
        raise
    except Exception as exc:
        log.exception("job %s failed", ctx.job.job_id)
        return JobEvent(
            event="failed", data={**ctx.base, "message": f"internal error: {type(exc).__name__}: {exc}"}
        )


def progress_reporter(consumer: Consumer, job_id: str, stopping: threading.Event) -> Progress:
    """A Progress that publishes throttled events and is where cancellation and shutdown land: it
    raises JobCancelled or WorkerStopping inside the computation."""
    last_phase, last_at = "", 0.0

    def report(phase: str, done: int, total: int) -> None:
        nonlocal last_phase, last_at
        if stopping.is_set():
            raise WorkerStopping
        now = time.monotonic()
        if phase == last_phase and now - last_at < PROGRESS_INTERVAL_S and done < total:
            return
        last_phase, last_at = phase, now
        if consumer.cancel_requested(job_id):
            raise JobCancelled
        percent = round(100.0 * done / total, 1) if total else 0.0
        data = {"job_id": job_id, "phase": phase, "done": done, "total": total, "percent": percent}
        consumer.publish(job_id, JobEvent(event="progress", data=data), phase=phase, percent=str(percent))

    return report


def store_result(
    ctx: JobContext, what: str, key: str, ttl_s: int, graph_id: str, produce: Callable[[], dict[str, Any]]
) -> JobEvent:
    """A job whose result on graph `graph_id` (an intervention, an attention explanation) is kept
    under its content address `key`: done at once when it already is; else `produce` it (guarded),
    store it with `{what}_id` and `graph_id` for `ttl_s` seconds, and report the time it took."""
    result_id = ctx.job.result_id
    if ctx.redis.exists(key):
        return JobEvent(event="done", data=ctx.base)
    started = time.monotonic()

    def compute() -> None:
        stored = {**produce(), f"{what}_id": result_id, "graph_id": graph_id}
        ctx.redis.set(key, orjson.dumps(stored), ex=ttl_s)

    failure = guarded(ctx, compute)
    if failure is not None:
        return failure
    seconds = round(time.monotonic() - started, 3)
    log.info("job %s: %s %s in %.2fs", ctx.job.job_id, what, result_id, seconds)
    return JobEvent(event="done", data={**ctx.base, "seconds": seconds})
