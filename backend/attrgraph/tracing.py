"""One traced request, end to end: load, validate, trace, prune, score, summarise.

The CLI and the service's worker both go through here (`trace_pruned`, `intervene_request`), so a
prompt is traced, pruned and refused the same way wherever it comes from. Every problem a user can
cause (an empty prompt, a prompt longer than the server or the model accepts, a chat for a model
without a chat template, a target that is no single token, transcoders that do not fit the model, an
impossible intervention) surfaces as a `TraceRequestError` with a one-line message.

A prompt is text, or a chat (a list of {role, content} messages) that the model's chat template
renders into text; from there on both are traced the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from attrgraph.engine import Graph, PromptError, TargetError, TargetSpec, TraceSettings, trace
from attrgraph.engine.attention import AttentionTracer
from attrgraph.engine.attention.ablation import HeadAblationError
from attrgraph.engine.attention.requests import top_head_entries
from attrgraph.engine.attribution import context_length, tokenize
from attrgraph.engine.chat import Chat, ChatError, render_chat
from attrgraph.engine.chat import messages as chat_messages
from attrgraph.engine.interventions import (
    FeatureIntervention,
    InterventionError,
    InterventionOptions,
    InterventionResult,
    intervene,
)
from attrgraph.engine.models import LoadedModel, ModelLoadError, load_model
from attrgraph.engine.pruning import GraphScores, PruneResult, graph_scores, prune
from attrgraph.engine.replacement import IncompatibleTranscodersError
from attrgraph.engine.transcoders import TranscoderLoadError, TranscoderSet, load_transcoders

Progress = Callable[[str, int, int], None]
Prompt = str | Chat  # text, or chat messages rendered with the model's template


class TraceRequestError(ValueError):
    """Something about the request (not the server) prevents tracing it."""


@dataclass
class TraceResult:
    graph: Graph
    pruned: PruneResult
    scores: GraphScores

    def json_bytes(self, **kwargs: Any) -> bytes:
        from attrgraph.engine.interop import dumps

        return dumps(self.graph, prune_result=self.pruned, **kwargs)


def default_sources(model: str | None, transcoders: str | None) -> tuple[str, str]:
    """Fill in the built-in demo model and its transcoders where none were given."""
    if model is not None and transcoders is None:
        raise TraceRequestError(
            "a model needs its transcoders: give both (the demo transcoders fit only the demo model)"
        )
    if model is not None and transcoders is not None:
        return model, transcoders
    from attrgraph.bundled import demo_model_dir, demo_transcoders_dir

    return str(demo_model_dir()), transcoders or str(demo_transcoders_dir())


def load_pair(
    model_source: str | Path,
    transcoder_source: str | Path,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    progress: Progress | None = None,
) -> tuple[LoadedModel, TranscoderSet]:
    report = progress or (lambda phase, done, total: None)
    try:
        report("loading model", 0, 2)
        lm = load_model(model_source, device=device, dtype=dtype)
        report("loading model", 1, 2)
        transcoders = load_transcoders(transcoder_source, device=lm.device, dtype=lm.dtype)
        report("loading model", 2, 2)
    except (ModelLoadError, TranscoderLoadError) as exc:
        raise TraceRequestError(str(exc)) from None
    return lm, transcoders


def build_settings(overrides: dict[str, Any] | None) -> TraceSettings:
    known = {f.name for f in fields(TraceSettings)}
    unknown = sorted(set(overrides or {}) - known)
    if unknown:
        raise TraceRequestError(f"unknown setting(s): {', '.join(unknown)}")
    try:
        return TraceSettings(**{k: v for k, v in (overrides or {}).items() if v is not None})
    except (TypeError, ValueError) as exc:
        raise TraceRequestError(str(exc)) from None


def check_prompt(prompt: Prompt) -> None:
    """Refuse a prompt that cannot be traced by any model (empty text, an empty or malformed chat),
    before anything is loaded."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise TraceRequestError("the prompt is empty")
        return
    try:
        chat_messages(prompt)
    except ChatError as exc:
        raise TraceRequestError(str(exc)) from None


def prompt_text(lm: LoadedModel, prompt: Prompt) -> str:
    """The text to trace: the prompt itself, or the chat rendered with the model's template."""
    check_prompt(prompt)
    if isinstance(prompt, str):
        return prompt
    try:
        return render_chat(lm.tokenizer, prompt)
    except ChatError as exc:
        raise TraceRequestError(str(exc)) from None


def prompt_limit(lm: LoadedModel, max_tokens: int) -> int:
    """The longest prompt to accept: the caller's limit, or the model's context when smaller."""
    context = context_length(lm.model)
    return max_tokens if context is None else min(max_tokens, context)


