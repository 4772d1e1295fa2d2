"""Graphs: submit (cached, joined or queued), fetch whole or one node at a time, list recent."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from attrgraph.api import jobs
from attrgraph.api.deps import ServicesDep, StoreDep
from attrgraph.api.responses import BODY_ERRORS, ERRORS, not_found
from attrgraph.protocol import stored_graph
from attrgraph.protocol.schemas import (
    NODE_ID_PATTERN,
    ErrorResponse,
    GraphId,
    GraphList,
    GraphReady,
    GraphRequest,
    GraphSummary,
    JobAccepted,
    NodeDetail,
)

router = APIRouter(prefix="/api/graphs", tags=["graphs"])

NodeId = Annotated[str, Path(pattern=NODE_ID_PATTERN, description="A node id such as 3_1204_5 or E_262_0")]

# Graphs never change under an id (content addresses), so clients and proxies may keep them.
IMMUTABLE = "public, max-age=31536000, immutable"


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
async def submit_graph(body: GraphRequest, request: Request, services: ServicesDep) -> Any:
    """Ask for a graph. 200 with its id when it exists, else 202 with a job to follow."""
    return jobs.respond(await jobs.submit_graph(body, request, services))


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
    stored = await store.open_compressed(graph_id)
    if stored is None:
        raise not_found(f"no graph {graph_id}")
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE, "Vary": "Accept-Encoding"}
    # Streamed a piece at a time from Redis (and inflated a piece at a time for a client that does
    # not take gzip): the API never holds a whole graph, however large.
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        headers["Content-Encoding"] = "gzip"
        headers["Content-Length"] = str(stored.size)  # a body cut short by an eviction shows
        return StreamingResponse(stored.chunks(), media_type="application/json", headers=headers)
    return StreamingResponse(
        stored_graph.decompress_chunks(stored.chunks()), media_type="application/json", headers=headers
    )


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
