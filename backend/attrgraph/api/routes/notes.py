"""Notes on a graph, one of its nodes or one of its supernodes. A graph with notes is pinned."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from attrgraph.api import collab
from attrgraph.api.auth import WriterDep
from attrgraph.api.collab import WRITE_ERRORS, AnnotationsDep, RevertBody, WriteBody
from attrgraph.api.deps import SettingsDep, StoreDep
from attrgraph.api.responses import ERRORS, OrjsonResponse, not_found
from attrgraph.protocol.schemas import GraphId

router = APIRouter(prefix="/api/graphs/{graph_id}", tags=["notes"])

# "graph", "node:<node id>" or "supernode:<name>"
Target = Annotated[
    str,
    Query(
        pattern=r"^(graph|node:[A-Za-z0-9_\-]{1,64}|supernode:[^\x00-\x1f]{1,100})$",
        description="graph | node:<node id> | supernode:<name>",
    ),
]
NOTES_REF = "notes"


async def _known(store: StoreDep, graph_id: str) -> None:
    if not await store.exists(graph_id):
        raise not_found(f"no graph {graph_id}")


@router.get("/notes", responses=ERRORS)
async def all_notes(graph_id: GraphId, annotations: AnnotationsDep) -> OrjsonResponse:
    """Every current note on the graph: target -> text."""
    notes = await annotations.all_values("note", graph_id)
    return OrjsonResponse({"graph_id": graph_id, "notes": notes}, headers={"Cache-Control": "no-store"})


@router.get("/note", responses=ERRORS)
async def get_note(graph_id: GraphId, target: Target, annotations: AnnotationsDep) -> OrjsonResponse:
    return collab.item_response(await annotations.get("note", graph_id, target))


@router.put("/note", responses=WRITE_ERRORS)
async def put_note(
    graph_id: GraphId,
    target: Target,
    body: WriteBody,
    request: Request,
    author: WriterDep,
    annotations: AnnotationsDep,
    settings: SettingsDep,
    store: StoreDep,
) -> OrjsonResponse:
    value = collab.check_text(body.value, settings.max_note_chars)
    await _known(store, graph_id)
    await store.add_ref(graph_id, NOTES_REF)  # a graph someone wrote about is never evicted
    expected = collab.expected_version(request, body.version)
    return await collab.write(annotations, "note", graph_id, target, value, author=author, expected=expected)


@router.get("/note/history", responses=ERRORS)
async def note_history(graph_id: GraphId, target: Target, annotations: AnnotationsDep) -> OrjsonResponse:
    return collab.history_response(await annotations.history("note", graph_id, target))


@router.post("/note/revert", responses=WRITE_ERRORS)
async def revert_note(
    graph_id: GraphId,
    target: Target,
    body: RevertBody,
    request: Request,
    author: WriterDep,
    annotations: AnnotationsDep,
) -> OrjsonResponse:
    return await collab.revert(annotations, "note", graph_id, target, request, body, author=author)