def check_length(lm: LoadedModel, n_tokens: int, max_tokens: int) -> None:
    limit = prompt_limit(lm, max_tokens)
    if n_tokens > limit:
        why = " (the model's context)" if limit < max_tokens else ""
        raise TraceRequestError(f"the prompt has {n_tokens} tokens; the limit is {limit}{why}")


def trace_request(
    lm: LoadedModel,
    transcoders: TranscoderSet,
    prompt: Prompt,
    *,
    targets: Sequence[str | int] | None = None,
    logit_diff: Sequence[str | int] | None = None,
    max_tokens: int = 1024,
    settings: dict[str, Any] | None = None,
    node_threshold: float = 0.8,
    edge_threshold: float = 0.98,
    progress: Progress | None = None,
) -> TraceResult:
    text = prompt_text(lm, prompt)
    check_length(lm, len(tokenize(lm.tokenizer, text)), max_tokens)
    spec = TargetSpec(
        tokens=tuple(targets) if targets else None,
        logit_diff=(logit_diff[0], logit_diff[1]) if logit_diff else None,
    )
    graph, pruned = trace_pruned(
        lm,
        transcoders,
        text,
        targets=spec,
        settings=build_settings(settings),
        node_threshold=node_threshold,
        edge_threshold=edge_threshold,
        progress=progress,
    )
    return TraceResult(graph, pruned, graph_scores(graph))


def trace_pruned(
    lm: LoadedModel,
    transcoders: TranscoderSet,
    prompt: str | Sequence[int],
    *,
    targets: TargetSpec | None,
    settings: TraceSettings,
    node_threshold: float,
    edge_threshold: float,
    progress: Progress | None = None,
) -> tuple[Graph, PruneResult]:
    """The graph of `prompt` (text, or the exact token ids a content address was computed from)
    and its pruning; a user's mistake as TraceRequestError."""
    report = progress or _silent
    try:
        graph = trace(lm, transcoders, prompt, targets=targets, settings=settings, progress=progress)
    except (PromptError, TargetError, IncompatibleTranscodersError) as exc:
        raise TraceRequestError(str(exc)) from None
    report("prune", 0, 1)
    pruned = prune(graph, node_threshold=node_threshold, edge_threshold=edge_threshold)
    report("prune", 1, 1)
    return graph, pruned


def intervene_request(
    lm: LoadedModel,
    transcoders: TranscoderSet,
    prompt: str | Sequence[int],
    interventions: list[FeatureIntervention],
    options: InterventionOptions,
) -> InterventionResult:
    """engine.interventions.intervene, with a user's mistake as TraceRequestError."""
    tokens = prompt if isinstance(prompt, str) else list(prompt)
    try:
        return intervene(lm, transcoders, tokens, interventions, options)
    except (PromptError, InterventionError, HeadAblationError, IncompatibleTranscodersError) as exc:
        raise TraceRequestError(str(exc)) from None


def qk_entries(
    lm: LoadedModel,
    transcoders: TranscoderSet,
    graph: Graph,
    pruned: PruneResult | None,
    *,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """`--qk`: QK attributions of the graph's top heads, as entries for `graph.attention` (each on
    the exported node it explains; attrgraph.format.qk)."""
    bos = lm.tokenizer.bos_token_id
    tracer = AttentionTracer.for_graph(lm.model, transcoders, graph, bos_token_id=bos, progress=progress)
    return top_head_entries(tracer, graph, pruned, progress=progress)


def _silent(phase: str, done: int, total: int) -> None:
    pass


def summarize(result: TraceResult) -> str:
    g = result.graph
    lines = [f"prompt: {g.prompt!r} ({g.n_pos} tokens)", "top predictions:"]
    for target in g.logit_targets:
        if target.minus_token_id is None:
            lines.append(f"  {target.probability:6.1%}  {target.token!r}")
        else:  # each side quoted, so its leading space shows: ' big' minus ' small'
            lines.append(f"  {target.probability:6.1%}  {target.token!r} minus {target.minus_token!r}")
    stats = g.stats
    lines.append(
        f"graph: {g.n_features} feature nodes of {stats.get('n_active_features', g.n_features)} active, "
        f"{g.edges.shape[0]} edges; pruned to {result.pruned.n_nodes_kept} nodes, "
        f"{result.pruned.n_edges_kept} edges"
    )
    lines.append(
        f"scores: replacement {result.scores.replacement_score:.3f}, "
        f"completeness {result.scores.completeness_score:.3f}"
    )
    lines.append(f"time: {stats.get('total_s', 0.0):.2f} s")
    return "\n".join(lines)
