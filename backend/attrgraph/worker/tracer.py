"""What a worker needs from a tracing engine, as a protocol.

The worker (queue handling, heartbeats, storage) is written against this interface; the real
implementation is torch_tracer.TorchTracer (torch, attrgraph.engine). Tests plug in a fast fake
(fake_tracer.FakeTracer) through `--tracer module:callable`, so the queue machinery is exercised in
seconds without a model, and the same worker code runs either way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

from attrgraph.protocol.records import AttentionPayload, InterventionPayload, TracePayload
from attrgraph.protocol.schemas import ModelInfo, Prediction, Token
from attrgraph.settings import Settings

# (phase, done, total); raising from it stops the trace (cancellation, shutdown).
Progress = Callable[[str, int, int], None]


class UserError(ValueError):
    """The request cannot be computed as asked (prompt too long, target not a token, transcoders
    that do not fit the model, ...).

    Its message is shown to the user as is (the job fails with it); any other exception is reported
    as an internal error.
    """


class Tracer(Protocol):
    def load(self) -> list[ModelInfo]:
        """Load every model once; return what to advertise (names, revisions, transcoder sets)."""
        ...

    def tokenize(self, model: str, prompt: str) -> list[Token]:
        """Tokens of `prompt`, exactly as trace() will see them. Thread-safe (worker calls)."""
        ...

    def render_chat(self, model: str, messages: list[dict[str, str]]) -> str:
        """A chat's prompt text under the model's chat template; UserError when it has none.
        Thread-safe (worker calls)."""
        ...

    def predict(self, model: str, token_ids: list[int], top_k: int) -> list[Prediction]:
        """Top next-token predictions. Runs the model: the worker holds the model lock."""
        ...

    def trace(self, job: TracePayload, progress: Progress) -> dict[str, Any]:
        """The graph as Neuronpedia / circuit-tracer JSON (a dict), pruned per job.settings.
        Runs the model: the worker holds the model lock."""
        ...

    def intervene(self, job: InterventionPayload, progress: Progress) -> dict[str, Any]:
        """The engine's InterventionResult.to_dict() for job.prompt (the graph's). Runs the model:
        the worker holds the model lock."""
        ...

    def attention(self, job: AttentionPayload, graph: dict[str, Any], progress: Progress) -> dict[str, Any]:
        """Heads of an edge (job.edge) or QK of a head hop (job.head) on the stored graph JSON
        `graph`, as engine.attention.requests returns them plus `labels` (node id -> label) for the
        nodes they name. Runs the model: the worker holds the model lock."""
        ...

    def feature(self, transcoders: str, layer: int, index: int) -> dict[str, Any] | None:
        """A feature's dashboard, or None when this set has none for it. Thread-safe."""
        ...


def load_tracer(settings: Settings) -> Tracer:
    """Instantiate settings.tracer ("package.module:callable", called with the settings)."""
    module_name, _, attr = settings.tracer.partition(":")
    if not attr:
        raise ValueError(f"tracer must look like 'package.module:callable', got {settings.tracer!r}")
    factory = getattr(importlib.import_module(module_name), attr)
    tracer: Tracer = factory(settings)
    return tracer
