"""Interventions: change features of a graph's prompt and see the prediction move.

    POST /api/interventions              graph id + interventions + options -> ready (cached) or a job
    GET  /api/interventions/{id}         the result: top-k before/after, KL, continuations

The computation runs in a worker, as a job in the model's queue (progress, cancellation and SSE as
for graphs, at /api/jobs/{job_id}); the API only validates and looks up.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from attrgraph.api import worker_calls
from attrgraph.api.deps import CatalogDep, KeysDep, QueueDep, RedisDep, SettingsDep, StoreDep
from attrgraph.api.limits import check_rate
from attrgraph.api.responses import (
    BODY_ERRORS,
    ERRORS,
    OrjsonResponse,
    field_error,
    not_found,
    unavailable,
)
from attrgraph.protocol import ids
from attrgraph.protocol.interventions import (
    MAX_INTERVENTIONS,
    InterventionAccepted,
    InterventionJob,
    InterventionReady,
    InterventionRequest,
    intervention_id,
)
from attrgraph.protocol.records import JobRecord, TraceSpec
from attrgraph.protocol.schemas import ID_PATTERN, GraphSettings

router = APIRouter(prefix="/api/interventions", tags=["interventions"])

InterventionId = Annotated[str, Path(pattern=ID_PATTERN, description="An intervention's content address")]


def _ready(iid: str) -> OrjsonResponse:
    body = InterventionReady(intervention_id=iid, result_url=f"/api/interventions/{iid}")
    return OrjsonResponse(body.model_dump(), status_code=200)


@router.post(
    "",
    status_code=202,
    response_model=InterventionAccepted,
    responses={200: {"model": InterventionReady, "description": "Already computed"}, **BODY_ERRORS},
)
async def submit_intervention(
    body: InterventionRequest,
    request: Request,
    settings: SettingsDep,
    catalog: CatalogDep,
    queue: QueueDep,
    store: StoreDep,
    redis: RedisDep,
    keys: KeysDep,
) -> Any:
    """Apply interventions to a graph's prompt. 200 when the result exists, else 202 with a job."""
    if len(body.interventions) > MAX_INTERVENTIONS:
        raise field_error(
            ("body", "interventions"),
            f"{len(body.interventions)} interventions; at most {MAX_INTERVENTIONS}",
        )
    summary = await store.summary(body.graph_id)
    if summary is None:
        raise not_found(f"no graph {body.graph_id}")
    model, transcoders = await worker_calls.resolve_model(catalog, summary.model, summary.transcoders)
    for k, iv in enumerate(body.interventions):
        where = f"feature {iv.layer}/{iv.feature} at position {iv.position}"
        loc = ("body", "interventions", k)
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
        if iv.position >= summary.n_tokens:
            raise field_error(
                (*loc, "position"),
                f"{where}: position out of range (the prompt has {summary.n_tokens} tokens)",
                iv.position,
            )
    iid = intervention_id(model.engine_version, body)
    if await redis.exists(keys.intervention(iid)):
        return _ready(iid)
    await check_rate(redis, keys, settings, request)
    spec = TraceSpec(
        model=model.name,
        transcoders=transcoders.name,
        prompt=summary.prompt,
        token_ids=[],
        settings=GraphSettings(),
    )
    job = JobRecord(
        job_id=ids.new_id(),
        state="queued",
        graph_id=iid,
        spec=spec,
        created_at=time.time(),
        kind="intervention",
        intervention=InterventionJob(
            graph_id=body.graph_id, interventions=body.interventions, options=body.options
        ),
    )
    submitted = await queue.submit(job)
    if submitted.outcome == "ready":
        return _ready(iid)
    if submitted.outcome == "full":
        raise unavailable(f"the queue for {model.name!r} is full; try again later", 30)
    job_id, position = await queue.placed(submitted, job)
    return InterventionAccepted(
        intervention_id=iid,
        job_id=job_id,
        position=position,
        joined=submitted.outcome == "joined",
        job_url=f"/api/jobs/{job_id}",
        events_url=f"/api/jobs/{job_id}/events",
        result_url=f"/api/interventions/{iid}",
    )


@router.get(
    "/{intervention_id}",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}, "description": "The result"}, **ERRORS},
)
async def get_intervention(intervention_id: InterventionId, redis: RedisDep, keys: KeysDep) -> Response:
    """Top-k next-token probabilities before and after, KL divergence, greedy continuations."""
    stored: Any = await redis.get(keys.intervention(intervention_id))
    if stored is None:
        raise not_found(f"no intervention result {intervention_id} (results are kept for a week)")
    return Response(stored, media_type="application/json", headers={"Cache-Control": "max-age=3600"})
