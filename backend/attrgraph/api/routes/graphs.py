"""Graphs: submit (cached, joined or queued), fetch whole or one node at a time, list recent."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from attrgraph.api import worker_calls
from attrgraph.api.deps import CatalogDep, KeysDep, QueueDep, RedisDep, SettingsDep, StoreDep, WorkerCallsDep
from attrgraph.api.limits import check_rate
from attrgraph.api.responses import (
    BODY_ERRORS,
    ERRORS,
    OrjsonResponse,
    field_error,
    not_found,
    unavailable,
)
from attrgraph.protocol import ids, stored_graph
from attrgraph.protocol.keys import ALIAS_TTL_S
from attrgraph.protocol.records import JobRecord, TraceSpec, text
from attrgraph.protocol.schemas import (
    ID_PATTERN,
    NODE_ID_PATTERN,
    ErrorResponse,
    GraphList,
    GraphReady,
    GraphRequest,
    GraphSummary,
    JobAccepted,
    NodeDetail,
)

router = APIRouter(prefix="/api/graphs", tags=["graphs"])

GraphId = Annotated[str, Path(pattern=ID_PATTERN, description="A graph's content address")]
NodeId = Annotated[str, Path(pattern=NODE_ID_PATTERN, description="A node id such as 3_1204_5 or E_262_0")]

# Graphs never change under an id (content addresses), so clients and proxies may keep them.
IMMUTABLE = "public, max-age=31536000, immutable"


def _ready(graph_id: str) -> OrjsonResponse:
    body = GraphReady(graph_id=graph_id, graph_url=f"/api/graphs/{graph_id}")
    return OrjsonResponse(body.model_dump(), status_code=200)


@router.post(
    "",
    status_code=202,
    response_model=JobAccepted,
    responses={
        200: {"model": GraphReady, "description": "Already computed: fetch it at graph_url"},
        429: {"model": ErrorResponse, "description": "Rate limit; see Retry-After"},
        **BODY_ERRORS,
    },
)
async def submit_graph(
    body: GraphRequest,
    request: Request,
    settings: SettingsDep,
    catalog: CatalogDep,
    rpc: WorkerCallsDep,
    queue: QueueDep,
    store: StoreDep,
    redis: RedisDep,
    keys: KeysDep,
) -> Any:
    """Ask for a graph. 200 with its id when it exists, else 202 with a job to follow."""
    model, transcoders = await worker_calls.resolve_model(catalog, body.model, body.transcoders)
    if len(body.prompt) > settings.max_prompt_chars:
        raise field_error(("body", "prompt"), f"at most {settings.max_prompt_chars} characters")
    cap = settings.max_feature_nodes
    requested = body.settings.max_feature_nodes
    if requested is not None and requested > cap:
        raise field_error(
            ("body", "settings", "max_feature_nodes"), f"at most {cap} on this server", requested
        )
    # Defaults filled in: leaving a setting out and giving its default address the same graph.
    trace_settings = body.settings.model_copy(
        update={"max_feature_nodes": cap if requested is None else requested}
    )

    request_key = ids.request_key(model, transcoders, body.prompt, body.target, trace_settings)
    known = await redis.get(keys.alias(request_key))
    if known is not None and await store.exists(text(known)):
        return _ready(text(known))

    await check_rate(redis, keys, settings, request)
    tokens = await worker_calls.tokenize(rpc, model, body.prompt, settings.rpc_timeout_s)
    if len(tokens) > settings.max_prompt_tokens:
        raise field_error(
            ("body", "prompt"),
            f"the prompt has {len(tokens)} tokens; this server traces at most {settings.max_prompt_tokens}",
        )
    token_ids = [t.id for t in tokens]
    graph_id = ids.graph_id(model, transcoders, token_ids, body.target, trace_settings)
    await redis.set(keys.alias(request_key), graph_id, ex=ALIAS_TTL_S)

    spec = TraceSpec(
        model=model.name,
        transcoders=transcoders.name,
        prompt=body.prompt,
        token_ids=token_ids,
        target=body.target,
        settings=trace_settings,
    )
    job = JobRecord(job_id=ids.new_id(), state="queued", graph_id=graph_id, spec=spec, created_at=time.time())
    submitted = await queue.submit(job)
    if submitted.outcome == "ready":
        return _ready(graph_id)
    if submitted.outcome == "full":
        raise unavailable(
            f"the queue for {model.name!r} is full ({settings.max_queue} jobs); try again later", 30
        )
    job_id, position = await queue.placed(submitted, job)
    return JobAccepted(
        job_id=job_id,
        graph_id=graph_id,
        position=position,
        joined=submitted.outcome == "joined",
        job_url=f"/api/jobs/{job_id}",
        events_url=f"/api/jobs/{job_id}/events",
    )


@router.get("", response_model=GraphList)
async def recent_graphs(
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
) -> GraphList:
    """The most recently computed graphs, newest first."""
    return GraphList(graphs=await store.recent(limit, offset))


@router.get(
    "/{graph_id}",
    response_class=Response,
    responses={
        200: {"content": {"application/json": {}}, "description": "The graph JSON (Neuronpedia format)"},
        304: {"description": "Not modified"},
        **ERRORS,
    },
)
async def get_graph(graph_id: GraphId, request: Request, store: StoreDep) -> Response:
    """The whole graph. Sent gzip-compressed as stored when the client accepts gzip."""
    etag = f'"{graph_id}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": IMMUTABLE})
    compressed = await store.get_compressed(graph_id)
    if compressed is None:
        raise not_found(f"no graph {graph_id}")
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE, "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        headers["Content-Encoding"] = "gzip"
        return Response(compressed, media_type="application/json", headers=headers)
    return Response(stored_graph.decompress(compressed), media_type="application/json", headers=headers)


@router.get("/{graph_id}/summary", response_model=GraphSummary, responses=ERRORS)
async def graph_summary(graph_id: GraphId, store: StoreDep) -> GraphSummary:
    summary = await store.summary(graph_id)
    if summary is None:
        raise not_found(f"no graph {graph_id}")
    return summary


@router.get(
    "/{graph_id}/nodes/{node_id}",
    response_class=Response,
    responses={
        200: {"model": NodeDetail, "description": "The node with its incoming and outgoing edges"},
        **ERRORS,
    },
)
async def get_node(graph_id: GraphId, node_id: NodeId, store: StoreDep) -> Response:
    """One node and its edges, strongest first, without sending the whole graph."""
    stored = await store.node(graph_id, node_id)
    if stored is None:
        if not await store.exists(graph_id):
            raise not_found(f"no graph {graph_id}")
        raise not_found(f"graph {graph_id} has no node {node_id}")
    # The stored bytes are already the JSON object; splice the graph id in instead of re-encoding.
    body = b'{"graph_id":"' + graph_id.encode() + b'",' + stored[1:]
    return Response(body, media_type="application/json")
