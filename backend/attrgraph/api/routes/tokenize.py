"""Tokenize a prompt and show the model's next-token predictions, before any tracing."""

from __future__ import annotations

from fastapi import APIRouter

from attrgraph.api import worker_calls
from attrgraph.api.deps import CatalogDep, SettingsDep, WorkerCallsDep
from attrgraph.api.responses import BODY_ERRORS, field_error
from attrgraph.protocol.schemas import TokenizeRequest, TokenizeResponse

router = APIRouter(prefix="/api", tags=["tokenize"])


@router.post("/tokenize", response_model=TokenizeResponse, responses=BODY_ERRORS)
async def tokenize(
    body: TokenizeRequest, catalog: CatalogDep, calls: WorkerCallsDep, settings: SettingsDep
) -> TokenizeResponse:
    """Tokens as the tracer will see them, and the top_k most likely next tokens.

    Answered by a worker (the API holds no model). Predictions need the model itself, so while every
    worker of the model is tracing they wait for one to finish.
    """
    if len(body.prompt) > settings.max_prompt_chars:
        raise field_error(("body", "prompt"), f"at most {settings.max_prompt_chars} characters")
    model, _ = await worker_calls.resolve_model(catalog, body.model)
    timeout = settings.predictions_timeout_s if body.top_k else settings.worker_call_timeout_s
    result = await worker_calls.call_worker(
        calls, model, "tokenize", {"prompt": body.prompt, "top_k": body.top_k}, timeout
    )
    return TokenizeResponse(model=model.name, max_prompt_tokens=settings.max_prompt_tokens, **result)
