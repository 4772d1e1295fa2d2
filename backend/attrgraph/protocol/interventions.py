"""Interventions as the service sees them: the request body, its replies and the result id.

`POST /api/interventions` names a stored graph (its prompt, model and transcoders) and a list of
feature interventions and attention head ablations. The result is computed by a worker (the
engine's `intervene`) and stored under a content address over everything that determines it: the
graph id (which already covers model, transcoders, tokens and engine version), the interventions in
order, the options and the engine version of the worker's model, so repeating a request, or
opening a share link, is a cache hit.
The job a worker runs for it is records.InterventionPayload.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from attrgraph.protocol.ids import result_address
from attrgraph.protocol.schemas import GraphId, ResultAccepted, ResultReady

MAX_INTERVENTIONS = 256
MAX_ABS_VALUE = 1e6

InterventionMode = Literal["set", "scale", "ablate", "add"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class InterventionItem(_Strict):
    """One feature at one position: set its activation to `value`, scale it by `value`, zero it
    (ablate; `value` ignored) or add `value` to it."""

    layer: StrictInt = Field(ge=0)
    position: StrictInt = Field(ge=0, description="Token position in the graph's prompt (0 = first).")
    feature: StrictInt = Field(ge=0, description="The feature's index in its layer's transcoder.")
    mode: InterventionMode
    value: StrictFloat | StrictInt = Field(default=0.0, ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)


class HeadAblationItem(_Strict):
    """One attention head's output zeroed at every position; the rest of the model recomputes."""

    mode: Literal["ablate_head"]
    layer: StrictInt = Field(ge=0)
    head: StrictInt = Field(ge=0, description="The head's index in its layer.")


Intervention = Annotated[InterventionItem | HeadAblationItem, Field(discriminator="mode")]


class InterventionSettings(_Strict):
    freeze_attention: StrictBool = Field(
        default=False, description="Keep attention patterns and norm scales at their original values."
    )
    direct_only: StrictBool = Field(
        default=False, description="Hold every other MLP output: only the intervened features' writes change."
    )
    apply_to_generated: StrictBool = Field(
        default=False, description="Also apply the interventions at each generated token."
    )
    top_k: StrictInt = Field(default=10, ge=1, le=50)
    n_generate: StrictInt = Field(default=8, ge=1, le=32)


class InterventionRequest(_Strict):
    graph_id: GraphId
    interventions: list[Intervention] = Field(min_length=1)
    options: InterventionSettings = Field(default_factory=InterventionSettings)


class InterventionReady(ResultReady):
    intervention_id: str


class InterventionAccepted(ResultAccepted):
    intervention_id: str


def intervention_id(engine_version: str, request: InterventionRequest) -> str:
    asked = {
        "graph": request.graph_id,
        "interventions": [_address(iv) for iv in request.interventions],
        "options": request.options.model_dump(),
    }
    return result_address("intervention", engine_version, asked)


def _address(iv: InterventionItem | HeadAblationItem) -> list[Any]:
    if isinstance(iv, HeadAblationItem):
        return [iv.layer, iv.head, iv.mode]
    # an ablation's value means nothing: leave it out of the address
    return [iv.layer, iv.position, iv.feature, iv.mode, 0.0 if iv.mode == "ablate" else float(iv.value)]
