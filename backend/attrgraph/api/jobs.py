"""Submitting work to the workers: what POST /api/graphs and POST /api/interventions do.

Each request is validated, turned into a job payload under a content address, and handed to
`submit_job`: nothing to do when the result exists, else a new job or the identical live one it
joins, and its place in the queue. The routes only translate the outcome into a reply.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import BaseModel

from attrgraph.api import worker_calls
from attrgraph.api.deps import Services
from attrgraph.api.limits import check_rate
from attrgraph.api.responses import OrjsonResponse, field_error, not_found, unavailable
from attrgraph.protocol import ids
from attrgraph.protocol.interventions import (
    MAX_INTERVENTIONS,
    HeadAblationItem,
    InterventionAccepted,
    InterventionReady,
    InterventionRequest,
    intervention_id,
)
from attrgraph.protocol.keys import ALIAS_TTL_S
from attrgraph.protocol.records import InterventionPayload, JobPayload, JobRecord, TracePayload, text
from attrgraph.protocol.schemas import (
    ChatMessage,
    GraphReady,
    GraphRequest,
    GraphSettings,
    GraphSummary,
    JobAccepted,
    ModelInfo,
    Token,
    TranscoderInfo,
    prompt_call,
    prompt_chars,
)
from attrgraph.settings import Settings


@dataclass(frozen=True)
class Placed:
    """A job in the queue: the one just created, or the identical one this request joined."""

    job_id: str
    position: int  # jobs ahead of it that no worker has started
    joined: bool

    @property
    def job_url(self) -> str:
        return f"/api/jobs/{self.job_id}"

    @property
    def events_url(self) -> str:
        return f"/api/jobs/{self.job_id}/events"

    def reply(self) -> dict[str, Any]:
        """The fields every accepted reply (a graph's, an intervention's, an attention's) gives its job."""
        return {
            "job_id": self.job_id,
            "position": self.position,
            "joined": self.joined,
            "job_url": self.job_url,
            "events_url": self.events_url,
        }


async def submit_job(services: Services, payload: JobPayload, result_id: str) -> Placed | None:
    """Queue `payload`, whose result will be stored under `result_id`; None when it already is."""
    job = JobRecord(
        job_id=ids.new_id(), state="queued", result_id=result_id, payload=payload, created_at=time.time()
    )
    submitted = await services.queue.submit(job)
    if submitted.outcome == "ready":
        return None
    if submitted.outcome == "full":
        raise unavailable(
            f"the queue for {payload.model!r} is full ({services.settings.max_queue} jobs); try again later",
            30,
        )
    job_id, position = await services.queue.placed(submitted, job)
    return Placed(job_id, position, joined=submitted.outcome == "joined")


@dataclass(frozen=True)
class OnGraph:
    """A stored graph that a worker job reads (an intervention, an attention explanation), with
    the model and transcoders it was traced with."""

    graph_id: str
    summary: GraphSummary
    model: ModelInfo
    transcoders: TranscoderInfo

    def payload(self) -> dict[str, Any]:
        """What the payload of every job on this graph names: the model, transcoders, prompt and graph."""
        return {
            "model": self.model.name,
            "transcoders": self.transcoders.name,
            "prompt": self.summary.prompt,
            "graph_id": self.graph_id,
        }


async def on_graph(services: Services, graph_id: str) -> OnGraph:
    """The stored graph `graph_id` (404 without one) and a worker's model for it."""
    summary = await services.store.summary(graph_id)
    if summary is None:
        raise not_found(f"no graph {graph_id}")
    model, transcoders = await worker_calls.resolve_model(
        services.catalog, summary.model, summary.transcoders
    )
    return OnGraph(graph_id, summary, model, transcoders)


async def submit_result_job(
    services: Services, request: Request, result_key: str, payload: JobPayload, result_id: str
) -> Placed | None:
    """A worker's result on a stored graph: None when it is already stored under `result_key`, else
    (within the client's rate limit) its job, as `submit_job` places it."""
    if await services.redis.exists(result_key):
        return None
    await check_rate(services.redis, services.keys, services.settings, request)
    return await submit_job(services, payload, result_id)


def respond(reply: BaseModel) -> BaseModel | OrjsonResponse:
    """A finished result is 200; an accepted job is the route's default status (202)."""
    if isinstance(reply, GraphReady | InterventionReady):
        return OrjsonResponse(reply.model_dump(), status_code=200)
    return reply


# --- graphs ----------------------------------------------------------------------------------------


def _graph_ready(graph_id: str) -> GraphReady:
    return GraphReady(graph_id=graph_id, graph_url=f"/api/graphs/{graph_id}")


async def submit_graph(body: GraphRequest, request: Request, services: Services) -> GraphReady | JobAccepted:
    settings, redis, keys = services.settings, services.redis, services.keys
    if await _awaiting_worker(services, body.model):
        return await _submit_pending(body, request, services)
    model, transcoders = await worker_calls.resolve_model(services.catalog, body.model, body.transcoders)
    trace_settings = _checked_settings(body, settings)

    # A repeated request is answered from Redis alone, before any worker tokenizes anything.
    as_asked = body.prompt if isinstance(body.prompt, str) else [m.model_dump() for m in body.prompt]
    request_key = ids.request_key(model, transcoders, as_asked, body.target, trace_settings)
    known = await redis.get(keys.alias(request_key))
    if known is not None and await services.store.exists(text(known)):
        return _graph_ready(text(known))

    await check_rate(redis, keys, settings, request)
    traced, token_ids = await _token_ids(
        services, model, body.prompt, {"transcoders": transcoders.name, **_estimated(trace_settings)}
    )
    graph_id = ids.graph_id(model, transcoders, token_ids, body.target, trace_settings)
    await redis.set(keys.alias(request_key), graph_id, ex=ALIAS_TTL_S)

    payload = TracePayload(
        model=model.name,
        transcoders=transcoders.name,
        prompt=traced,  # a chat's rendered text: what the graph shows and interventions re-tokenize
        token_ids=token_ids,
        target=body.target,
        settings=trace_settings,
    )
    placed = await submit_job(services, payload, graph_id)
    if placed is None:
        return _graph_ready(graph_id)
    return JobAccepted(graph_id=graph_id, **placed.reply())


def _checked_settings(body: GraphRequest, settings: Settings) -> GraphSettings:
    """The request within the server's limits, and its trace settings with the defaults filled in
    (leaving a setting out and giving its default address the same graph)."""
    if prompt_chars(body.prompt) > settings.max_prompt_chars:
        raise field_error(("body", "prompt"), f"at most {settings.max_prompt_chars} characters")
    cap = settings.max_feature_nodes
    requested = body.settings.max_feature_nodes
    if requested is not None and requested > cap:
        raise field_error(
            ("body", "settings", "max_feature_nodes"), f"at most {cap} on this server", requested
        )
    return body.settings.model_copy(update={"max_feature_nodes": cap if requested is None else requested})


async def _awaiting_worker(services: Services, name: str | None) -> bool:
    """A request for the configured default model while no worker serves it (the service is
    starting, or its worker is reloading): queued like any job, for the worker to pick up."""
    default = services.settings.configured_default_model
    if not default or name not in (None, default):
        return False
    model = await services.catalog.get(default)
    if model is None:
        return name is not None or await services.catalog.get(None) is None
    return model.workers == 0


async def _submit_pending(
    body: GraphRequest, request: Request, services: Services
) -> GraphReady | JobAccepted:
    """Queue a graph whose model has not been advertised: the worker tokenizes and computes the
    graph id (jobs carry the prompt). `graph_id` in the reply is provisional (the request's pending
    key); the job's `done` event and GET /api/jobs/{id} name the graph."""
    settings, redis, keys = services.settings, services.redis, services.keys
    name = body.model or settings.configured_default_model or ""
    trace_settings = _checked_settings(body, settings)
    messages = None if isinstance(body.prompt, str) else [m.model_dump() for m in body.prompt]
    as_asked: str | list[dict[str, str]] = body.prompt if isinstance(body.prompt, str) else messages or []
    pending = ids.pending_key(name, body.transcoders, as_asked, body.target, trace_settings)
    known = await redis.get(keys.alias(pending))
    if known is not None and await services.store.exists(text(known)):
        return _graph_ready(text(known))
    await check_rate(redis, keys, settings, request)
    payload = TracePayload(
        model=name,
        transcoders=body.transcoders or "",
        prompt=body.prompt if isinstance(body.prompt, str) else "",
        token_ids=[],
        target=body.target,
        settings=trace_settings,
        messages=messages,
        max_prompt_tokens=settings.max_prompt_tokens,
    )
    placed = await submit_job(services, payload, pending)
    if placed is None:  # not reachable: nothing is stored under a pending key
        return _graph_ready(text(known or pending))
    return JobAccepted(graph_id=pending, **placed.reply())


def _estimated(settings: GraphSettings) -> dict[str, Any]:
    """The trace settings the worker's estimate reads."""
    return settings.model_dump(include={"max_n_logits", "max_feature_nodes", "max_edges_per_target"})


async def _token_ids(
    services: Services, model: ModelInfo, prompt: str | list[ChatMessage], estimate: dict[str, Any]
) -> tuple[str, list[int]]:
    """The text traced (a chat rendered by the worker) and its token ids, within the prompt limit
    and within what the worker's memory holds (its estimate for these settings: 422 naming the
    setting to change, with the estimate, instead of a job that would run out of memory)."""
    settings = services.settings
    args = {**prompt_call(prompt), "top_k": 0, "estimate": estimate}
    result = await worker_calls.call_worker(
        services.worker_calls, model, "tokenize", args, settings.worker_call_timeout_s
    )
    token_ids = [Token.model_validate(t).id for t in result["tokens"]]
    problem = model.too_long(len(token_ids), settings.max_prompt_tokens)
    if problem is not None:
        raise field_error(("body", "prompt"), problem)
    found = result.get("estimate")
    if isinstance(found, dict) and found.get("fits") is False:
        message = (
            f"this trace needs about {found['peak_bytes'] / 2**30:.2f} GiB, more than the "
            f"{found['budget_bytes'] / 2**30:.2f} GiB a worker has for it: {found['advice']}"
        )
        raise field_error(("body", "settings", "max_feature_nodes"), message, found)
    return str(result["text"]), token_ids


# --- interventions ---------------------------------------------------------------------------------


def _intervention_ready(iid: str) -> InterventionReady:
    return InterventionReady(intervention_id=iid, result_url=f"/api/interventions/{iid}")


async def submit_intervention(
    body: InterventionRequest, request: Request, services: Services
) -> InterventionReady | InterventionAccepted:
    if len(body.interventions) > MAX_INTERVENTIONS:
        raise field_error(
            ("body", "interventions"),
            f"{len(body.interventions)} interventions; at most {MAX_INTERVENTIONS}",
        )
    graph = await on_graph(services, body.graph_id)
    _check_interventions(body, graph.transcoders, graph.summary.n_tokens)
    iid = intervention_id(graph.model.engine_version, body)
    payload = InterventionPayload(**graph.payload(), interventions=body.interventions, options=body.options)
    placed = await submit_result_job(services, request, services.keys.intervention(iid), payload, iid)
    if placed is None:
        return _intervention_ready(iid)
    return InterventionAccepted(intervention_id=iid, result_url=f"/api/interventions/{iid}", **placed.reply())


def _check_interventions(body: InterventionRequest, transcoders: TranscoderInfo, n_tokens: int) -> None:
    """Each feature exists and each position is in the graph's prompt (422 naming the item)."""
    for k, iv in enumerate(body.interventions):
        loc = ("body", "interventions", k)
        if isinstance(iv, HeadAblationItem):  # the worker checks the head index: it knows the model
            n_layers = transcoders.n_layers
            if n_layers is not None and iv.layer >= n_layers:
                raise field_error((*loc, "layer"), f"layer out of range (0..{n_layers - 1})", iv.layer)
            continue
        where = f"feature {iv.layer}/{iv.feature} at position {iv.position}"
        if transcoders.n_layers is not None and iv.layer >= transcoders.n_layers:
            raise field_error(
                (*loc, "layer"), f"{where}: layer out of range (0..{transcoders.n_layers - 1})", iv.layer
            )
        if transcoders.d_transcoder is not None and iv.feature >= transcoders.d_transcoder:
            raise field_error(
                (*loc, "feature"),
                f"{where}: unknown feature (indices are 0..{transcoders.d_transcoder - 1})",
                iv.feature,
            )
        if iv.position >= n_tokens:
            raise field_error(
                (*loc, "position"),
                f"{where}: position out of range (the prompt has {n_tokens} tokens)",
                iv.position,
            )
