"""Attention jobs: which heads carried a graph edge, or what drives one head's score (QK), computed
by the tracer's `attention` on the stored graph and kept under the job's content address (they
share the queue, claims, heartbeats, progress and cancellation with trace jobs)."""

from __future__ import annotations

from typing import Any

import orjson

from attrgraph.protocol.keys import ATTENTION_TTL_S
from attrgraph.protocol.records import AttentionPayload, JobEvent
from attrgraph.protocol.stored_graph import decompress
from attrgraph.worker.context import JobContext, store_result
from attrgraph.worker.tracer import UserError


def stored_graph(ctx: JobContext, graph_id: str) -> dict[str, Any]:
    raw = ctx.redis.get(ctx.keys.graph(graph_id))
    if raw is None:  # evicted between the request and now
        raise UserError(f"graph {graph_id} is no longer stored; trace it again")
    document: dict[str, Any] = orjson.loads(decompress(bytes(raw)))  # type: ignore[arg-type]
    return document


def run_attention(ctx: JobContext, job: AttentionPayload) -> JobEvent:
    def produce() -> dict[str, Any]:
        graph = stored_graph(ctx, job.graph_id)
        with ctx.model_lock:
            return ctx.tracer.attention(job, graph, ctx.progress)

    key = ctx.keys.attention(ctx.job.result_id)
    return store_result(ctx, "attention", key, ATTENTION_TTL_S, job.graph_id, produce)
