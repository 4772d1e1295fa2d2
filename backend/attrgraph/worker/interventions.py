"""Intervention jobs: the tracer's `intervene` on a graph's prompt, stored under the job's content
address (they share the queue, claims, heartbeats, progress and cancellation with trace jobs)."""

from __future__ import annotations

from typing import Any

from attrgraph.protocol.keys import INTERVENTION_TTL_S
from attrgraph.protocol.records import InterventionPayload, JobEvent
from attrgraph.worker.context import JobContext, store_result


def run_intervention(ctx: JobContext, job: InterventionPayload) -> JobEvent:
    def produce() -> dict[str, Any]:
        with ctx.model_lock:
            ctx.progress("intervene", 0, 1)
            result = ctx.tracer.intervene(job, ctx.progress)
            ctx.progress("intervene", 1, 1)
        return result

    key = ctx.keys.intervention(ctx.job.result_id)
    return store_result(ctx, "intervention", key, INTERVENTION_TTL_S, job.graph_id, produce)
