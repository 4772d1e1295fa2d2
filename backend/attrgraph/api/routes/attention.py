"""Attention: which heads carried a graph edge, and what drives a head's score.

    POST /api/attention          graph id + {edge: {source, target}} or {head: {layer, head,
                                 query_pos, key_pos}} -> ready (cached) or a job
    GET  /api/attention/{id}     the result: head loadings with shares and pattern values, or QK
                                 pairs and marginals (Neuronpedia's qk_tracing_results), with labels

The computation runs in a worker, as a job in the model's queue (progress, cancellation and SSE as
for graphs, at /api/jobs/{job_id}); the API validates against the stored graph and looks up.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Request, Response

from attrgraph.api import jobs
from attrgraph.api.deps import KeysDep, RedisDep, Services, ServicesDep
from attrgraph.api.responses import BODY_ERRORS, ERRORS, OrjsonResponse, field_error, not_found
from attrgraph.format.node_ids import EMBEDDING_TYPE, ERROR_TYPE, LOGIT_TYPE
from attrgraph.protocol.attention import AttentionAccepted, AttentionReady, AttentionRequest, attention_id
from attrgraph.protocol.records import AttentionPayload
from attrgraph.protocol.schemas import ID_PATTERN, GraphSummary, ModelInfo

router = APIRouter(prefix="/api/attention", tags=["attention"])

AttentionId = Annotated[str, Path(pattern=ID_PATTERN, description="An attention result's content address")]


def _ready(aid: str) -> AttentionReady:
    return AttentionReady(attention_id=aid, result_url=f"/api/attention/{aid}")


@router.post(
    "",
    status_code=202,
    response_model=AttentionAccepted,
    responses={200: {"model": AttentionReady, "description": "Already computed"}, **BODY_ERRORS},
)
async def submit_attention(body: AttentionRequest, request: Request, services: ServicesDep) -> Any:
    """Explain an edge (its heads) or a head hop (its QK). 200 when the result exists, else 202 with a job."""
    graph = await jobs.on_graph(services, body.graph_id)
    await _check(body, services, graph.summary, graph.model)
    aid = attention_id(graph.model.engine_version, body)
    payload = AttentionPayload(**graph.payload(), edge=body.edge, head=body.head, top=body.top)
    placed = await jobs.submit_result_job(services, request, services.keys.attention(aid), payload, aid)
    if placed is None:
        return OrjsonResponse(_ready(aid).model_dump(), status_code=200)
    return AttentionAccepted(attention_id=aid, result_url=f"/api/attention/{aid}", **placed.reply())


async def _check(body: AttentionRequest, services: Services, summary: GraphSummary, model: ModelInfo) -> None:
    """The edge's nodes are in the graph and can be its ends; the head's layer and positions exist."""
    if body.edge is not None:
        types = {}
        for end in ("source", "target"):
            node_id = getattr(body.edge, end)
            stored = await services.store.node(body.graph_id, node_id)
            if stored is None:
                raise field_error(("body", "edge", end), f"the graph has no node {node_id}", node_id)
            types[end] = orjson.loads(stored)["node"].get("feature_type")
        if types["target"] in (EMBEDDING_TYPE, ERROR_TYPE):
            raise field_error(("body", "edge", "target"), "a token or error node is never a target")
        if types["source"] == LOGIT_TYPE:
            raise field_error(("body", "edge", "source"), "a logit is never a source")
        return
    head = body.head
    assert head is not None  # the request validator guarantees one of edge / head
    n_layers = model.n_layers
    if n_layers is not None and head.layer >= n_layers:
        raise field_error(("body", "head", "layer"), f"layer out of range (0..{n_layers - 1})", head.layer)
    if head.query_pos >= summary.n_tokens:
        raise field_error(
            ("body", "head", "query_pos"),
            f"position out of range (the prompt has {summary.n_tokens} tokens)",
            head.query_pos,
        )


@router.get(
    "/{attention_id}",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}, "description": "The result"}, **ERRORS},
)
async def get_attention(attention_id: AttentionId, redis: RedisDep, keys: KeysDep) -> Response:
    """Head loadings of an edge, or the QK attribution of a head hop."""
    stored: Any = await redis.get(keys.attention(attention_id))
    if stored is None:
        raise not_found(f"no attention result {attention_id} (results are kept for a week)")
    return Response(stored, media_type="application/json", headers={"Cache-Control": "max-age=3600"})
