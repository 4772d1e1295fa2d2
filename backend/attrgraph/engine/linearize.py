"""Linearising a transformer around one prompt, through transformers' own extension points.

With attention patterns and normalisation denominators frozen at their values on the prompt, the
map from the sources (token embeddings, transcoder features, error vectors) to any later
pre-activation is affine, so gradients give exact direct effects. Nothing here copies model code:

* attention runs through a function registered in `AttentionInterface` that computes the pattern
  without gradient (GQA, soft-capping and sliding-window masks handled like the eager path);
* every norm module gets a forward hook that recomputes its output with the denominator detached.

A `FrozenState` can also *record* the patterns and denominators of one forward pass and *replay*
them in a later pass. Replaying is how tests check edges against an independent forward pass and how
interventions run "with attention frozen".
"""

from __future__ import annotations

import contextvars
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

from attrgraph.engine.adapter import ModelAdapter, UnsupportedModelError

ATTENTION_NAME = "attrgraph_frozen"


@dataclass
class FrozenState:
    """Attention patterns and norm scales of one pass, keyed by module.

    recording: store what each module computes. replaying: use what was stored instead of
    recomputing it (the pass's inputs may differ from the recorded ones).
    """

    recording: bool = False
    replaying: bool = False
    patterns: dict[int, Tensor] = field(default_factory=dict)
    norm_scales: dict[int, Tensor] = field(default_factory=dict)


_state: contextvars.ContextVar[FrozenState | None] = contextvars.ContextVar("attrgraph_state", default=None)


def _frozen_attention(
    module: nn.Module,
    query: Tensor,  # (batch, heads, q_pos, head_dim)
    key: Tensor,  # (batch, kv_heads, k_pos, head_dim)
    value: Tensor,  # (batch, kv_heads, k_pos, head_dim)
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    softcap: float | None = None,
    **_: Any,
) -> tuple[Tensor, Tensor]:
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    state = _state.get()
    recorded = state.patterns.get(id(module)) if state is not None and state.replaying else None
    if recorded is not None:
        pattern = recorded
    else:
        with torch.no_grad():
            pattern = _attention_pattern(query, key, attention_mask, scaling, softcap)
        if state is not None and state.recording:
            state.patterns[id(module)] = pattern
    out = _apply_pattern(pattern.to(value.dtype), value)  # (batch, heads, q_pos, head_dim)
    return out.transpose(1, 2).contiguous(), pattern


def _apply_pattern(pattern: Tensor, value: Tensor) -> Tensor:
    """pattern @ value; past 2 x head_dim key positions as one mm per (batch, head).

    The same product either way. In batched backward passes (`is_grads_batched`, vmap) matmul's
    batching rule expands the pattern to (targets, heads, q, k) and copies it: quadratic in the
    prompt (gigabytes at a few thousand positions). mm's folds the targets into the columns instead,
    at the price of stacking the heads' gradients (targets x heads x q x head_dim, a slower copy),
    which costs more than the pattern copy only for short prompts.
    """
    if pattern.shape[-1] <= 2 * value.shape[-1]:
        return torch.matmul(pattern, value)
    batch, heads = value.shape[:2]
    patterns = pattern.expand(batch, heads, *pattern.shape[-2:]).flatten(0, 1).unbind(0)
    values = value.flatten(0, 1).unbind(0)
    out = torch.stack([a.mm(v) for a, v in zip(patterns, values, strict=True)])  # (batch * heads, q, d)
    return out.reshape(batch, heads, *out.shape[1:])


def _attention_pattern(
    query: Tensor, key: Tensor, mask: Tensor | None, scaling: float | None, softcap: float | None
) -> Tensor:
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = _upcast(torch.matmul(query, key.transpose(-1, -2))) * scale  # (batch, heads, q, k)
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if mask is None:
        q_len, k_len = scores.shape[-2:]
        causal = torch.ones(q_len, k_len, dtype=torch.bool, device=scores.device).tril(k_len - q_len)
        scores = scores.masked_fill(~causal, float("-inf"))
    elif mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    else:
        scores = scores + mask.to(scores.dtype)
    return torch.softmax(scores, dim=-1)


