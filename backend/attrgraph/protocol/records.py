"""What the API and the workers write to each other through Redis (not part of the HTTP API).

Each record is a pydantic model so both sides validate what they read: a half-written or foreign
value fails loudly at the boundary instead of deep inside a trace.

A job is its bookkeeping (state, progress, timestamps) plus a payload whose `kind` says what to
compute: a graph (TracePayload), the effect of interventions on one (InterventionPayload) or an
explanation of its attention (AttentionPayload). Each result is stored under a content address, the
job's `result_id`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, Field, ValidationError

from attrgraph.protocol.attention import EdgeRef, HeadRef
from attrgraph.protocol.interventions import Intervention, InterventionSettings
from attrgraph.protocol.keys import Keys
from attrgraph.protocol.schemas import GraphSettings, JobKind, JobState, TargetRequest


class _Payload(BaseModel):
    """What every job names: the model (its queue), the transcoder set and the prompt."""

    model: str
    transcoders: str
    prompt: str


class TracePayload(_Payload):
    """Everything a worker needs to compute one graph; fixed when the job is created."""

    kind: Literal["trace"] = "trace"
    token_ids: list[int]  # what the graph id was computed from: traced as is, never re-tokenized
    target: TargetRequest | None = None
    settings: GraphSettings
    # Submitted before any worker served the model (token_ids empty, the result id a pending key,
    # transcoders "" for the default set): the worker renders `messages` (a chat) or takes `prompt`,
    # tokenizes, checks the length against max_prompt_tokens and computes the graph id itself.
    messages: list[dict[str, str]] | None = None
    max_prompt_tokens: int | None = None

    @property
    def pending(self) -> bool:
        return not self.token_ids


class InterventionPayload(_Payload):
    """Interventions on a stored graph's prompt (`prompt` is that graph's)."""

    kind: Literal["intervene"] = "intervene"
    graph_id: str
    interventions: list[Intervention]
    options: InterventionSettings


class AttentionPayload(_Payload):
    """Heads of an edge, or QK of a head hop, on a stored graph (`prompt` is that graph's)."""

    kind: Literal["attention"] = "attention"
    graph_id: str
    edge: EdgeRef | None = None
    head: HeadRef | None = None
    top: int = 10


JobPayload = Annotated[TracePayload | InterventionPayload | AttentionPayload, Field(discriminator="kind")]


class RecordError(ValueError):
    """A stored record that does not parse (written by another version, or damaged)."""


class JobRecord(BaseModel):
    """A job, stored as a Redis hash (one field per attribute, JSON for the payload)."""

    job_id: str
    state: JobState
    result_id: str  # the content address its result is stored under (a graph or intervention id)
    payload: JobPayload
    entry_id: str = ""  # its stream entry, so a queued job can be removed on cancel
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    phase: str | None = None
    percent: float | None = None
    error: str | None = None
    worker: str | None = None
    cancel_requested: bool = False

    @property
    def kind(self) -> JobKind:
        return self.payload.kind

    @property
    def model(self) -> str:
        return self.payload.model

    @property
    def graph_id(self) -> str:
        """The graph the job computes (trace) or intervenes on (intervene)."""
        if isinstance(self.payload, InterventionPayload | AttentionPayload):
            return self.payload.graph_id
        return self.result_id

    def result_key(self, keys: Keys) -> str:
        """Where the finished result lives: its existence means there is nothing left to compute."""
        if self.kind == "intervene":
            return keys.intervention(self.result_id)
        if self.kind == "attention":
            return keys.attention(self.result_id)
        return keys.graph(self.result_id)

    def result_ref(self) -> dict[str, str]:
        """The result's id as events and replies name it (`graph_id` or `intervention_id`)."""
        name = {"intervene": "intervention_id", "attention": "attention_id"}.get(self.kind, "graph_id")
        return {name: self.result_id}

    def to_hash(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.model_dump(exclude={"payload"}).items():
            if value is None:
                continue
            out[name] = "1" if value is True else "0" if value is False else str(value)
        out["payload"] = self.payload.model_dump_json()
        return out

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> JobRecord:
        fields = {text(k): text(v) for k, v in raw.items()}
        data: dict[str, Any] = dict(fields)
        try:
            data["payload"] = orjson.loads(fields["payload"])
            data["cancel_requested"] = fields.get("cancel_requested") == "1"
            return cls.model_validate(data)
        except (KeyError, orjson.JSONDecodeError, ValidationError) as exc:
            raise RecordError(f"unreadable job record: {exc}") from None


def text(value: Any) -> str:
    """A Redis reply value as str (clients return bytes unless told to decode)."""
    return value.decode() if isinstance(value, bytes) else str(value)


WorkerCallKind = Literal["tokenize", "feature"]


class WorkerCall(BaseModel):
    """A short request (tokenize, dashboard) to whichever worker of the model is free to answer it."""

    id: str
    kind: WorkerCallKind
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
