"""Share links (saved views), who-am-I, and graph export / import with the shared labels.

POST /api/views                  save a view -> short id; pins the graph (never evicted)
GET  /api/views/{id}             the saved view: graph, URL state, labels as they were
GET  /v/{id}                     opens it: a redirect to the graph page with the saved state
GET  /api/graphs/{id}/export     the graph JSON with the labels as clerps (Neuronpedia format)
POST /api/imports                store an exported graph; its qParams.clerps become shared labels
"""

from __future__ import annotations

import asyncio
import secrets
import string
import time
from typing import Annotated, Any
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field, StrictStr

from attrgraph.api import collab, imports
from attrgraph.api.auth import WriterDep, identity, parse_tokens
from attrgraph.api.collab import WRITE_ERRORS, AnnotationsDep
from attrgraph.api.deps import KeysDep, RedisDep, ServicesDep, SettingsDep, StoreDep
from attrgraph.api.responses import ERRORS, OrjsonResponse, field_error, not_found
from attrgraph.format.clerps import with_labels
from attrgraph.protocol import stored_graph
from attrgraph.protocol.schemas import ID_PATTERN, NAME_PATTERN, ErrorResponse, GraphId
from attrgraph.settings import DEFAULT_REDIS_URL

router = APIRouter(tags=["views"])

VIEW_ID_PATTERN = r"^[A-Za-z0-9]{8}$"
ALPHABET = string.ascii_letters + string.digits
ViewId = Annotated[str, Path(pattern=VIEW_ID_PATTERN)]


class ViewRequest(BaseModel):
    graph_id: StrictStr = Field(pattern=ID_PATTERN)
    query: StrictStr = Field(
        default="",
        max_length=16_384,
        pattern=r"^[\x21-\x7e]*$",
        description="The graph page's query string (the URL view state; URL-encoded, so ASCII)",
    )
    state: dict[str, Any] = Field(default_factory=dict, description="Anything else to restore (opaque)")


@router.get("/api/me")
async def me(request: Request, settings: SettingsDep) -> OrjsonResponse:
    """Who the server takes this client for, and whether it may write."""
    name, can_write = identity(settings, request)
    return OrjsonResponse(
        {
            "name": name,
            "can_write": can_write,
            "tokens": bool(parse_tokens(settings.tokens)),
            "read_only": settings.read_only,
        }
    )


@router.post("/api/views", status_code=201, responses=WRITE_ERRORS)
async def save_view(
    body: ViewRequest,
    author: WriterDep,
    store: StoreDep,
    redis_client: RedisDep,
    keys: KeysDep,
    annotations: AnnotationsDep,
) -> OrjsonResponse:
    try:
        orjson.dumps(body.state)  # stored with orjson: no >64-bit integers, deep nesting, surrogates
    except orjson.JSONEncodeError as exc:
        raise field_error(("body", "state"), f"not storable: {exc}", None) from None
    summary = await store.summary(body.graph_id)
    if summary is None:
        raise not_found(f"no graph {body.graph_id}")
    query = body.query if not body.query or body.query.startswith("?") else "?" + body.query
    features = await annotations.index_graph(body.graph_id, summary.transcoders)
    items = await annotations.get_many("label", summary.transcoders, features)
    record = {
        "graph_id": body.graph_id,
        "query": query,
        "state": body.state,
        "labels": {i.key: i.value for i in items if i.value},  # as they were when saved
        "notes": await annotations.all_values("note", body.graph_id),
        "transcoders": summary.transcoders,
        "author": author,
        "created_at": time.time(),
    }
    for _ in range(10):
        view_id = "".join(secrets.choice(ALPHABET) for _ in range(8))
        if await redis_client.set(keys.view(view_id), orjson.dumps({"id": view_id, **record}), nx=True):
            break
    else:  # pragma: no cover - 62^8 ids
        raise HTTPException(status_code=503, detail="could not allocate a view id")
    if await store.add_ref(body.graph_id, f"view:{view_id}") is None:  # evicted in between
        await redis_client.delete(keys.view(view_id))
        raise not_found(f"no graph {body.graph_id}")
    return OrjsonResponse({"id": view_id, "url": f"/v/{view_id}", **record}, status_code=201)


async def _view(redis_client: RedisDep, keys: KeysDep, view_id: str) -> dict[str, Any]:
    raw = await redis_client.get(keys.view(view_id))
    if raw is None:
        raise not_found(f"no saved view {view_id}")
    found: dict[str, Any] = orjson.loads(raw)
    return found


@router.get("/api/views/{view_id}", responses=ERRORS)
async def get_view(view_id: ViewId, redis_client: RedisDep, keys: KeysDep) -> OrjsonResponse:
    return OrjsonResponse({**await _view(redis_client, keys, view_id), "url": f"/v/{view_id}"})


@router.get("/v/{view_id}", include_in_schema=False)
async def open_view(view_id: ViewId, redis_client: RedisDep, keys: KeysDep) -> RedirectResponse:
    view = await _view(redis_client, keys, view_id)
    query = str(view.get("query") or "")
    sep = "&" if query else "?"
    return RedirectResponse(f"/graph/{view['graph_id']}{query}{sep}view={view_id}", status_code=302)


# --- export / import ---------------------------------------------------------------------------------


