"""Seeing inside frozen attention: each layer's query, key, value, pattern and output.

The linearised pass runs attention through `linearize`'s registered function. Explaining attention
needs the tensors that function sees (query and key after rotary embeddings and any QK-norm, exactly
as the model built them, whatever the family), still on the gradient graph. So a second registered
function wraps the frozen one and records its arguments and result; a pre-hook on the model switches
to it once `linearized()` has switched to the frozen one, and `linearized()` switches back on exit.
Nothing here changes what the model computes.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

from attrgraph.engine.adapter import ModelAdapter
from attrgraph.engine.linearize import ATTENTION_NAME

CAPTURE_NAME = "attrgraph_frozen_capture"


@dataclass
class AttentionRecord:
    """One layer's attention call in one pass (batch of one)."""

    query: Tensor  # (1, n_heads, pos, d_head) after rotary / QK-norm, on the gradient graph
    key: Tensor  # (1, n_kv_heads, pos, d_head)
    value: Tensor  # (1, n_kv_heads, pos, d_head)
    pattern: Tensor  # (1, n_heads, q_pos, k_pos) frozen
    output: Tensor  # (1, pos, n_heads, d_head) what the module feeds its output projection
    scaling: float  # multiplies q.k before any soft-capping
    softcap: float | None  # Gemma 2: score -> softcap * tanh(score / softcap)

    @property
    def groups(self) -> int:
        """Query heads per key/value head (GQA)."""
        return int(self.query.shape[1] // self.key.shape[1])


_records: contextvars.ContextVar[dict[int, AttentionRecord] | None] = contextvars.ContextVar(
    "attrgraph_attention_records", default=None
)
_layer_of: contextvars.ContextVar[dict[int, int] | None] = contextvars.ContextVar(
    "attrgraph_attention_layers", default=None
)


def _capturing_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    **kwargs: Any,
) -> tuple[Tensor, Tensor]:
    frozen = AttentionInterface()[ATTENTION_NAME]
    output, pattern = frozen(module, query, key, value, attention_mask, **kwargs)
    records, layers = _records.get(), _layer_of.get()
    if records is not None and layers is not None and id(module) in layers:
        scaling = kwargs.get("scaling")
        softcap = kwargs.get("softcap")
        records[layers[id(module)]] = AttentionRecord(
            query=query,
            key=key,
            value=value,
            pattern=pattern,
            output=output,
            scaling=float(scaling) if scaling is not None else float(query.shape[-1]) ** -0.5,
            softcap=float(softcap) if softcap else None,
        )
    return output, pattern


AttentionInterface.register(CAPTURE_NAME, _capturing_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(CAPTURE_NAME, eager_mask)


def _switch(model: nn.Module, old: str, new: str) -> None:
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and getattr(config, "_attn_implementation", None) == old:
            config._attn_implementation = new


@contextmanager
def recording_attention(adapter: ModelAdapter) -> Iterator[dict[int, AttentionRecord]]:
    """Record every layer's attention (layer -> record) in linearised passes run inside this block."""
    records: dict[int, AttentionRecord] = {}
    layers = {id(m): layer for layer, block in enumerate(adapter.layers) for m in block.modules()}
    model = adapter.model

    def before(module: nn.Module, args: Any) -> None:
        _switch(model, ATTENTION_NAME, CAPTURE_NAME)  # only inside linearized(): else a no-op

    def after(module: nn.Module, args: Any, output: Any) -> None:
        _switch(model, CAPTURE_NAME, ATTENTION_NAME)

    tokens = (_records.set(records), _layer_of.set(layers))
    handles = [model.register_forward_pre_hook(before), model.register_forward_hook(after)]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()
        _switch(model, CAPTURE_NAME, ATTENTION_NAME)
        _layer_of.reset(tokens[1])
        _records.reset(tokens[0])
