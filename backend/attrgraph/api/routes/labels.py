"""Feature labels, shared by every graph of one transcoder set; search by label text; which graphs
use a feature; the labels of one graph's features."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from attrgraph.api import collab
from attrgraph.api.auth import WriterDep
from attrgraph.api.collab import WRITE_ERRORS, AnnotationsDep, RevertBody, WriteBody
from attrgraph.api.deps import SettingsDep, StoreDep
from attrgraph.api.responses import ERRORS, OrjsonResponse, not_found
from attrgraph.protocol.schemas import NAME_PATTERN, GraphId

router = APIRouter(tags=["labels"])

SetName = Annotated[str, Path(pattern=NAME_PATTERN, description="A transcoder set")]
Layer = Annotated[int, Path(ge=0, le=1000)]
Index = Annotated[int, Path(ge=0, le=100_000_000)]
BASE = "/api/labels/{transcoder_set}/{layer}/{index}"


@router.get("/api/labels/{transcoder_set}", responses=ERRORS)
async def search_labels(
    transcoder_set: SetName,
    annotations: AnnotationsDep,
    q: Annotated[str, Query(max_length=200)] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> OrjsonResponse:
    """Features of the set whose label contains `q` (case-insensitive); every label without `q`."""
    found = await annotations.search_labels(transcoder_set, q, limit)
    results = []
    for key, label in found:
        layer, index = key.split("_")
        results.append({"feature": key, "layer": int(layer), "index": int(index), "label": label})
    return OrjsonResponse({"transcoders": transcoder_set, "query": q, "results": results})


@router.get(BASE, responses=ERRORS)
async def get_label(
    transcoder_set: SetName, layer: Layer, index: Index, annotations: AnnotationsDep
) -> OrjsonResponse:
    """The feature's label (version 0 and an empty value when nobody has written one)."""
    return collab.item_response(await annotations.get("label", transcoder_set, f"{layer}_{index}"))


@router.put(BASE, responses=WRITE_ERRORS)
async def put_label(
    transcoder_set: SetName,
    layer: Layer,
    index: Index,
    body: WriteBody,
    request: Request,
    author: WriterDep,
    annotations: AnnotationsDep,
    settings: SettingsDep,
) -> OrjsonResponse:
    """Set the label. Send the version you edited (If-Match or `version`); a stale one gets 409."""
    value = collab.check_text(body.value.strip(), settings.max_label_chars)
    expected = collab.expected_version(request, body.version)
    key = f"{layer}_{index}"
    return await collab.write(
        annotations, "label", transcoder_set, key, value, author=author, expected=expected
    )


@router.get(BASE + "/history", responses=ERRORS)
async def label_history(
    transcoder_set: SetName, layer: Layer, index: Index, annotations: AnnotationsDep
) -> OrjsonResponse:
    return collab.history_response(await annotations.history("label", transcoder_set, f"{layer}_{index}"))


@router.post(BASE + "/revert", responses=WRITE_ERRORS)
async def revert_label(
    transcoder_set: SetName,
    layer: Layer,
    index: Index,
    body: RevertBody,
    request: Request,
    author: WriterDep,
    annotations: AnnotationsDep,
) -> OrjsonResponse:
    """A new version whose value is version `to_version`'s."""
    key = f"{layer}_{index}"
    return await collab.revert(annotations, "label", transcoder_set, key, request, body, author=author)


@router.get(BASE + "/graphs", responses=ERRORS)
async def graphs_using_feature(
    transcoder_set: SetName, layer: Layer, index: Index, annotations: AnnotationsDep, store: StoreDep
) -> OrjsonResponse:
    """The stored graphs in which this feature is a node."""
    ids = await annotations.graphs_using(transcoder_set, f"{layer}_{index}")
    summaries = await store.summaries(ids)
    return OrjsonResponse({"graphs": [s.model_dump() for s in summaries]})


@router.get("/api/graphs/{graph_id}/labels", responses=ERRORS)
async def graph_labels(graph_id: GraphId, annotations: AnnotationsDep, store: StoreDep) -> OrjsonResponse:
    """The shared labels of this graph's features: feature key -> label item (labelled ones only)."""
    summary = await store.summary(graph_id)
    if summary is None:
        raise not_found(f"no graph {graph_id}")
    features = await annotations.index_graph(graph_id, summary.transcoders)
    items = await annotations.get_many("label", summary.transcoders, features)
    labels = {i.key: i.to_json() for i in items if i.version > 0}
    return OrjsonResponse(
        {"graph_id": graph_id, "transcoders": summary.transcoders, "labels": labels},
        headers={"Cache-Control": "no-store"},
    )
