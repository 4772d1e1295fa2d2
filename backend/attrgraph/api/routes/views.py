"""Share links (saved views), who-am-I, and graph export / import with the shared labels.

POST /api/views                  save a view -> short id; pins the graph (never evicted)
GET  /api/views/{id}             the saved view: graph, URL state, labels as they were
GET  /v/{id}                     opens it: a redirect to the graph page with the saved state
GET  /api/graphs/{id}/export     the graph JSON with the labels as clerps (Neuronpedia format)
POST /api/imports                store an exported graph; its qParams.clerps become shared labels
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import string
import time
from typing import Annotated, Any
from urllib.parse import parse_qs

import orjson
import redis
from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field, StrictStr

from attrgraph.api.auth import WriterDep, identity, parse_tokens
from attrgraph.api.collab import WRITE_ERRORS, AnnotationsDep
from attrgraph.api.deps import KeysDep, RedisDep, SettingsDep, StoreDep
from attrgraph.api.responses import ERRORS, OrjsonResponse, not_found
from attrgraph.protocol import stored_graph
from attrgraph.protocol.annotations import Conflict, feature_key
from attrgraph.protocol.schemas import ID_PATTERN, NAME_PATTERN, GraphId
from attrgraph.protocol.store import GraphWriter
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


def with_labels(graph: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """Shared labels written into the graph JSON: each labelled feature node's clerp, and qParams.clerps
    ([node id, label] pairs, which Neuronpedia's viewer and circuit-tracer read back)."""
    clerps = []
    nodes = []
    for node in graph.get("nodes", []):
        key = feature_key(node)
        if key is not None and labels.get(key):
            node = {**node, "clerp": labels[key]}
            clerps.append([str(node["node_id"]), labels[key]])
        nodes.append(node)
    q_params = dict(graph.get("qParams") or {})
    q_params.setdefault("pinnedIds", [])
    q_params.setdefault("supernodes", [])
    q_params.setdefault("linkType", "both")
    q_params.setdefault("clickedId", "")
    q_params.setdefault("sg_pos", "")
    if clerps:
        q_params["clerps"] = clerps
    return {**graph, "nodes": nodes, "qParams": q_params}


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
            q["supernodes"] = orjson.loads(params["supernodes"][0])
        if params.get("clickedId"):
            q["clickedId"] = params["clickedId"][0]
    headers = {"Content-Disposition": f'attachment; filename="{graph_id}.json"', "Cache-Control": "no-store"}
    return OrjsonResponse(graph, headers=headers)


def _store_graph(settings: Any, graph: dict[str, Any], graph_id: str, model: str, transcoders: str) -> bool:
    from attrgraph.protocol.keys import Keys

    client = redis.Redis.from_url(settings.redis_url or DEFAULT_REDIS_URL)
    try:
        meta, gz, nodes = stored_graph.encode(graph, graph_id=graph_id, model=model, transcoders=transcoders)
        return GraphWriter(client, Keys(settings.key_prefix), settings.graph_cache_bytes).put(meta, gz, nodes)
    finally:
        client.close()


@router.post("/api/imports", status_code=201, responses=WRITE_ERRORS)
async def import_graph(
    request: Request,
    author: WriterDep,
    settings: SettingsDep,
    annotations: AnnotationsDep,
    model: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    transcoders: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
) -> OrjsonResponse:
    """Store a graph exported here or by circuit-tracer / Neuronpedia. Labels in qParams.clerps
    (by node id or layer_index feature key) become shared labels of the transcoder set."""
    raw = await request.body()
    try:
        graph = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise HTTPException(status_code=400, detail="the body is not valid JSON") from None
    if (
        not isinstance(graph, dict)
        or not isinstance(graph.get("nodes"), list)
        or not isinstance(graph.get("links"), list)
        or not isinstance(graph.get("metadata"), dict)
    ):
        raise HTTPException(status_code=422, detail="expected graph JSON with metadata, nodes and links")
    metadata = graph["metadata"]
    model_name = model or str(metadata.get("scan") or "imported")[:100]
    tc_name = transcoders or str(metadata.get("transcoder_set") or model_name)[:100]
    graph_id = hashlib.sha256(b"import\0" + orjson.dumps(graph, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
    await asyncio.to_thread(_store_graph, settings, graph, graph_id, model_name, tc_name)
    await annotations.index_graph(graph_id, tc_name)
    by_node = {str(n.get("node_id")): feature_key(n) for n in graph["nodes"] if isinstance(n, dict)}
    written = 0
    conflicts = []
    for pair in (graph.get("qParams") or {}).get("clerps") or []:
        if not isinstance(pair, list) or len(pair) < 2:
            continue
        key = by_node.get(str(pair[0])) or (str(pair[0]) if str(pair[0]).count("_") == 1 else None)
        label = str(pair[1]).strip()[: settings.max_label_chars]
        if key is None or not label:
            continue
        current = await annotations.get("label", tc_name, key)
        if current.value == label:
            continue
        try:
            await annotations.write("label", tc_name, key, label, author=author, expected=current.version)
            written += 1
        except Conflict:
            conflicts.append(key)
    return OrjsonResponse(
        {
            "graph_id": graph_id,
            "graph_url": f"/api/graphs/{graph_id}",
            "transcoders": tc_name,
            "labels_written": written,
            "label_conflicts": conflicts,
        },
        status_code=201,
    )
