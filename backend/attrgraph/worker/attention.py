"""Attention jobs: which heads carried a graph edge, or what drives one head's score (QK), computed
by the tracer's `attention` on the stored graph and kept under the job's content address (they
share the queue, claims, heartbeats, progress and cancellation with trace jobs)."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from attrgraph.protocol.keys import ATTENTION_TTL_S
from attrgraph.protocol.records import AttentionPayload, JobEvent
from attrgraph.protocol.stored_graph import decompress
from attrgraph.worker.context import JobContext, guarded
from attrgraph.worker.tracer import UserError

log = logging.getLogger("attrgraph.worker")


def stored_graph(ctx: JobContext, graph_id: str) -> dict[str, Any]:
    raw = ctx.redis.get(ctx.keys.graph(graph_id))
    if raw is None:  # evicted between the request and now
        raise UserError(f"graph {graph_id} is no longer stored; trace it again")
    document: dict[str, Any] = orjson.loads(decompress(bytes(raw)))  # type: ignore[arg-type]
    return document


def run_attention(ctx: JobContext, job: AttentionPayload) -> JobEvent:
    attention_id = ctx.job.result_id
    key = ctx.keys.attention(attention_id)
    if ctx.redis.exists(key):
        return JobEvent(event="done", data=ctx.base)
    started = time.monotonic()

    def compute() -> None:
        graph = stored_graph(ctx, job.graph_id)
        with ctx.model_lock:
            result = ctx.tracer.attention(job, graph, ctx.progress)
        stored = {**result, "attention_id": attention_id, "graph_id": job.graph_id}
        ctx.redis.set(key, orjson.dumps(stored), ex=ATTENTION_TTL_S)

    failure = guarded(ctx, compute)
    if failure is not None:
        return failure
    seconds = round(time.monotonic() - started, 3)
    log.info("job %s: attention %s in %.2fs", ctx.job.job_id, attention_id, seconds)
    return JobEvent(event="done", data={**ctx.base, "seconds": seconds})
