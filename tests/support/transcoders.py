"""Tiny models of every family with random transcoders of every kind (per-layer, skip, cross-layer)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from attrgraph.engine.transcoders.base import Activation, InputSite, TranscoderLayer, TranscoderSet
from tests.support.models import make_tiny_model

# Each kind reads at a different site, so the engine's test matrix covers every site on every family.
KINDS: dict[str, tuple[Activation, bool, bool, InputSite]] = {
    # kind: (activation, skip connection, cross-layer, input site)
    "relu": (Activation.RELU, False, False, InputSite.NORMALIZED),
    "jumprelu_skip": (Activation.JUMPRELU, True, False, InputSite.MLP_IN),
    "clt_topk": (Activation.TOPK, False, True, InputSite.RESID_MID),
}
TRANSCODER_KINDS = tuple(KINDS)


@dataclass
class TinyLM:
    model: Any
    tokenizer: Any
    model_id: str
    revision: str = ""


def random_transcoders(
    kind: str = "relu",
    *,
    n_layers: int,
    d_model: int,
    d_transcoder: int = 96,
    activation: Activation | None = None,
    skip: bool | None = None,
    cross_layer: bool | None = None,
    input_site: InputSite | None = None,
    topk: int | None = None,
    name: str | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> TranscoderSet:
    """Seeded random transcoders whose features are reasonably often active (about a quarter).

    `kind` (one of KINDS) picks activation, skip connection, cross-layer decoders and input site;
    each can be overridden. Top-k sets keep 24 features unless `topk` says otherwise.
    """
    kind_activation, kind_skip, kind_cross_layer, kind_site = KINDS[kind]
    activation = kind_activation if activation is None else activation
    skip = kind_skip if skip is None else skip
    cross_layer = kind_cross_layer if cross_layer is None else cross_layer
    g = torch.Generator().manual_seed(seed)
    layers = []
    for layer in range(n_layers):
        n_out = n_layers - layer if cross_layer else 1
        w_enc = torch.randn(d_transcoder, d_model, generator=g) / d_model**0.5
        layers.append(
            TranscoderLayer(
                W_enc=w_enc,
                b_enc=torch.randn(d_transcoder, generator=g) * 0.1 - 0.3,
                W_dec=torch.randn(d_transcoder, n_out, d_model, generator=g) * 0.05,
                b_dec=torch.randn(d_model, generator=g) * 0.01,
                threshold=torch.rand(d_transcoder, generator=g) * 0.2
                if activation is Activation.JUMPRELU
                else None,
                W_skip=torch.randn(d_model, d_model, generator=g) * 0.02 if skip else None,
            )
        )
    if topk is None and activation is Activation.TOPK:
        topk = 24
    return TranscoderSet(
        layers,
        n_layers=n_layers,
        cross_layer=cross_layer,
        activation=activation,
        topk=topk,
        input_site=kind_site if input_site is None else input_site,
        name=f"random-{kind}" if name is None else name,
        dtype=dtype,
    )


def tiny_plt_transcoders(n_layers: int = 2, d_model: int = 64, d_transcoder: int = 48) -> TranscoderSet:
    """Per-layer ReLU transcoders for `make_tiny_model`'s default size (the worker and browser tests)."""
    return random_transcoders(
        n_layers=n_layers,
        d_model=d_model,
        d_transcoder=d_transcoder,
        input_site=InputSite.MLP_IN,
        name="tiny-random-plt",
    )


_MODEL_CACHE: dict[tuple[str, torch.dtype], TinyLM] = {}


def tiny_lm(family: str, tmp_root: Path, dtype: torch.dtype = torch.float32) -> TinyLM:
    key = (family, dtype)
    if key not in _MODEL_CACHE:
        directory = make_tiny_model(family, tmp_root / family)
        model = AutoModelForCausalLM.from_pretrained(
            directory, dtype=dtype, attn_implementation="eager"
        ).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        _MODEL_CACHE[key] = TinyLM(model, AutoTokenizer.from_pretrained(directory), f"tiny-{family}")
    return _MODEL_CACHE[key]
