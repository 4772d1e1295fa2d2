"""Helpers the routes share: resolve model names, and call a worker (tokenize, dashboards)."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

from attrgraph.api.responses import field_error, not_found, unavailable
from attrgraph.protocol.records import WorkerCallKind
from attrgraph.protocol.registry import ModelCatalog
from attrgraph.protocol.schemas import ModelInfo, Token, TranscoderInfo
from attrgraph.protocol.worker_calls import WorkerCallClient, WorkerCallTimeout


async def resolve_model(
    catalog: ModelCatalog, model_name: str | None, transcoders_name: str | None = None
) -> tuple[ModelInfo, TranscoderInfo]:
    model = await catalog.get(model_name)
    if model is None:
        if model_name is None:
            raise unavailable("no model is available yet (is a worker running?)", 10)
        raise not_found(f"unknown model {model_name!r}; GET /api/models lists the ones this server traces")
    wanted = transcoders_name or model.default_transcoders
    for transcoders in model.transcoders:
        if transcoders.name == wanted:
            return model, transcoders
    raise not_found(f"model {model.name!r} has no transcoder set {wanted!r}")


async def call_worker(
    calls: WorkerCallClient,
    model: ModelInfo,
    kind: WorkerCallKind,
    args: dict[str, Any],
    timeout_s: float,
    field: str = "prompt",
) -> Any:
    if model.workers == 0:
        raise unavailable(f"no worker is serving model {model.name!r} right now", 10)
    try:
        reply = await calls.call(model.name, kind, args, timeout_s)
    except WorkerCallTimeout as exc:
        raise unavailable(f"the workers did not answer in time ({exc})", 5) from exc
    if reply.status == 200:
        return reply.result
    if reply.status == 404:
        raise not_found(reply.error or "not found")
    if reply.status == 422:
        raise field_error(("body", field), reply.error or "invalid")
    raise HTTPException(status_code=503, detail=reply.error or "worker error", headers={"Retry-After": "5"})


async def tokenize(calls: WorkerCallClient, model: ModelInfo, prompt: str, timeout_s: float) -> list[Token]:
    result = await call_worker(calls, model, "tokenize", {"prompt": prompt, "top_k": 0}, timeout_s)
    return [Token.model_validate(t) for t in result["tokens"]]
