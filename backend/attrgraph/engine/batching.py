"""The backward batch size: chosen from free memory by default, halved on a CUDA out-of-memory error.

The rows a batch computes do not depend on its size, and neither does which features are explored:
features are re-ranked every `batch_size x update_interval` rows, so when the batch is halved the
interval is doubled and that product stays the same (powers of two below it divide it exactly).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol, TypeVar

import torch

from attrgraph.engine.estimate import choose_batch_size, device_budget, trace_shape

log = logging.getLogger("attrgraph.engine")

REFERENCE_BATCH = 64  # the batch size `update_interval` counts in when the batch is chosen


class _Settings(Protocol):
    @property
    def batch_size(self) -> int | None: ...
    @property
    def update_interval(self) -> int: ...
    @property
    def max_n_logits(self) -> int: ...
    @property
    def max_feature_nodes(self) -> int | None: ...
    @property
    def max_edges_per_target(self) -> int | None: ...
    @property
    def pass_memory_mb(self) -> int | None: ...


S = TypeVar("S", bound=_Settings)
R = TypeVar("R")


def resolve_batch_size(
    settings: S,
    model: torch.nn.Module,
    transcoders: object,
    n_tokens: int,
    active_per_token: float | None = None,
) -> S:
    """`settings` with a batch size: as given, or (None) the largest that the estimate says fits in
    the device's free memory; `update_interval` is scaled so re-ranking happens every
    REFERENCE_BATCH x update_interval rows, as with the reference batch. `active_per_token`: the
    forward pass's measured feature density (trace() knows it by then)."""
    if settings.batch_size is not None:
        return settings
    shape = trace_shape(model, transcoders)
    if active_per_token is not None:
        shape = replace(shape, active_per_token=active_per_token)
    budget = device_budget(next(model.parameters()).device)
    batch = choose_batch_size(shape, n_tokens, settings, budget)
    batch = min(batch, REFERENCE_BATCH * settings.update_interval)
    interval = max(1, REFERENCE_BATCH * settings.update_interval // batch)
    return replace(settings, batch_size=batch, update_interval=interval)  # type: ignore[type-var]


def run_with_retry(settings: S, attempt: Callable[[S], R]) -> R:
    """attempt(settings); on an out-of-memory error, again with half the batch (and twice the
    update interval) until a batch of one fails too."""
    while True:
        try:
            return attempt(settings)
        except torch.OutOfMemoryError:
            batch = settings.batch_size or REFERENCE_BATCH
            if batch <= 1:
                raise
        # Outside the except block: the traceback (and the tensors its frames hold) is gone.
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = max(1, batch // 2)
        log.warning("out of memory with batch size %d; retrying with %d", batch, half)
        settings = replace(  # type: ignore[type-var]
            settings, batch_size=half, update_interval=settings.update_interval * (batch // half)
        )
