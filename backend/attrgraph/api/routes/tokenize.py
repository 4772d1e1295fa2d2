"""Tokenize a prompt and show the model's next-token predictions, before any tracing."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from attrgraph.api import worker_calls
from attrgraph.api.deps import CatalogDep, SettingsDep, WorkerCallsDep
from attrgraph.api.limits import limit_tokenize
from attrgraph.api.responses import BODY_ERRORS, RATE_ERRORS, field_error
from attrgraph.protocol.schemas import TokenizeRequest, TokenizeResponse, prompt_call, prompt_chars

router = APIRouter(prefix="/api", tags=["tokenize"])


@router.post(
    "/tokenize",
    response_model=TokenizeResponse,
    responses={**BODY_ERRORS, **RATE_ERRORS},
    dependencies=[Depends(limit_tokenize)],
)
async def tokenize(
    body: TokenizeRequest, catalog: CatalogDep, calls: WorkerCallsDep, settings: SettingsDep
) -> TokenizeResponse:
    """Tokens as the tracer will see them (a chat: as the model's template renders it), and the
    top_k most likely next tokens.

    Answered by a worker (the API holds no model). Predictions need the model itself, so while every
    worker of the model is tracing they wait for one to finish. A prompt longer than the model
    traces here (the server's limit or the model's context) is refused, as POST /api/graphs would.
    """
    if prompt_chars(body.prompt) > settings.max_prompt_chars:
        raise field_error(("body", "prompt"), f"at most {settings.max_prompt_chars} characters")
    model, _ = await worker_calls.resolve_model(catalog, body.model)
    timeout = settings.predictions_timeout_s if body.top_k else settings.worker_call_timeout_s
    limit = model.prompt_limit(settings.max_prompt_tokens)
    # The estimate is for the defaults a graph request gets (the server's feature-node cap).
    estimate = {"transcoders": model.default_transcoders, "max_feature_nodes": settings.max_feature_nodes}
    args = {**prompt_call(body.prompt), "top_k": body.top_k, "max_tokens": limit, "estimate": estimate}
    result = await worker_calls.call_worker(calls, model, "tokenize", args, timeout)
    problem = model.too_long(len(result["tokens"]), settings.max_prompt_tokens)
    if problem is not None:
        raise field_error(("body", "prompt"), problem)
    return TokenizeResponse(model=model.name, max_prompt_tokens=limit, **result)
