"""What the API and the workers write to each other through Redis (not part of the HTTP API).

Each record is a pydantic model so both sides validate what they read: a half-written or foreign
value fails loudly at the boundary instead of deep inside a trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field

from attrgraph.protocol.interventions import InterventionJob
from attrgraph.protocol.schemas import GraphSettings, JobState, TargetRequest


class TraceSpec(BaseModel):
    """Everything a worker needs to compute one graph; fixed when the job is created."""

    model: str
    transcoders: str
    prompt: str
    token_ids: list[int]
    target: TargetRequest | None = None
    settings: GraphSettings


class JobRecord(BaseModel):
    """A job, stored as a Redis hash (one field per attribute, JSON for the spec)."""

    job_id: str
    state: JobState
    graph_id: str
    spec: TraceSpec
    entry_id: str = ""  # its stream entry, so a queued job can be removed on cancel
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    phase: str | None = None
    percent: float | None = None
    error: str | None = None
    worker: str | None = None
    cancel_requested: bool = False
    # An intervention job: graph_id is then the result's content address (not a graph's).
    kind: Literal["graph", "intervention"] = "graph"
    intervention: InterventionJob | None = None

    def to_hash(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.model_dump(exclude={"spec", "intervention"}).items():
            if value is None:
                continue
            out[name] = "1" if value is True else "0" if value is False else str(value)
        out["spec"] = self.spec.model_dump_json()
        if self.intervention is not None:
            out["intervention"] = self.intervention.model_dump_json()
        return out

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> JobRecord:
        fields = {text(k): text(v) for k, v in raw.items()}
        data: dict[str, Any] = dict(fields)
        data["spec"] = orjson.loads(fields["spec"])
        if "intervention" in fields:
            data["intervention"] = orjson.loads(fields["intervention"])
        data["cancel_requested"] = fields.get("cancel_requested") == "1"
        return cls.model_validate(data)


def text(value: Any) -> str:
    """A Redis reply value as str (clients return bytes unless told to decode)."""
    return value.decode() if isinstance(value, bytes) else str(value)


class WorkerCall(BaseModel):
    """A fast-lane request to whichever worker of the model is free to answer it."""

    id: str
    kind: Literal["tokenize", "feature"]
    deadline: float  # epoch seconds; a worker that picks it up later drops it (the caller gave up)
    args: dict[str, Any] = Field(default_factory=dict)


class WorkerCallReply(BaseModel):
    status: int = 200  # an HTTP status the API passes on (404 for a missing feature, 422 ...)
    result: Any = None
    error: str | None = None


class JobEvent(BaseModel):
    """One Server-Sent Event: `event` is its type, `data` its JSON payload."""

    event: Literal["queued", "started", "progress", "done", "failed", "cancelled", "requeued"]
    data: dict[str, Any] = Field(default_factory=dict)

    def to_fields(self) -> dict[str, bytes]:
        return {"event": self.event.encode(), "data": orjson.dumps(self.data)}

    @classmethod
    def from_fields(cls, raw: Mapping[Any, Any]) -> JobEvent:
        return cls(event=raw[b"event"].decode(), data=orjson.loads(raw[b"data"]))

    @property
    def terminal(self) -> bool:
        return self.event in ("done", "failed", "cancelled")


class GraphMeta(BaseModel):
    """Stored next to each graph; the source of the API's GraphSummary."""

    graph_id: str
    prompt: str
    model: str
    transcoders: str
    n_tokens: int
    n_nodes: int
    n_links: int
    bytes: int = 0
    created_at: float
