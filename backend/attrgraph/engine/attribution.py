"""trace(): a prompt and its targets in, an attribution graph out.

1. One forward pass of the linearised replacement model (replacement.py), kept for reuse.
2. Rows (rows.py): for each target (a logit, then features), its direct effect from every source.
   A batch of targets is one backward pass with `is_grads_batched`: each batch row injects one
   target's read direction at its (layer, position), and the gradients at the write sites dotted
   with what each source wrote there are the edge weights.
3. With `max_feature_nodes`, features are visited in order of their current estimated influence on
   the logits, re-ranked every `update_interval` batches, so a capped graph holds the features that
   matter most.
4. Each row is kept sparse (nonzeros, optionally only the largest `max_edges_per_target`), so memory
   grows with the edges kept. What a row drops is recorded, so edges + bias + unexplored still sum
   to the target's value.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol, cast

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

import attrgraph
from attrgraph.engine.batching import resolve_batch_size, run_with_retry
from attrgraph.engine.graph import Graph
from attrgraph.engine.replacement import ReplacementModel
from attrgraph.engine.rows import ProgressCallback, RowBuilder, RowSettings
from attrgraph.engine.targets import TargetSpec, select_targets
from attrgraph.engine.transcoders.base import TranscoderSet


class PromptError(ValueError):
    """The prompt cannot be traced (empty, or longer than the model accepts)."""


class TraceableModel(Protocol):
    """What trace() needs of a loaded model (engine.models.LoadedModel is one)."""

    @property
    def model(self) -> nn.Module: ...
    @property
    def tokenizer(self) -> PreTrainedTokenizerBase: ...
    @property
    def model_id(self) -> str: ...
    @property
    def revision(self) -> str: ...


@dataclass(frozen=True)
class TraceSettings:
    max_n_logits: int = 10
    desired_logit_prob: float = 0.95
    max_feature_nodes: int | None = None  # None: every active feature becomes a node
    # Targets per backward pass; None: the largest that fits the device's free memory (the
    # estimate's choice, engine/batching.py). An out-of-memory error halves it and retries.
    batch_size: int | None = None
    max_edges_per_target: int | None = 4096  # None: keep every nonzero edge
    update_interval: int = 4  # batches between influence re-rankings
    exclude_bos_features: bool = True
    compute_bias_terms: bool = True  # one extra replayed forward pass; needed for exact completeness
    # The most memory (MiB) one backward pass's gradients and dense rows may take: a batch that would
    # need more runs as several passes (same rows), so peak memory stays bounded on long prompts.
    # None: one pass per batch.
    pass_memory_mb: int | None = 1024

    def __post_init__(self) -> None:
        if self.max_n_logits < 1:
            raise ValueError("max_n_logits must be at least 1")
        if not 0.0 < self.desired_logit_prob <= 1.0:
            raise ValueError("desired_logit_prob must be in (0, 1]")
        if self.max_feature_nodes is not None and self.max_feature_nodes < 0:
            raise ValueError("max_feature_nodes must be >= 0")
        if (self.batch_size is not None and self.batch_size < 1) or self.update_interval < 1:
            raise ValueError("batch_size and update_interval must be >= 1")
        if self.max_edges_per_target is not None and self.max_edges_per_target < 1:
            raise ValueError("max_edges_per_target must be >= 1")
        if self.pass_memory_mb is not None and self.pass_memory_mb < 1:
            raise ValueError("pass_memory_mb must be >= 1")


def tokenize(tokenizer: PreTrainedTokenizerBase, prompt: str | Sequence[int]) -> list[int]:
    if isinstance(prompt, str):
        # Text that already starts with the BOS token (a rendered chat template) must not get a
        # second one: the model never saw two, and the graph would show it.
        bos = tokenizer.bos_token
        starts_with_bos = isinstance(bos, str) and bool(bos) and prompt.startswith(bos)
        ids = [int(i) for i in tokenizer(prompt, add_special_tokens=not starts_with_bos)["input_ids"]]
    else:
        ids = [int(i) for i in prompt]
    if not ids:
        raise PromptError("the prompt is empty")
    return ids


def context_length(model: nn.Module) -> int | None:
    """The most tokens the model accepts (its position embeddings), when its config says."""
    config = getattr(model, "config", None)
    value = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return int(value) if value else None


def trace(
    lm: TraceableModel,
    transcoders: TranscoderSet,
    prompt: str | Sequence[int],
    *,
    targets: TargetSpec | None = None,
    settings: TraceSettings | None = None,
    progress: ProgressCallback | None = None,
) -> Graph:
    """Compute the attribution graph of `prompt` (text, or token ids) for the chosen targets."""
    settings = settings or TraceSettings()
    report = progress or (lambda phase, done, total: None)
    token_ids = tokenize(lm.tokenizer, prompt)
    max_positions = context_length(lm.model)
    if max_positions is not None and len(token_ids) > max_positions:
        raise PromptError(
            f"the prompt has {len(token_ids)} tokens; the model accepts at most {max_positions}"
        )
    timings: dict[str, float] = {}
    started = time.perf_counter()

    replacement = ReplacementModel(lm.model, transcoders)
    device = next(lm.model.parameters()).device
    exclude = int(settings.exclude_bos_features and token_ids[0] == lm.tokenizer.bos_token_id)
    with torch.enable_grad():
        report("forward", 0, 1)
        cache = replacement.run(
            torch.tensor(token_ids, device=device),
            exclude_positions=exclude,
            # The patterns and norm scales: the linear backward and the bias terms' replay read them
            # (autograd keeps the same pattern tensors anyway, so recording costs no memory).
            record=True,
        )
        report("forward", 1, 1)
        timings["forward_s"] = time.perf_counter() - started
        logit_targets = select_targets(
            lm.tokenizer,
            cache.logits[-1],
            targets or TargetSpec(),
            max_n_logits=settings.max_n_logits,
            desired_logit_prob=settings.desired_logit_prob,
        )

        def rows(s: TraceSettings) -> tuple[RowBuilder, TraceSettings]:
            builder = RowBuilder(replacement, cache, logit_targets, cast(RowSettings, s))
            builder.run(report)
            return builder, s

        n_active = sum(int(a.features.numel()) for a in cache.activations)
        density = n_active / max(1, (len(token_ids) - exclude) * replacement.n_layers)
        settings = resolve_batch_size(settings, lm.model, transcoders, len(token_ids), density)
        builder, settings = run_with_retry(settings, rows)
        timings["attribution_s"] = time.perf_counter() - started - timings["forward_s"]
    graph = builder.graph(
        prompt=prompt if isinstance(prompt, str) else str(lm.tokenizer.decode(token_ids)),
        tokens=[str(lm.tokenizer.decode([t])) for t in token_ids],
        model_id=f"{lm.model_id}@{lm.revision}" if lm.revision else lm.model_id,
        transcoder_id=f"{transcoders.name}@{transcoders.revision}"
        if transcoders.revision
        else transcoders.name,
    )
    timings["total_s"] = time.perf_counter() - started
    graph.stats.update(timings)
    graph.settings = {**asdict(settings), "engine_version": attrgraph.__version__}
    return graph
