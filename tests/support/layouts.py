"""Tiny random transcoder sets written in the exact layout of each published family.

Key names, orientations and file names are those of the real releases (docs/engine.md, "Transcoder
layouts"); each writer returns the raw tensors it wrote so tests can compute references by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file
from torch import Tensor

Raw = list[dict[str, Tensor]]


def _randn(g: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    return torch.randn(*shape, generator=g) * scale


def write_gemma_scope2(
    directory: Path,
    *,
    n_layers: int,
    d_model: int,
    d_sae: int = 64,
    cross_layer: bool = False,
    affine: bool = True,
    seed: int = 0,
) -> Raw:
    """Google's tree: `transcoder_all/layer_{i}_width_.../params.safetensors` (per-layer) or
    `clt/width_..._affine/params_layer_{i}.safetensors` (cross-layer), lower-case SAE names."""
    g = torch.Generator().manual_seed(seed)
    raw: Raw = []
    for layer in range(n_layers):
        w_dec_shape = (d_sae, n_layers, d_model) if cross_layer else (d_sae, d_model)
        t = {
            "w_enc": _randn(g, d_model, d_sae, scale=d_model**-0.5),  # (d_in, d_sae)
            "b_enc": _randn(g, d_sae, scale=0.1) - 0.2,
            "threshold": torch.rand(d_sae, generator=g) * 0.2,
            "w_dec": _randn(g, *w_dec_shape, scale=0.05),
            "b_dec": _randn(g, d_model, scale=0.01),
        }
        if affine:
            t["affine_skip_connection"] = _randn(g, d_model, d_model, scale=0.02)
        if cross_layer:
            path = directory / f"params_layer_{layer}.safetensors"
        else:
            path = directory / f"layer_{layer}_width_16k_l0_small_affine" / "params.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(t, str(path))
        raw.append(t)
    return raw


def write_global_topk(
    directory: Path, *, n_layers: int, d_model: int, d_sae: int = 64, k: int = 6, seed: int = 0
) -> Raw:
    """ByteDance-Seed/Cross-Layer-TopK-CLT: W_enc_{l} (no bias), W_dec_{l} + W_dec_norm_{l},
    W_dec_norm.safetensors (n_layers, d_sae), factors.safetensors (already folded), config.json."""
    g = torch.Generator().manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    raw: Raw = []
    for layer in range(n_layers):
        w_enc = _randn(g, d_sae, d_model, scale=d_model**-0.5)
        w_dec = _randn(g, d_sae, n_layers - layer, d_model, scale=0.05)
        norm = w_dec.flatten(1).norm(dim=1)  # (d_sae,)
        save_file({f"W_enc_{layer}": w_enc}, str(directory / f"W_enc_{layer}.safetensors"))
        save_file(
            {f"W_dec_{layer}": w_dec, f"W_dec_norm_{layer}": norm},
            str(directory / f"W_dec_{layer}.safetensors"),
        )
        raw.append({"W_enc": w_enc, "W_dec": w_dec, "W_dec_norm": norm})
    save_file(
        {"W_dec_norm": torch.stack([r["W_dec_norm"] for r in raw])}, str(directory / "W_dec_norm.safetensors")
    )
    # Mean activation norms used in training; the weights already include them (not to be applied).
    save_file(
        {"resid_mid_l2": torch.full((n_layers,), 7.0), "mlp_out_l2": torch.full((n_layers,), 3.0)},
        str(directory / "factors.safetensors"),
    )
    config = {"d_feature": d_sae, "k": k, "base_model": "tiny", "d_model": d_model, "n_layers": n_layers}
    (directory / "config.json").write_text(json.dumps(config))
    return raw


def write_topk_plt(directory: Path, *, n_layers: int, d_model: int, d_sae: int = 64, seed: int = 0) -> Raw:
    """facebook/crv-8b-instruct-transcoders: circuit-tracer's layer_{i}.safetensors, a config.yaml
    saying `activation: topk` without k (circuit-tracer hard-codes 128 for this repository)."""
    g = torch.Generator().manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    raw: Raw = []
    for layer in range(n_layers):
        t = {
            "W_enc": _randn(g, d_sae, d_model, scale=d_model**-0.5),
            "W_dec": _randn(g, d_sae, d_model, scale=0.05),
            "b_enc": _randn(g, d_sae, scale=0.1),
            "b_dec": _randn(g, d_model, scale=0.01),
        }
        save_file(t, str(directory / f"layer_{layer}.safetensors"))
        raw.append(t)
    config = {
        "model_name": "meta-llama/Llama-3.1-8B-Instruct",
        "model_kind": "transcoder_set",
        "feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "mlp.hook_out",
        "activation": "topk",
    }
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return raw
