"""Transcoders: sparse, interpretable stand-ins for a model's MLPs.

One class serves per-layer transcoders (PLT) and cross-layer transcoders (CLT). A PLT's layer-l
features write only into layer l's MLP output; a CLT's layer-l features write into the MLP outputs
of layers l..n_layers-1. Everything downstream (reconstruction, attribution) only asks a
`TranscoderSet` for encoder rows, decoder rows per output layer, and activations, so it never has
to know which kind it holds.

Layers load through a `LayerLoader` callable, so a set can be lazy (load a layer when first needed,
keep at most `max_cached_layers`) for sets too big to hold in memory at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

import torch
from torch import Tensor

from .global_topk import global_topk


class InputSite(StrEnum):
    """Where a transcoder reads the residual stream."""

    # TransformerLens' `ln2.hook_normalized`: normalised but before the norm's gain and bias (TL folds
    # those into the MLP), as circuit-tracer and GemmaScope read it.
    NORMALIZED = "normalized"
    MLP_IN = "mlp_in"  # the pre-MLP norm's output, gain and bias applied: TL `mlp.hook_in`
    RESID_MID = "resid_mid"  # the residual stream before the pre-MLP norm: TL `hook_resid_mid`


class Activation(StrEnum):
    RELU = "relu"
    JUMPRELU = "jumprelu"
    TOPK = "topk"  # the k largest pre-activations of each layer, kept as they are (circuit-tracer's TopK)
    # The n_layers * k largest relu(pre) * score_scale over all layers of one position (see global_topk).
    GLOBAL_TOPK = "global_topk"


@dataclass(frozen=True)
class TranscoderLayer:
    """Parameters of the features that read at one layer.

    W_dec is (d_transcoder, n_out, d_model): n_out is 1 for a per-layer transcoder and
    n_layers - layer for a cross-layer one (output o writes into layer `layer + o`).
    b_dec is the decoder bias of the MLP output *at this layer* (for a CLT, the bias of the
    reconstruction of layer `layer`, however many sources write there).
    """

    W_enc: Tensor  # (d_transcoder, d_model)
    b_enc: Tensor  # (d_transcoder,)
    W_dec: Tensor  # (d_transcoder, n_out, d_model)
    b_dec: Tensor  # (d_model,)
    threshold: Tensor | None = None  # (d_transcoder,) JumpReLU thresholds
    W_skip: Tensor | None = None  # (d_model, d_model): skip(x) = x @ W_skip.T
    score_scale: Tensor | None = None  # (d_transcoder,) global TopK ranking weight (decoder norm)

    def to(self, device: torch.device | str, dtype: torch.dtype) -> TranscoderLayer:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device=device, dtype=dtype)

        return replace(
            self,
            W_enc=self.W_enc.to(device=device, dtype=dtype),
            b_enc=self.b_enc.to(device=device, dtype=dtype),
            W_dec=self.W_dec.to(device=device, dtype=dtype),
            b_dec=self.b_dec.to(device=device, dtype=dtype),
            threshold=move(self.threshold),
            W_skip=move(self.W_skip),
            score_scale=move(self.score_scale),
        )


LayerLoader = Callable[[int], TranscoderLayer]


class TranscoderSet:
    """A full set of transcoders, one reading site per model layer."""

    def __init__(
        self,
        loader: LayerLoader | list[TranscoderLayer],
        *,
        n_layers: int,
        cross_layer: bool,
        activation: Activation = Activation.RELU,
        topk: int | None = None,
        input_site: InputSite = InputSite.MLP_IN,
        name: str = "transcoders",
        revision: str = "",
        lazy: bool = False,
        max_cached_layers: int = 4,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if activation in (Activation.TOPK, Activation.GLOBAL_TOPK) and (topk is None or topk <= 0):
            raise ValueError("a TopK transcoder needs a positive k")
        self.n_layers = n_layers
        self.cross_layer = cross_layer
        self.activation = activation
        self.topk = topk
        self.input_site = input_site
        self.name = name
        self.revision = revision
        self.device = torch.device(device)
        self.dtype = dtype
        self._lazy = lazy
        self._max_cached = max_cached_layers
        self._cache: OrderedDict[int, TranscoderLayer] = OrderedDict()
        if isinstance(loader, list):
            if len(loader) != n_layers:
                raise ValueError(f"expected {n_layers} transcoder layers, got {len(loader)}")
            layers = loader
            self._loader: LayerLoader = lambda i: layers[i]
        else:
            self._loader = loader
        if not lazy:
            for layer in range(n_layers):
                self.layer(layer)
        first = self.layer(0)
        self.d_transcoder = int(first.W_enc.shape[0])
        self.d_model = int(first.W_enc.shape[1])
        self._check(first, 0)

    # -- parameters -------------------------------------------------------------------------

    def layer(self, layer: int) -> TranscoderLayer:
        """The parameters of `layer`, on this set's device and dtype (loaded on first use)."""
        if not 0 <= layer < self.n_layers:
            raise IndexError(f"layer {layer} out of range for {self.n_layers} layers")
        cached = self._cache.get(layer)
        if cached is not None:
            self._cache.move_to_end(layer)
            return cached
        params = self._loader(layer).to(self.device, self.dtype)
        self._cache[layer] = params
        if self._lazy:
            while len(self._cache) > self._max_cached:
                self._cache.popitem(last=False)
        return params

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TranscoderSet:
        self.device = torch.device(device)
        self.dtype = dtype or self.dtype
        self._cache = OrderedDict((i, p.to(self.device, self.dtype)) for i, p in self._cache.items())
        return self

    def n_outputs(self, layer: int) -> int:
        """How many MLP outputs a feature reading at `layer` writes into."""
        return self.n_layers - layer if self.cross_layer else 1

    def _check(self, params: TranscoderLayer, layer: int) -> None:
        d_tc, d_model = params.W_enc.shape
        expected = (d_tc, self.n_outputs(layer), d_model)
        if tuple(params.W_dec.shape) != expected:
            raise ValueError(
                f"layer {layer}: W_dec has shape {tuple(params.W_dec.shape)}, expected {expected}"
            )
        if self.activation is Activation.JUMPRELU and params.threshold is None:
            raise ValueError(f"layer {layer}: JumpReLU transcoder without thresholds")
        scale = params.score_scale
        if self.activation is Activation.GLOBAL_TOPK and (scale is None or tuple(scale.shape) != (d_tc,)):
            raise ValueError(f"layer {layer}: a global TopK transcoder needs a ({d_tc},) score_scale")

    @property
    def selects_across_layers(self) -> bool:
        """Whether a layer's activations depend on other layers' pre-activations (global TopK)."""
        return self.activation is Activation.GLOBAL_TOPK

    # -- computation ------------------------------------------------------------------------

    def pre_activations(self, layer: int, x: Tensor) -> Tensor:
        """Encoder pre-activations: (..., d_model) -> (..., d_transcoder)."""
        p = self.layer(layer)
        return torch.nn.functional.linear(x.to(p.W_enc.dtype), p.W_enc, p.b_enc)

    def activate(self, layer: int, pre: Tensor) -> Tensor:
        if self.activation is Activation.RELU:
            return torch.relu(pre)
        if self.activation is Activation.JUMPRELU:
            threshold = self.layer(layer).threshold
            assert threshold is not None
            return pre * (pre > threshold)
        if self.activation is Activation.GLOBAL_TOPK:
            raise ValueError("a global TopK set selects over all layers at once: use encode_all")
        assert self.topk is not None
        # No ReLU, as circuit-tracer's TopK: the published TopK sets were trained that way.
        indices = pre.topk(min(self.topk, pre.shape[-1]), dim=-1).indices
        return torch.zeros_like(pre).scatter(-1, indices, pre.gather(-1, indices))

    def encode(self, layer: int, x: Tensor) -> Tensor:
        """Feature activations at `layer`: (..., d_model) -> (..., d_transcoder)."""
        return self.activate(layer, self.pre_activations(layer, x))

    def encode_all(self, inputs: list[Tensor]) -> list[Tensor]:
        """Every layer's activations from every layer's input: inputs[l] (pos, d_model)."""
        if not self.selects_across_layers:
            return [self.encode(layer, x) for layer, x in enumerate(inputs)]
        pres = [self.pre_activations(layer, x) for layer, x in enumerate(inputs)]
        return global_topk(pres, [self._score_scale(layer) for layer in range(self.n_layers)], self._kept())

    def activate_selected(self, layer: int, pre: Tensor, selected: Tensor) -> Tensor:
        """Activations with the selection held fixed: `selected` (pos, d_transcoder) bool.

        A global TopK selection needs every layer's input, which a layer-by-layer pass does not have
        yet; holding a selection made on the same inputs recomputes the same values.
        """
        if not self.selects_across_layers:
            return self.activate(layer, pre) * selected
        return torch.relu(pre) * selected

    def _score_scale(self, layer: int) -> Tensor:
        scale = self.layer(layer).score_scale
        assert scale is not None
        return scale

    def _kept(self) -> int:
        assert self.topk is not None
        return self.n_layers * self.topk

    def decoder_vectors(self, layer: int, features: Tensor) -> Tensor:
        """Decoder rows of `features` reading at `layer`: (n,) -> (n, n_out, d_model)."""
        return self.layer(layer).W_dec[features]

    def encoder_vectors(self, layer: int, features: Tensor) -> Tensor:
        """Encoder rows of `features` at `layer`: (n,) -> (n, d_model)."""
        return self.layer(layer).W_enc[features]

    def skip(self, layer: int, x: Tensor) -> Tensor | None:
        """The linear skip connection's output at `layer`, or None if the set has none."""
        w_skip = self.layer(layer).W_skip
        if w_skip is None:
            return None
        return x.to(w_skip.dtype) @ w_skip.T

    def reconstruct(self, activations: list[Tensor], inputs: list[Tensor]) -> list[Tensor]:
        """MLP outputs predicted from every layer's activations.

        activations[l]: (pos, d_transcoder); inputs[l]: (pos, d_model) the transcoder input at l.
        Returns one (pos, d_model) reconstruction per layer (skip connection included).
        """
        out: list[Tensor] = []
        for target in range(self.n_layers):
            params = self.layer(target)
            recon = params.b_dec.expand(activations[target].shape[0], -1).clone()
            sources = range(target + 1) if self.cross_layer else [target]
            for source in sources:
                w_dec = self.layer(source).W_dec[:, target - source]  # (d_transcoder, d_model)
                recon = recon + activations[source].to(w_dec.dtype) @ w_dec
            skip = self.skip(target, inputs[target])
            out.append(recon if skip is None else recon + skip)
        return out
