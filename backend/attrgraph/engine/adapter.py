"""Where each model family keeps the parts attribution needs.

Attribution touches five places in a decoder-only transformer: the residual stream entering the
first layer (token embeddings, position embeddings and any embedding scale already applied), each
layer's pre-MLP norm (its input is `resid_mid`, its output is the transcoder input), each layer's
MLP write site (the tensor added back into the residual stream), the final norm and the
unembedding. Families differ only in attribute names, so one adapter finds them by name and the
rest of the engine never branches on the family.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


class UnsupportedModelError(ValueError):
    """The model's layout is not one attrgraph knows how to linearise."""


# Order matters: Gemma has both `post_attention_layernorm` (on the attention output) and
# `pre_feedforward_layernorm` (the MLP's input norm), so the latter must win.
_PRE_MLP_NORM_NAMES = ("pre_feedforward_layernorm", "post_attention_layernorm", "ln_2")
# Gemma normalises the MLP output before adding it to the residual stream: that norm's output is
# the write site (TransformerLens' hook_mlp_out).
_POST_MLP_NORM_NAMES = ("post_feedforward_layernorm",)


@dataclass(frozen=True)
class ModelAdapter:
    """Handles on one loaded model's modules."""

    model: nn.Module
    layers: nn.ModuleList
    pre_mlp_norms: list[nn.Module]
    mlp_write_sites: list[nn.Module]
    final_norm: nn.Module
    unembed_weight: Tensor  # (vocab, d_model)
    unembed_bias: Tensor | None  # (vocab,)
    final_logit_softcap: float | None
    position_embedding: nn.Module | None = None  # absolute position embeddings (GPT-2), if any

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def d_model(self) -> int:
        return int(self.unembed_weight.shape[1])

    @classmethod
    def for_model(cls, model: nn.Module) -> ModelAdapter:
        body = _find_body(model)
        layers = getattr(body, "layers", None) or getattr(body, "h", None)
        if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
            raise UnsupportedModelError(f"{type(model).__name__}: no decoder layer list found")
        final_norm = getattr(body, "norm", None) or getattr(body, "ln_f", None)
        if not isinstance(final_norm, nn.Module):
            raise UnsupportedModelError(f"{type(model).__name__}: no final norm found")
        lm_head = getattr(model, "lm_head", None)
        if not isinstance(lm_head, nn.Linear):
            raise UnsupportedModelError(f"{type(model).__name__}: no linear lm_head found")
        config = getattr(model, "config", None)
        text_config = getattr(config, "text_config", None) or config
        softcap = getattr(text_config, "final_logit_softcapping", None)
        return cls(
            model=model,
            layers=layers,
            pre_mlp_norms=[_child(layer, _PRE_MLP_NORM_NAMES, "pre-MLP norm") for layer in layers],
            mlp_write_sites=[_mlp_write_site(layer) for layer in layers],
            final_norm=final_norm,
            unembed_weight=lm_head.weight,
            unembed_bias=lm_head.bias,
            final_logit_softcap=float(softcap) if softcap else None,
            position_embedding=getattr(body, "wpe", None),
        )

    def norm_modules(self) -> list[nn.Module]:
        """Every normalisation module in the model (their denominators get frozen)."""
        return [m for m in self.model.modules() if _is_norm(m)]

    def logits_from_hidden(self, hidden: Tensor) -> Tensor:
        """Logits the model computes from final-norm outputs (softcap included)."""
        logits = torch.nn.functional.linear(hidden, self.unembed_weight, self.unembed_bias)
        if self.final_logit_softcap is not None:
            logits = torch.tanh(logits / self.final_logit_softcap) * self.final_logit_softcap
        return logits


def _find_body(model: nn.Module) -> nn.Module:
    for name in ("model", "transformer"):
        body = getattr(model, name, None)
        if isinstance(body, nn.Module):
            # Multimodal wrappers (Gemma 3) nest the text model one level deeper.
            inner = getattr(body, "language_model", None)
            return inner if isinstance(inner, nn.Module) else body
    raise UnsupportedModelError(f"{type(model).__name__}: no `model` or `transformer` body found")


def _child(layer: nn.Module, names: tuple[str, ...], what: str) -> nn.Module:
    for name in names:
        module = getattr(layer, name, None)
        if isinstance(module, nn.Module):
            return module
    raise UnsupportedModelError(f"{type(layer).__name__}: no {what} (looked for {', '.join(names)})")


def _mlp_write_site(layer: nn.Module) -> nn.Module:
    for name in _POST_MLP_NORM_NAMES:
        module = getattr(layer, name, None)
        if isinstance(module, nn.Module):
            return module
    return _child(layer, ("mlp",), "MLP")


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.LayerNorm) or type(module).__name__.endswith("RMSNorm")
