"""Trace jobs: the tracer's graph, encoded and stored under the job's content address."""

from __future__ import annotations

import dataclasses
import logging
import time

import orjson

from attrgraph.protocol import ids, stored_graph
from attrgraph.protocol.keys import ALIAS_TTL_S
from attrgraph.protocol.records import JobEvent, TracePayload
from attrgraph.protocol.schemas import GraphSummary, ModelInfo
from attrgraph.worker.context import JobContext, guarded
from attrgraph.worker.tracer import UserError

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
    if job.pending:  # queued before any worker served the model: tokenize and address it here
        resolved = guarded(ctx, lambda: _resolve_pending(ctx, job))
        if isinstance(resolved, JobEvent):
            return resolved
        ctx, job = resolved
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


def _resolve_pending(ctx: JobContext, job: TracePayload) -> tuple[JobContext, TracePayload]:
    """What the API does for a model it knows (tokenize, check the length, compute the graph id),
    done by the worker for a job queued before the model was advertised. The job record's result id
    becomes the graph id, and the request's pending key an alias of it."""
    raw = ctx.redis.hget(ctx.keys.models, job.model)
    if raw is None:
        raise UserError(f"this worker does not serve model {job.model!r}")
    model = ModelInfo.model_validate(orjson.loads(raw))
    wanted = job.transcoders or model.default_transcoders
    transcoders = next((t for t in model.transcoders if t.name == wanted), None)
    if transcoders is None:
        raise UserError(f"model {model.name!r} has no transcoder set {wanted!r}")
    prompt = ctx.tracer.render_chat(model.name, job.messages) if job.messages else job.prompt
    token_ids = [t.id for t in ctx.tracer.tokenize(model.name, prompt)]
    problem = model.too_long(len(token_ids), job.max_prompt_tokens or len(token_ids))
    if problem is not None:
        raise UserError(problem)
    graph_id = ids.graph_id(model, transcoders, token_ids, job.target, job.settings)
    as_asked: str | list[dict[str, str]] = job.messages if job.messages else job.prompt
    request_key = ids.request_key(model, transcoders, as_asked, job.target, job.settings)
    with ctx.redis.pipeline(transaction=False) as pipe:
        pipe.set(ctx.keys.alias(ctx.job.result_id), graph_id, ex=ALIAS_TTL_S)
        pipe.set(ctx.keys.alias(request_key), graph_id, ex=ALIAS_TTL_S)
        pipe.hset(ctx.keys.job(ctx.job.job_id), "result_id", graph_id)
        pipe.execute()
    resolved = job.model_copy(
        update={"prompt": prompt, "token_ids": token_ids, "transcoders": transcoders.name}
    )
    record = ctx.job.model_copy(update={"result_id": graph_id, "payload": resolved})
    log.info("job %s: pending request resolved to graph %s", ctx.job.job_id, graph_id)
    return dataclasses.replace(ctx, job=record), resolved
