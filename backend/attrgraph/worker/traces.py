"""Trace jobs: the tracer's graph, encoded and stored under the job's content address."""

from __future__ import annotations

import logging
import time

from attrgraph.protocol import stored_graph
from attrgraph.protocol.records import JobEvent, TracePayload
from attrgraph.protocol.schemas import GraphSummary
from attrgraph.worker.context import JobContext, guarded

log = logging.getLogger("attrgraph.worker")


def _requested_target(job: TracePayload) -> list[str] | None:
    """The outputs the request asked to explain (None: the top predictions, read off the graph)."""
    if job.target is None:
        return None
    if job.target.logit_diff is not None:
        a, b = job.target.logit_diff
        return [f"{a} − {b}"]
    return [str(t) for t in job.target.tokens or []] or None


def run_trace(ctx: JobContext, job: TracePayload) -> JobEvent:
    graph_id = ctx.job.result_id
    if ctx.store.exists(graph_id):  # computed meanwhile under the same content address
        return JobEvent(event="done", data=ctx.base)
    started = time.monotonic()

    def compute() -> GraphSummary:
        with ctx.model_lock:
            graph = ctx.tracer.trace(job, ctx.progress)
        summary, gz, nodes = stored_graph.encode(
            graph,
            graph_id=graph_id,
            model=job.model,
            transcoders=job.transcoders,
            target=_requested_target(job),
            settings=job.settings.model_dump(exclude_none=True),
        )
        ctx.store.put(summary, gz, nodes)
        return summary

    outcome = guarded(ctx, compute)
    if isinstance(outcome, JobEvent):
        return outcome
    seconds = round(time.monotonic() - started, 3)
    log.info("job %s: graph %s in %.2fs", ctx.job.job_id, graph_id, seconds)
    data = {**ctx.base, "seconds": seconds, "nodes": outcome.n_nodes, "links": outcome.n_links}
    return JobEvent(event="done", data=data)