def _upcast(x: Tensor) -> Tensor:
    """At least float32 (half-precision norms and softmaxes lose too much), never less than x."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


AttentionInterface.register(ATTENTION_NAME, _frozen_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, eager_mask)


# -- norms ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NormSpec:
    centred: bool  # LayerNorm subtracts the mean; RMSNorm does not
    eps: float
    weight: Tensor | None
    weight_offset: float  # Gemma multiplies by (1 + weight)
    bias: Tensor | None


def _norm_spec(module: nn.Module) -> NormSpec:
    eps = float(getattr(module, "variance_epsilon", getattr(module, "eps", 1e-6)))
    weight = getattr(module, "weight", None)
    bias = getattr(module, "bias", None)
    if isinstance(module, nn.LayerNorm):
        return NormSpec(True, eps, weight, 0.0, bias)
    # RMSNorm variants differ in whether they scale by w or by (1 + w): ask the module itself.
    d = weight.shape[-1] if isinstance(weight, Tensor) else 8
    probe = torch.randn(3, d, generator=torch.Generator().manual_seed(0)).to(
        device=weight.device if isinstance(weight, Tensor) else "cpu",
        dtype=weight.dtype if isinstance(weight, Tensor) else torch.float32,
    )
    with torch.no_grad():
        actual = module.forward(probe).float()  # forward(), not __call__: no hooks (we may be inside one)
    for offset in (0.0, 1.0):
        spec = NormSpec(False, eps, weight if isinstance(weight, Tensor) else None, offset, None)
        expected = _apply_norm(spec, probe, None).float()
        if torch.allclose(actual, expected, rtol=2e-2, atol=2e-2):
            return spec
    raise UnsupportedModelError(f"cannot linearise norm module {type(module).__name__}")


def _apply_norm(spec: NormSpec, x: Tensor, scale: Tensor | None) -> Tensor:
    """The norm with its per-position scale 1/denominator given (frozen) or computed here."""
    xf = _upcast(x)
    if spec.centred:
        xf = xf - xf.mean(-1, keepdim=True)
    if scale is None:
        scale = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + spec.eps)
    out = xf * scale
    if spec.weight is not None:
        out = out * (spec.weight.to(out.dtype) + spec.weight_offset)
    if spec.bias is not None:
        out = out + spec.bias.to(out.dtype)
    return out.to(x.dtype)


# Keyed weakly by module: an id() key could be reused by a later model's norm.
_specs: weakref.WeakKeyDictionary[nn.Module, NormSpec] = weakref.WeakKeyDictionary()


def norm_spec(module: nn.Module) -> NormSpec:
    """What `module` computes (centred or not, gain, offset, bias), probed once per module."""
    spec = _specs.get(module)
    if spec is None:
        spec = _specs[module] = _norm_spec(module)
    return spec


def normalized_input(module: nn.Module, x: Tensor) -> Tensor:
    """`module`'s input normalised but before its gain and bias (TL's `hook_normalized`).

    Inside `linearized()` the denominator is the frozen (or replayed) one, so the result stays on the
    linear gradient path; outside it is computed from x.
    """
    spec = norm_spec(module)
    state = _state.get()
    scale = state.norm_scales.get(id(module)) if state is not None and state.replaying else None
    xf = _upcast(x)
    if spec.centred:
        xf = xf - xf.mean(-1, keepdim=True)
    if scale is None:
        scale = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + spec.eps)
        if state is not None:
            scale = scale.detach()
    return (xf * scale).to(x.dtype)


def _norm_hook(spec: NormSpec) -> Any:
    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Tensor:
        x = args[0]
        state = _state.get()
        scale = state.norm_scales.get(id(module)) if state is not None and state.replaying else None
        if scale is None:
            with torch.no_grad():
                xf = _upcast(x)
                if spec.centred:
                    xf = xf - xf.mean(-1, keepdim=True)
                scale = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + spec.eps)
            if state is not None and state.recording:
                state.norm_scales[id(module)] = scale
        return _apply_norm(spec, x, scale)

    return hook


@contextmanager
def linearized(adapter: ModelAdapter, state: FrozenState | None = None) -> Iterator[FrozenState]:
    """Run the model linearised (frozen attention and norms) inside this block."""
    state = state or FrozenState()
    model = adapter.model
    config = getattr(model, "config", None)
    previous = getattr(config, "_attn_implementation", "eager")
    handles: list[RemovableHandle] = []
    token = _state.set(state)
    try:
        _set_attention(model, ATTENTION_NAME)
        for module in adapter.norm_modules():
            handles.append(module.register_forward_hook(_norm_hook(norm_spec(module))))
        yield state
    finally:
        for handle in handles:
            handle.remove()
        _set_attention(model, previous or "eager")
        _state.reset(token)


def _set_attention(model: nn.Module, name: str) -> None:
    # Sub-configs (Gemma 3's text_config) carry their own attribute, so set it on every module's config.
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            config._attn_implementation = name
