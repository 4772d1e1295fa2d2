"""Gemma Scope 2 transcoder files (Gemma 3, 270M-27B, PT and IT).

One safetensors file per layer, lower-case names, SAE orientation:
  w_enc (d_in, d_sae), b_enc (d_sae,), threshold (d_sae,), b_dec (d_in,),
  w_dec (d_sae, d_in) for a per-layer transcoder, or (d_sae, n_layers, d_in) for a cross-layer one,
  optional affine_skip_connection (d_in, d_in) applied as x @ affine_skip_connection.
A cross-layer file's w_dec is indexed by *absolute* output layer: layer l's features write into
outputs l..n_layers-1 through w_dec[:, l:, :] (circuit-tracer's load_gemma_scope_2_clt). JumpReLU
keeps pre where pre > threshold. Google's tree: `transcoder_all/layer_{i}_width_{w}_l0_{l0}[_affine]/
params.safetensors` and `clt/width_{w}_l0_{l0}[_affine]/params_layer_{i}.safetensors`.
"""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open
from torch import Tensor

DEFAULT_INPUT_HOOK = "mlp.hook_in"  # the pre-MLP norm's output, as circuit-tracer's Gemma Scope 2 configs
CLT_PATTERN = "params_layer_{}.safetensors"


def is_gemma_scope2(names: set[str]) -> bool:
    return "w_enc" in names and "W_enc" not in names


def clt_layers(path: Path) -> int | None:
    """n_layers of a cross-layer file (w_dec's middle axis), or None for a per-layer file."""
    with safe_open(str(path), framework="pt", device="cpu") as f:
        shape = f.get_slice("w_dec").get_shape()
    return int(shape[1]) if len(shape) == 3 else None


def to_canonical(tensors: dict[str, Tensor], layer: int) -> dict[str, Tensor]:
    """One layer's Gemma Scope 2 tensors under this project's names and orientation."""
    out = {name: t for name, t in tensors.items() if name in ("b_enc", "b_dec", "threshold")}
    if "w_enc" in tensors:
        out["W_enc"] = tensors["w_enc"].T.contiguous()  # (d_sae, d_in)
    w_dec = tensors.get("w_dec")
    if w_dec is not None:
        # contiguous: a view would keep the earlier layers' (unused) outputs in memory
        out["W_dec"] = w_dec[:, layer:].contiguous() if w_dec.ndim == 3 else w_dec
    skip = tensors.get("affine_skip_connection")
    if skip is not None:
        out["W_skip"] = skip.T.contiguous()  # this project's skip(x) = x @ W_skip.T
    return out
