"""Intervention jobs: the tracer's `intervene` on a graph's prompt, stored under the job's content
address (they share the queue, claims, heartbeats, progress and cancellation with trace jobs)."""

from __future__ import annotations

import logging
import time

import orjson

from attrgraph.protocol.keys import INTERVENTION_TTL_S
from attrgraph.protocol.records import InterventionPayload, JobEvent
from attrgraph.worker.context import JobContext, guarded

log = logging.getLogger("attrgraph.worker")


def run_intervention(ctx: JobContext, job: InterventionPayload) -> JobEvent:
    intervention_id = ctx.job.result_id
    key = ctx.keys.intervention(intervention_id)
    if ctx.redis.exists(key):
        return JobEvent(event="done", data=ctx.base)
    started = time.monotonic()

    def compute() -> None:
        with ctx.model_lock:
            ctx.progress("intervene", 0, 1)
            result = ctx.tracer.intervene(job, ctx.progress)
            ctx.progress("intervene", 1, 1)
        stored = {**result, "intervention_id": intervention_id, "graph_id": job.graph_id}
        ctx.redis.set(key, orjson.dumps(stored), ex=INTERVENTION_TTL_S)

    failure = guarded(ctx, compute)
    if failure is not None:
        return failure
    seconds = round(time.monotonic() - started, 3)
    log.info("job %s: intervention %s in %.2fs", ctx.job.job_id, intervention_id, seconds)
    return JobEvent(event="done", data={**ctx.base, "seconds": seconds})