@router.get("/api/graphs/{graph_id}/export", responses=ERRORS)
async def export_graph(
    graph_id: GraphId,
    store: StoreDep,
    annotations: AnnotationsDep,
    redis_client: RedisDep,
    keys: KeysDep,
    labels: Annotated[bool, Query(description="Write the shared labels in as clerps")] = True,
    view: Annotated[str | None, Query(pattern=VIEW_ID_PATTERN, description="A saved view's state")] = None,
) -> OrjsonResponse:
    """The graph JSON (Neuronpedia / circuit-tracer format) with the labels as clerps and, given a
    saved view, its pinned nodes and supernodes in qParams."""
    summary = await store.summary(graph_id)
    compressed = await store.get_compressed(graph_id)
    if summary is None or compressed is None:
        raise not_found(f"no graph {graph_id}")
    graph: dict[str, Any] = orjson.loads(stored_graph.decompress(compressed))
    if labels:
        graph = with_labels(graph, await annotations.all_values("label", summary.transcoders))
    if view is not None:
        saved = await _view(redis_client, keys, view)
        params = parse_qs(str(saved.get("query", "")).lstrip("?"))
        q = graph.setdefault("qParams", {})
        if params.get("pinnedIds"):
            q["pinnedIds"] = [p for p in params["pinnedIds"][0].split(",") if p]
        if params.get("supernodes"):
            try:
                supernodes = orjson.loads(params["supernodes"][0])
            except orjson.JSONDecodeError:
                supernodes = None
            if not isinstance(supernodes, list):
                raise HTTPException(422, f"saved view {view}: its supernodes are not a JSON list")
            q["supernodes"] = supernodes
        if params.get("clickedId"):
            q["clickedId"] = params["clickedId"][0]
    headers = {"Content-Disposition": f'attachment; filename="{graph_id}.json"', "Cache-Control": "no-store"}
    return OrjsonResponse(graph, headers=headers)


def _import_limit(request: Request, settings: SettingsDep) -> asyncio.Semaphore:
    found: asyncio.Semaphore | None = getattr(request.app.state, "import_limit", None)
    if found is None:
        found = asyncio.Semaphore(settings.import_concurrency)
        request.app.state.import_limit = found
    return found


@router.post(
    "/api/imports",
    status_code=201,
    responses={**WRITE_ERRORS, 415: {"model": ErrorResponse, "description": "Not application/json"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object", "description": "Graph JSON"}}},
        }
    },
)
async def import_graph(
    request: Request,
    author: WriterDep,
    services: ServicesDep,
    annotations: AnnotationsDep,
    model: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    transcoders: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
) -> OrjsonResponse:
    """Store a graph exported here or by circuit-tracer / Neuronpedia. Labels in qParams.clerps
    (by node id or layer_index feature key) become shared labels of the transcoder set, under the
    feature keys attrgraph.format reads (docs/graph-format.md), through the same versioned writes
    as the page: a label someone already wrote differently is reported back, not overwritten, and
    every label written counts against the write limit."""
    settings = services.settings
    collab.check_origin(settings, request)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise HTTPException(status_code=415, detail="imports must be sent as application/json")
    limit = _import_limit(request, settings)
    try:
        await asyncio.wait_for(limit.acquire(), settings.import_wait_s)
    except TimeoutError:
        raise HTTPException(503, "too many imports at once; try again", {"Retry-After": "10"}) from None
    try:
        raw = await request.body()
        params = {
            "model": model,
            "transcoders": transcoders,
            "redis_url": settings.redis_url or DEFAULT_REDIS_URL,
            "key_prefix": settings.key_prefix,
            "cache_bytes": settings.graph_cache_bytes,
            "max_prompt_chars": settings.max_prompt_chars,
            "max_prompt_tokens": settings.max_prompt_tokens,
            "max_label_chars": settings.max_label_chars,
        }
        try:
            stored = await imports.run_child(raw, params)
        except imports.Rejected as rejected:
            headers = {"Retry-After": "5"} if rejected.status == 503 else None
            raise HTTPException(rejected.status, rejected.detail, headers) from None
        finally:
            del raw
    finally:
        limit.release()
    graph_id, tc_name = str(stored["graph_id"]), str(stored["transcoders"])
    await annotations.index_features(graph_id, tc_name, list(stored["features"]))
    labels: dict[str, str] = stored["labels"]
    keys = sorted(labels)
    current = await annotations.get_many("label", tc_name, keys)
    todo = [(i.key, labels[i.key], i.version) for i in current if not i.value]
    conflicts = [
        {"key": i.key, "imported": labels[i.key], "current": i.to_json()}
        for i in current
        if i.value and i.value != labels[i.key]
    ]
    try:
        await collab.spend_writes(services, request, len(todo))
    except HTTPException as limited:
        body = {"detail": limited.detail, "graph_id": graph_id, "labels_pending": len(todo)}
        return OrjsonResponse(body, status_code=429, headers=limited.headers)
    written, raced = await annotations.write_many("label", tc_name, todo, author=author, action="import")
    for key in raced:  # written by someone else between our read and our write
        item = await annotations.get("label", tc_name, key)
        conflicts.append({"key": key, "imported": labels[key], "current": item.to_json()})
    return OrjsonResponse(
        {
            "graph_id": graph_id,
            "graph_url": f"/api/graphs/{graph_id}",
            "model": stored["model"],
            "transcoders": tc_name,
            "labels_written": len(written),
            "label_conflicts": conflicts,
        },
        status_code=201,
    )
