"""Read one layer's transcoder weights from safetensors or GemmaScope .npz files.

Names are normalised on read so validation sees one vocabulary: `activation_function.threshold`
(circuit-tracer) and `threshold` (GemmaScope) become `threshold`, a cross-layer file's `W_enc_3`
becomes `W_enc`, and GemmaScope's transposed `W_enc` (d_model, d_transcoder) is transposed back;
Gemma Scope 2's lower-case files are converted by `gemma_scope2.to_canonical`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from torch import Tensor

from . import gemma_scope2
from .base import Activation, TranscoderLayer


class TranscoderLoadError(ValueError):
    """A transcoder source that cannot be loaded; the message says why in one line."""


_RENAMES = {"activation_function.threshold": "threshold"}


def _canonical(name: str, layer: int | None) -> str:
    if layer is not None and name.endswith(f"_{layer}"):
        name = name[: -len(f"_{layer}")]
    return _RENAMES.get(name, name)


def read_names(path: Path, layer: int | None = None) -> set[str]:
    """Normalised tensor names in a file, without reading the tensors (`layer` for CLT files)."""
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {_canonical(n, None) for n in data.files}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {_canonical(n, layer) for n in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as e:
        raise TranscoderLoadError(f"{path}: cannot read ({' '.join(str(e).split())})") from e


def read_topk(path: Path, layer: int | None = None) -> int:
    """The `k` stored in a weight file."""
    k = read_tensors(path, layer)["k"]
    if k.numel() != 1:
        raise TranscoderLoadError(f"{path}: k must be a scalar, got shape {tuple(k.shape)}")
    return int(k.item())


def read_tensors(path: Path, layer: int | None = None) -> dict[str, Tensor]:
    """Every tensor in a file, with normalised names, on the CPU in the stored dtype."""
    if path.suffix not in (".safetensors", ".npz"):
        raise TranscoderLoadError(f"{path}: unsupported transcoder file type (need .safetensors or .npz)")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                tensors = {_canonical(n, None): torch.from_numpy(np.array(data[n])) for n in data.files}
            if "W_enc" in tensors:
                tensors["W_enc"] = tensors["W_enc"].T.contiguous()
            return tensors
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {_canonical(n, layer): f.get_tensor(n) for n in f.keys()}  # noqa: SIM118
    except Exception as e:
        raise TranscoderLoadError(f"{path}: cannot read ({' '.join(str(e).split())})") from e


class LayerReader:
    """The `LayerLoader` of a loaded set: reads and validates one layer per call.

    Every layer is checked against the first one read (same d_transcoder and d_model), so a
    mismatched file fails with its name rather than as a shape error deep inside attribution.
    """

    def __init__(
        self,
        files: list[Path],
        dec_files: list[Path],
        cross_layer: bool,
        activation: Activation,
        topk: int | None,
        score_file: Path | None = None,
    ) -> None:
        self.files = files
        self.dec_files = dec_files  # empty for one file per layer (Gemma Scope 2 cross-layer sets)
        self.cross_layer = cross_layer
        self.activation = activation
        self.topk = topk
        self.score_file = score_file  # global TopK: W_dec_norm (n_layers, d_transcoder) for scoring
        self._dims: tuple[int, int] | None = None

    def __call__(self, layer: int) -> TranscoderLayer:
        path = self.files[layer]
        if self.dec_files:
            tensors = read_tensors(path, layer)
            tensors.update(read_tensors(self.dec_files[layer], layer))
            where = f"layer {layer} ({path.name}, {self.dec_files[layer].name})"
        else:
            tensors = read_tensors(path)
            where = f"layer {layer} ({path.name})"
        if gemma_scope2.is_gemma_scope2(set(tensors)):
            tensors = gemma_scope2.to_canonical(tensors, layer)
        if self.activation is Activation.GLOBAL_TOPK:
            tensors = self._global_topk_tensors(tensors, layer)
        params = self._validate(tensors, where, len(self.files) - layer if self.cross_layer else 1)
        if self._dims is None:
            self._dims = (int(params.W_enc.shape[0]), int(params.W_enc.shape[1]))
        return params

    def _validate(self, t: dict[str, Tensor], where: str, n_out: int) -> TranscoderLayer:
        for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
            if name not in t:
                raise TranscoderLoadError(f"{where}: missing tensor {name}")
        w_enc, w_dec = t["W_enc"], t["W_dec"]
        if w_enc.ndim != 2:
            raise TranscoderLoadError(f"{where}: W_enc must be 2-D, got shape {tuple(w_enc.shape)}")
        d_tc, d_model = (int(n) for n in w_enc.shape)
        if self._dims is not None and (d_tc, d_model) != self._dims:
            raise TranscoderLoadError(
                f"{where}: W_enc has shape {(d_tc, d_model)}, but layer 0 has {self._dims}"
            )
        if w_dec.ndim == 2 and n_out == 1:
            w_dec = w_dec.unsqueeze(1)
        _expect(where, "W_dec", w_dec, (d_tc, n_out, d_model))
        _expect(where, "b_enc", t["b_enc"], (d_tc,))
        _expect(where, "b_dec", t["b_dec"], (d_model,))
        threshold = t.get("threshold") if self.activation is Activation.JUMPRELU else None
        if self.activation is Activation.JUMPRELU:
            if threshold is None:
                raise TranscoderLoadError(f"{where}: JumpReLU transcoder without a threshold tensor")
            if threshold.numel() != d_tc:
                raise TranscoderLoadError(
                    f"{where}: threshold has {threshold.numel()} values, expected {d_tc}"
                )
            threshold = threshold.reshape(d_tc)
        w_skip = t.get("W_skip")
        if w_skip is not None:
            _expect(where, "W_skip", w_skip, (d_model, d_model))
        k = t.get("k")
        if self.activation is Activation.TOPK and k is not None and int(k.reshape(-1)[0]) != self.topk:
            raise TranscoderLoadError(
                f"{where}: k={int(k.reshape(-1)[0])} differs from the set's k={self.topk}"
            )
        score_scale = t.get("W_dec_norm") if self.activation is Activation.GLOBAL_TOPK else None
        if score_scale is not None:
            _expect(where, "W_dec_norm", score_scale, (d_tc,))
        return TranscoderLayer(
            W_enc=w_enc,
            b_enc=t["b_enc"],
            W_dec=w_dec,
            b_dec=t["b_dec"],
            threshold=threshold,
            W_skip=w_skip,
            score_scale=score_scale,
        )

    def _global_topk_tensors(self, t: dict[str, Tensor], layer: int) -> dict[str, Tensor]:
        """The published global TopK files have no biases (zero) and score with W_dec_norm."""
        if "W_enc" in t and "W_dec" in t:
            d_tc, d_model = t["W_enc"].shape
            t.setdefault("b_enc", t["W_enc"].new_zeros(d_tc))
            t.setdefault("b_dec", t["W_dec"].new_zeros(d_model))
        if self.score_file is not None:
            with safe_open(str(self.score_file), framework="pt", device="cpu") as f:
                t["W_dec_norm"] = f.get_slice("W_dec_norm")[layer]
        elif "W_dec_norm" not in t:
            raise TranscoderLoadError(f"layer {layer}: a global TopK set needs W_dec_norm (its scores)")
        return t


def _expect(where: str, name: str, tensor: Tensor, shape: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != shape:
        raise TranscoderLoadError(f"{where}: {name} has shape {tuple(tensor.shape)}, expected {shape}")
