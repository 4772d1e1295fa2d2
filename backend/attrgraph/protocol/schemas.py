"""Pydantic models for everything that crosses the HTTP boundary (requests and responses).

Request models forbid unknown fields, so a typo in a setting is a 422 naming the field rather than
a silently ignored option that still costs a full trace.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,99}$"  # model and transcoder-set names (used in keys)
ID_PATTERN = r"^[0-9a-f]{32}$"  # graph and job ids
NODE_ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
ROLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]{0,31}$"  # chat roles: user, assistant, system, tool, ...

# A graph id wherever one is accepted (path parameters, request bodies). A pydantic Field, not
# FastAPI's Path: this package never imports the web framework, and FastAPI reads either.
GraphId = Annotated[str, Field(pattern=ID_PATTERN, description="A graph's content address")]


def _encodable(text: str) -> str:
    # JSON may carry lone surrogates ("\ud800"); Python accepts them in a str, but no tokenizer,
    # hash or JSON encoder downstream can handle them, so they are rejected here, as a 422.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it contains a lone surrogate)") from None
    return text


Text = Annotated[StrictStr, AfterValidator(_encodable)]
TokenRef = Text | StrictInt  # a target token: its text or its vocabulary id


class _Strict(BaseModel):
    # Strict scalar types below too: `true` is not a number of nodes, and "5" is not 5.
    model_config = ConfigDict(extra="forbid")


class TargetRequest(_Strict):
    """Which outputs to explain. Neither field: the most likely next tokens (see settings)."""

    tokens: list[TokenRef] | None = Field(default=None, min_length=1, max_length=20)
    logit_diff: tuple[TokenRef, TokenRef] | None = Field(
        default=None, description="Explain logit(A) - logit(B) for [A, B]."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> TargetRequest:
        if self.tokens is not None and self.logit_diff is not None:
            raise ValueError("give either tokens or logit_diff, not both")
        for ref in [*(self.tokens or []), *(self.logit_diff or [])]:
            if isinstance(ref, str) and not 0 < len(ref) <= 100:
                raise ValueError("target token text must be 1 to 100 characters")
            if isinstance(ref, int) and ref < 0:
                raise ValueError("target token ids must be >= 0")
        return self


class GraphSettings(_Strict):
    """Trace and pruning settings. Defaults are filled in before the graph id is computed, so
    leaving a field out and giving its default are the same request."""

    max_n_logits: StrictInt = Field(default=10, ge=1, le=50)
    desired_logit_prob: StrictFloat = Field(default=0.95, gt=0.0, le=1.0)
    max_feature_nodes: StrictInt | None = Field(
        default=None, ge=0, description="Features kept in the graph; unset: the server's maximum."
    )
    max_edges_per_target: StrictInt = Field(default=4096, ge=1, le=65536)
    node_threshold: StrictFloat = Field(
        default=0.8, ge=0.0, le=1.0, description="Pruning: cumulative node influence kept."
    )
    edge_threshold: StrictFloat = Field(
        default=0.98, ge=0.0, le=1.0, description="Pruning: cumulative edge influence kept."
    )
    qk: StrictBool = Field(
        default=False,
        description="Also explain the top heads' attention (QK attributions on nodes, `qk_tracing_results`).",
    )


class ChatMessage(_Strict):
    """One message of a chat prompt."""

    role: StrictStr = Field(
        pattern=ROLE_PATTERN,
        description="Who speaks: user, assistant, system (as the model's template names them).",
    )
    content: Text


MAX_CHAT_MESSAGES = 64

# A prompt: text, or a chat that the model's chat template renders into text (a JSON string or a
# JSON list, so no discriminator is needed). The graph is traced from the rendered tokens.
Prompt = Annotated[
    Annotated[Text, Field(min_length=1)]
    | Annotated[list[ChatMessage], Field(min_length=1, max_length=MAX_CHAT_MESSAGES)],
    Field(
        description="The text to trace, or a chat: a list of {role, content} messages rendered with the "
        "model's chat template (instruct models; a chat whose last message is the assistant's continues "
        "that reply). The server caps its length in tokens."
    ),
]


def prompt_chars(prompt: str | list[ChatMessage]) -> int:
    """The prompt's length in characters (a chat's: its contents'), for the cheap limit checked
    before any tokenizer runs."""
    return len(prompt) if isinstance(prompt, str) else sum(len(m.content) for m in prompt)


def prompt_call(prompt: str | list[ChatMessage]) -> dict[str, Any]:
    """The prompt as the worker's tokenize call takes it: `prompt` text or chat `messages`."""
    if isinstance(prompt, str):
        return {"prompt": prompt}
    return {"messages": [m.model_dump() for m in prompt]}


class GraphRequest(_Strict):
    prompt: Prompt
    model: StrictStr | None = Field(
        default=None, pattern=NAME_PATTERN, description="Model name; unset: the default."
    )
    transcoders: StrictStr | None = Field(default=None, pattern=NAME_PATTERN)
    target: TargetRequest | None = None
    settings: GraphSettings = Field(default_factory=GraphSettings)


class GraphReady(BaseModel):
    """The graph already exists (or was just found under the same content address)."""

    status: Literal["ready"] = "ready"
    graph_id: str
    graph_url: str


class ResultReady(BaseModel):
    """A worker's result (an intervention, an attention explanation) is already stored."""

    status: Literal["ready"] = "ready"
    result_url: str


