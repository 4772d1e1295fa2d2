"""Attention explanations as the service sees them: the request body, its replies and the result id.

`POST /api/attention` names a stored graph and either an edge of it (source and target node ids:
which heads carried it, with their shares and pattern values) or a head hop (layer, head, query and
key positions: its QK pairs and marginals). A worker computes it (engine.attention) and the result
is stored under a content address over everything that determines it: the graph id (model,
transcoders, tokens, engine version), the request and the worker's engine version. The job a
worker runs for it is records.AttentionPayload.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

from attrgraph.protocol.ids import result_address
from attrgraph.protocol.schemas import NODE_ID_PATTERN, GraphId, ResultAccepted, ResultReady

MAX_TOP = 50


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EdgeRef(_Strict):
    source: StrictStr = Field(pattern=NODE_ID_PATTERN, description="The edge's source node id.")
    target: StrictStr = Field(
        pattern=NODE_ID_PATTERN, description="The edge's target node id (a feature or a logit)."
    )


class HeadRef(_Strict):
    layer: StrictInt = Field(ge=0)
    head: StrictInt = Field(ge=0)
    query_pos: StrictInt = Field(ge=0, description="Token position the head attends from.")
    key_pos: StrictInt = Field(ge=0, description="Token position it attends to (<= query_pos).")


class AttentionRequest(_Strict):
    """Exactly one of `edge` (head loadings of that edge) or `head` (QK attribution of that hop)."""

    graph_id: GraphId
    edge: EdgeRef | None = None
    head: HeadRef | None = None
    top: StrictInt = Field(default=10, ge=1, le=MAX_TOP, description="Entries per QK list.")

    @model_validator(mode="after")
    def _one_question(self) -> Self:
        if (self.edge is None) == (self.head is None):
            raise ValueError("give exactly one of 'edge' or 'head'")
        if self.head is not None and self.head.key_pos > self.head.query_pos:
            raise ValueError("head.key_pos must be <= head.query_pos (attention is causal)")
        return self

    @property
    def kind(self) -> Literal["edge", "head"]:
        return "edge" if self.edge is not None else "head"


class AttentionReady(ResultReady):
    attention_id: str


class AttentionAccepted(ResultAccepted):
    attention_id: str


def attention_id(engine_version: str, request: AttentionRequest) -> str:
    # an edge's loadings do not depend on `top`: leave it out of the address
    asked = request.model_dump(exclude={"top"} if request.edge is not None else set())
    return result_address("attention", engine_version, asked)
