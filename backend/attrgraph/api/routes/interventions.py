"""Interventions: change features of a graph's prompt and see the prediction move.

    POST /api/interventions              graph id + interventions + options -> ready (cached) or a job
    GET  /api/interventions/{id}         the result: top-k before/after, KL, continuations

The computation runs in a worker, as a job in the model's queue (progress, cancellation and SSE as
for graphs, at /api/jobs/{job_id}); the API only validates and looks up.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from attrgraph.api import jobs
from attrgraph.api.deps import KeysDep, RedisDep, ServicesDep
from attrgraph.api.responses import BODY_ERRORS, ERRORS, not_found
from attrgraph.protocol.interventions import InterventionAccepted, InterventionReady, InterventionRequest
from attrgraph.protocol.schemas import ID_PATTERN

router = APIRouter(prefix="/api/interventions", tags=["interventions"])

InterventionId = Annotated[str, Path(pattern=ID_PATTERN, description="An intervention's content address")]


@router.post(
    "",
    status_code=202,
    response_model=InterventionAccepted,
    responses={200: {"model": InterventionReady, "description": "Already computed"}, **BODY_ERRORS},
)
async def submit_intervention(body: InterventionRequest, request: Request, services: ServicesDep) -> Any:
    """Apply interventions to a graph's prompt. 200 when the result exists, else 202 with a job."""
    return jobs.respond(await jobs.submit_intervention(body, request, services))


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