class ResultAccepted(BaseModel):
    """A worker's result is being computed (or queued); follow `events_url` or poll `job_url`."""

    status: Literal["queued"] = "queued"
    job_id: str
    position: int
    joined: bool
    job_url: str
    events_url: str
    result_url: str


class JobAccepted(BaseModel):
    """The graph is being computed (or queued); follow `events_url` or poll `job_url`."""

    status: Literal["queued"] = "queued"
    job_id: str
    graph_id: str
    position: int = Field(description="Jobs ahead of this one that have not started yet.")
    joined: bool = Field(description="True when an identical request was already running and this joined it.")
    job_url: str
    events_url: str


JobState = Literal["queued", "running", "done", "failed", "cancelled"]
# What a job computes: a graph (trace) or the effect of feature interventions on one (intervene).
JobKind = Literal["trace", "intervene", "attention"]


class JobStatus(BaseModel):
    job_id: str
    kind: JobKind
    state: JobState
    model: str
    transcoders: str
    prompt: str
    result_id: str = Field(
        description="The content address of what the job produces: the graph (trace) or the "
        "intervention result (intervene)."
    )
    graph_id: str = Field(description="The graph traced (trace) or intervened on (intervene).")
    position: int | None = Field(default=None, description="Set while queued: jobs ahead not yet started.")
    phase: str | None = None
    percent: float | None = None
    error: str | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None


class CancelResult(BaseModel):
    job_id: str
    state: JobState = Field(description="The state now; a running job stays running until its worker stops.")
    cancel_requested: bool


class GraphSummary(BaseModel):
    """A stored graph at a glance. Workers store it next to the graph (without `pinned`, which the
    API fills in from the graph's references when it reads it)."""

    graph_id: str
    prompt: str
    model: str
    transcoders: str
    n_tokens: int
    n_nodes: int
    n_links: int
    bytes: int = 0
    created_at: float
    pinned: bool = False
    target: list[str] = Field(
        default_factory=list,
        description="What the graph explains: the requested target tokens, else its target output.",
    )
    settings: dict[str, StrictInt | StrictFloat] = Field(
        default_factory=dict, description="The trace and pruning settings it was made with (as known)."
    )


class GraphList(BaseModel):
    graphs: list[GraphSummary]


class Edge(BaseModel):
    source: str
    target: str
    weight: float


class NodeDetail(BaseModel):
    graph_id: str
    node: dict[str, Any]
    incoming: list[Edge]
    outgoing: list[Edge]


class TranscoderInfo(BaseModel):
    name: str
    id: str
    revision: str = ""
    n_layers: int | None = None
    d_transcoder: int | None = None
    has_dashboards: bool = False


class ModelInfo(BaseModel):
    name: str
    model_id: str
    revision: str = ""
    engine_version: str
    n_layers: int | None = None
    transcoders: list[TranscoderInfo]
    default_transcoders: str
    workers: int = Field(default=0, description="Live workers serving this model.")
    default: bool = False
    context_length: int | None = Field(default=None, description="The most tokens the model accepts.")
    chat_template: bool = Field(
        default=False, description="True when prompts may be chats (instruct models)."
    )
    memory_budget_bytes: int | None = Field(
        default=None, description="What one trace may use on the worker's device, as it advertised."
    )

    def prompt_limit(self, server_limit: int) -> int:
        """The longest prompt to accept: the server's limit, or the model's context when smaller."""
        return server_limit if self.context_length is None else min(server_limit, self.context_length)

    def too_long(self, n_tokens: int, server_limit: int) -> str | None:
        """Why a prompt of `n_tokens` is refused, or None when it fits."""
        limit = self.prompt_limit(server_limit)
        if n_tokens <= limit:
            return None
        why = " (the model's context)" if limit < server_limit else ""
        return f"the prompt has {n_tokens} tokens; this server traces at most {limit}{why}"


class ModelList(BaseModel):
    default_model: str | None
    max_prompt_tokens: int
    models: list[ModelInfo]


class TokenizeRequest(_Strict):
    prompt: Prompt
    model: StrictStr | None = Field(default=None, pattern=NAME_PATTERN)
    top_k: StrictInt = Field(
        default=10, ge=0, le=50, description="Next-token predictions to return (0: none)."
    )


class Token(BaseModel):
    id: int
    text: str


class Prediction(BaseModel):
    id: int
    text: str
    probability: float


class TraceEstimate(BaseModel):
    """A worker's prediction for tracing this prompt (engine/estimate.py)."""

    peak_bytes: int = Field(description="Predicted peak memory of the trace.")
    seconds: float = Field(description="Predicted time of the trace (rough: calibrated per device kind).")
    fits: bool | None = Field(description="Whether it fits the worker's memory budget (None: unknown).")
    budget_bytes: int | None = None
    batch_size: int
    dominant: str = Field(description="The memory term that dominates (edges, batch, forward, ...).")
    advice: str | None = Field(default=None, description="When it does not fit: the setting to change.")


class TokenizeResponse(BaseModel):
    model: str
    text: str = Field(
        description="The text traced: the prompt, or the chat rendered with the model's template."
    )
    tokens: list[Token]
    predictions: list[Prediction]
    max_prompt_tokens: int = Field(description="The longest prompt this model traces here, in tokens.")
    estimate: TraceEstimate | None = Field(
        default=None, description="Predicted memory and time of tracing it with the server's defaults."
    )


class ErrorResponse(BaseModel):
    detail: str
