"""Write a `TranscoderSet` in the circuit-tracer layout, or as GemmaScope .npz files (test fixtures).

The circuit-tracer layout is config.yaml plus `layer_{i}.safetensors` (per-layer) or
`W_enc_{i}.safetensors` / `W_dec_{i}.safetensors` (cross-layer), loadable by `load_transcoders` and
by circuit-tracer's own local loader. Two additions circuit-tracer ignores: `name` in config.yaml,
and a cross-layer skip connection stored as `W_skip_{i}` in `W_enc_{i}.safetensors` with this
project's convention skip(x) = x @ W_skip.T (circuit-tracer's file format has no CLT skip).

Layers are written one at a time, so saving a lazy set never holds more than its layer cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import save_file
from torch import Tensor

from .base import Activation, InputSite, TranscoderSet

_INPUT_HOOK = {
    InputSite.NORMALIZED: "ln2.hook_normalized",
    InputSite.MLP_IN: "mlp.hook_in",
    InputSite.RESID_MID: "hook_resid_mid",
}
_ACTIVATION_NAME = {
    Activation.RELU: "relu",
    Activation.JUMPRELU: "jump_relu",
    Activation.TOPK: "topk",
    Activation.GLOBAL_TOPK: "global_topk",
}
# Files a previous save may have left: overwriting must remove them, or a smaller set saved over a
# larger one would load with the stale extra layers.
_OWNED = ("config.yaml", "layer_*.safetensors", "layer_*.npz", "W_enc_*.safetensors", "W_dec_*.safetensors")


def save_transcoders(
    tc: TranscoderSet, directory: str | Path, *, model_name: str = "", overwrite: bool = False
) -> Path:
    """Write `tc` under `directory` (created if needed) and return the directory."""
    out = _prepare(Path(directory), overwrite)
    for layer in range(tc.n_layers):
        p = tc.layer(layer)
        if tc.cross_layer:
            enc = {f"W_enc_{layer}": p.W_enc, f"b_enc_{layer}": p.b_enc, f"b_dec_{layer}": p.b_dec}
            if p.threshold is not None:
                enc[f"threshold_{layer}"] = p.threshold
            if p.W_skip is not None:
                enc[f"W_skip_{layer}"] = p.W_skip
            _save(enc, out / f"W_enc_{layer}.safetensors")
            dec = {f"W_dec_{layer}": p.W_dec}
            if p.score_scale is not None:  # beside the decoder, as the published global TopK set
                dec[f"W_dec_norm_{layer}"] = p.score_scale
            _save(dec, out / f"W_dec_{layer}.safetensors")
            continue
        tensors = {"W_enc": p.W_enc, "W_dec": p.W_dec[:, 0], "b_enc": p.b_enc, "b_dec": p.b_dec}
        if p.threshold is not None:
            tensors["activation_function.threshold"] = p.threshold
        if p.W_skip is not None:
            tensors["W_skip"] = p.W_skip
        if p.score_scale is not None:
            tensors["W_dec_norm"] = p.score_scale
        _save(tensors, out / f"layer_{layer}.safetensors", topk=tc.topk)
    _write_config(out, tc, model_name)
    return out


def save_gemmascope_npz(
    tc: TranscoderSet,
    directory: str | Path,
    *,
    nested: bool = False,
    with_config: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a per-layer set as GemmaScope-style .npz files (float32, W_enc transposed).

    nested=False writes `layer_{i}.npz`; nested=True writes GemmaScope's own tree
    `layer_{i}/width_{d_transcoder}/average_l0_0/params.npz`. GemmaScope repositories carry no
    config.yaml, so none is written unless `with_config` (needed to keep a resid_mid input site).
    """
    if tc.cross_layer:
        raise ValueError("GemmaScope .npz files hold per-layer transcoders only")
    out = _prepare(Path(directory), overwrite)
    for layer in range(tc.n_layers):
        p = tc.layer(layer)
        # Any: numpy's savez stub types **kwds against its allow_pickle keyword
        arrays: dict[str, Any] = {
            "W_enc": _np(p.W_enc.T),
            "W_dec": _np(p.W_dec[:, 0]),
            "b_enc": _np(p.b_enc),
            "b_dec": _np(p.b_dec),
        }
        if p.threshold is not None:
            arrays["threshold"] = _np(p.threshold)
        if p.W_skip is not None:
            arrays["W_skip"] = _np(p.W_skip)
        if tc.topk is not None:
            arrays["k"] = np.array(tc.topk, dtype=np.int64)
        if nested:
            path = out / f"layer_{layer}" / f"width_{tc.d_transcoder}" / "average_l0_0" / "params.npz"
            path.parent.mkdir(parents=True, exist_ok=True)
        else:
            path = out / f"layer_{layer}.npz"
        with path.open("wb") as f:
            np.savez(f, **arrays)
    if with_config:
        _write_config(out, tc, "")
    return out


def _prepare(out: Path, overwrite: bool) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    existing = sorted({p for pattern in _OWNED for p in out.glob(pattern) if p.is_file()})
    if existing and not overwrite:
        raise FileExistsError(
            f"{out} already holds transcoder files ({existing[0].name}); pass overwrite=True"
        )
    for path in existing:
        path.unlink()
    return out


def _write_config(out: Path, tc: TranscoderSet, model_name: str) -> None:
    config: dict[str, Any] = {
        "model_kind": "cross_layer_transcoder" if tc.cross_layer else "transcoder_set",
        "name": tc.name,
        "model_name": model_name,
        "feature_input_hook": _INPUT_HOOK[tc.input_site],
        "feature_output_hook": "hook_mlp_out",
        "activation": _ACTIVATION_NAME[tc.activation],
    }
    if tc.topk is not None:
        config["k"] = tc.topk
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def _save(tensors: dict[str, Tensor], path: Path, topk: int | None = None) -> None:
    # clone: safetensors refuses tensors that share storage, and views (W_dec[:, 0]) may
    own = {name: t.detach().cpu().contiguous().clone() for name, t in tensors.items()}
    if topk is not None:
        own["k"] = torch.tensor(topk, dtype=torch.int64)
    save_file(own, str(path), metadata={"format": "pt"})


def _np(t: Tensor) -> np.ndarray[Any, np.dtype[np.float32]]:
    return t.detach().cpu().float().contiguous().numpy()
