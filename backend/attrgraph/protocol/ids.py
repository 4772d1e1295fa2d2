"""Content addresses.

A graph id is a hash of everything that determines the graph: the model and its revision, the
transcoders and their revision, the token ids, the targets, the (default-filled) settings and the
engine version. Names, prompt spelling and who asked do not enter it, so any two requests that
would compute the same graph share one id, one job and one stored copy.

A request key is the same hash over the prompt *text* instead of token ids. It lets the API answer
a repeated request from Redis alone, before any worker has tokenized anything.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import orjson

from attrgraph.protocol.schemas import GraphSettings, ModelInfo, TargetRequest, TranscoderInfo


def digest(payload: dict[str, Any]) -> str:
    """The content address of a JSON payload (keys sorted): 32 hex digits of its SHA-256."""
    canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:32]


def result_address(kind: str, engine_version: str, fields: dict[str, Any]) -> str:
    """The content address of a worker's result on a graph (an intervention, an attention
    explanation): its kind, the engine version that computes it and what the request asked."""
    return digest({"kind": kind, "engine": engine_version, **fields})


def _common(
    model: ModelInfo, transcoders: TranscoderInfo, target: TargetRequest | None, settings: GraphSettings
) -> dict[str, Any]:
    return {
        "engine": model.engine_version,
        "model": [model.model_id, model.revision],
        "transcoders": [transcoders.id, transcoders.revision],
        "target": None if target is None else target.model_dump(),
        "settings": settings.model_dump(),
    }


def graph_id(
    model: ModelInfo,
    transcoders: TranscoderInfo,
    token_ids: list[int],
    target: TargetRequest | None,
    settings: GraphSettings,
) -> str:
    return digest({"kind": "graph", "tokens": token_ids, **_common(model, transcoders, target, settings)})


def request_key(
    model: ModelInfo,
    transcoders: TranscoderInfo,
    prompt: str | list[dict[str, str]],  # text, or chat messages (a JSON list never equals a string)
    target: TargetRequest | None,
    settings: GraphSettings,
) -> str:
    return digest({"kind": "request", "prompt": prompt, **_common(model, transcoders, target, settings)})


def pending_key(
    model: str,
    transcoders: str | None,
    prompt: str | list[dict[str, str]],
    target: TargetRequest | None,
    settings: GraphSettings,
) -> str:
    """A request for a model no worker has advertised yet (its revisions, hence the graph id, are
    unknown): the same hash over names instead of revisions. The job is queued under it and the
    worker, which knows the revisions, computes the graph id when it runs the job."""
    return digest(
        {
            "kind": "pending",
            "model": model,
            "transcoders": transcoders,
            "prompt": prompt,
            "target": None if target is None else target.model_dump(),
            "settings": settings.model_dump(),
        }
    )


def new_id() -> str:
    """Job and worker-call ids: random, in the same 32-hex shape as graph ids."""
    return uuid.uuid4().hex
