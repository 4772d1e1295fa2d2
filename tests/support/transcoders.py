"""Tiny models of every family with random transcoders of every kind (per-layer, skip, cross-layer)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from attrgraph.engine.transcoders.base import Activation, InputSite, TranscoderLayer, TranscoderSet
from tests.support.models import make_tiny_model

TRANSCODER_KINDS = ("relu", "jumprelu_skip", "clt_topk")


@dataclass
class TinyLM:
    model: Any
    tokenizer: Any
    model_id: str
    revision: str = ""


def random_transcoders(
    kind: str,
    *,
    n_layers: int,
    d_model: int,
    d_transcoder: int = 96,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> TranscoderSet:
    """Random transcoders whose features are reasonably often active (about a quarter of them)."""
    g = torch.Generator().manual_seed(seed)
    cross_layer = kind.startswith("clt")
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
                if kind.startswith("jumprelu")
                else None,
                W_skip=torch.randn(d_model, d_model, generator=g) * 0.02 if kind.endswith("skip") else None,
            )
        )
    activation = {"relu": Activation.RELU, "jumprelu_skip": Activation.JUMPRELU, "clt_topk": Activation.TOPK}[
        kind
    ]
    # Each kind reads at a different site, so the test matrix covers every site on every family.
    site = {"relu": InputSite.NORMALIZED, "jumprelu_skip": InputSite.MLP_IN, "clt_topk": InputSite.RESID_MID}[
        kind
    ]
    return TranscoderSet(
        layers,
        n_layers=n_layers,
        cross_layer=cross_layer,
        activation=activation,
        topk=24 if activation is Activation.TOPK else None,
        input_site=site,
        name=f"random-{kind}",
        dtype=dtype,
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
