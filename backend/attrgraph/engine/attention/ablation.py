"""Head ablation: remove one attention head's contribution and let the model respond.

A head's contribution is its slice of what the attention module feeds its output projection
(`o_proj` / GPT-2's `c_proj`): the pattern-weighted values of that head. Zeroing the slice removes
exactly what the head writes to the residual stream (its share of the projection's bias stays: it
belongs to no head). Everything after it is the model's own computation, attention patterns
included, unless the caller freezes them; so ablating the head a QK attribution explains tests the
attention story the way ablating a feature tests a graph edge.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from attrgraph.engine.adapter import ModelAdapter

_ATTENTION_NAMES = ("self_attn", "attn", "attention")
_OUTPUT_NAMES = ("o_proj", "c_proj", "out_proj", "dense")


class HeadAblationError(ValueError):
    """A head ablation names a layer or head the model does not have."""


@dataclass(frozen=True)
class HeadAblation:
    layer: int
    head: int


def n_heads(model: nn.Module) -> int:
    config: Any = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text_config.num_attention_heads)


def output_projection(adapter: ModelAdapter, layer: int) -> nn.Module:
    """The module whose input is layer `layer`'s heads, concatenated."""
    block = adapter.layers[layer]
    for name in _ATTENTION_NAMES:
        attention = getattr(block, name, None)
        if isinstance(attention, nn.Module):
            for out_name in _OUTPUT_NAMES:
                projection = getattr(attention, out_name, None)
                if isinstance(projection, nn.Module):
                    return projection
    raise HeadAblationError(f"layer {layer}: no attention output projection found")


def check_heads(adapter: ModelAdapter, heads: Sequence[HeadAblation]) -> None:
    count = n_heads(adapter.model)
    for h in heads:
        where = f"head {h.layer}.{h.head}"
        if not 0 <= h.layer < adapter.n_layers:
            raise HeadAblationError(f"{where}: layer out of range (0..{adapter.n_layers - 1})")
        if not 0 <= h.head < count:
            raise HeadAblationError(f"{where}: head out of range (0..{count - 1})")


@contextmanager
def ablated_heads(adapter: ModelAdapter, heads: Sequence[HeadAblation]) -> Iterator[None]:
    """Inside the block, every forward pass of the model runs with `heads` zeroed at all positions."""
    check_heads(adapter, heads)
    count = n_heads(adapter.model)
    by_layer: dict[int, list[int]] = {}
    for h in heads:
        by_layer.setdefault(h.layer, []).append(h.head)
    handles = []

    def zeroing(layer_heads: list[int]) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            x: Tensor = args[0]
            d_head = x.shape[-1] // count
            x = x.clone()
            for head in layer_heads:
                x[..., head * d_head : (head + 1) * d_head] = 0
            return (x, *args[1:])

        return hook

    try:
        for layer, layer_heads in by_layer.items():
            projection = output_projection(adapter, layer)
            handles.append(projection.register_forward_pre_hook(zeroing(layer_heads)))
        yield
    finally:
        for handle in handles:
            handle.remove()
