"""Published layouts that file names alone do not describe (see docs/engine.md, "Transcoder layouts").

- Gemma Scope 2 (`gemma_scope2`): per-layer files in Google's tree `layer_{i}_width_.../params.safetensors`,
  cross-layer files `params_layer_{i}.safetensors`, or either listed under `transcoders:`.
- Global TopK cross-layer sets (ByteDance-Seed/Cross-Layer-TopK-CLT): the circuit-tracer file pair per
  layer, a config.json (not .yaml) with `k`, `W_dec_norm.safetensors` (n_layers, d_sae) for scoring.
- GemmaScope (1)'s `layer_{i}/width_.../average_l0_{n}/params.npz` tree.
- TopK sets whose k is in neither config nor files (facebook/crv-8b-instruct-transcoders: circuit-tracer
  hard-codes k = 128 for it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from . import gemma_scope2
from .layer_files import TranscoderLoadError, read_names

SCORE_FILE = "W_dec_norm.safetensors"
GLOBAL_TOPK_INPUT_HOOK = "hook_resid_mid"  # the input of post_attention_layernorm, per its model card
KNOWN_TOPK = {"facebook/crv-8b-instruct-transcoders": 128}
_LAYER_DIR = re.compile(r"^layer_(\d+)(_.*)?$")


def json_config(directory: Path) -> dict[str, Any]:
    """config.json's keys, for sets that ship it instead of config.yaml ({} if absent)."""
    path = directory / "config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except ValueError as e:
        raise TranscoderLoadError(f"{path}: invalid JSON ({' '.join(str(e).split())})") from e
    if not isinstance(config, dict):
        raise TranscoderLoadError(f"{path}: expected an object at the top level")
    return config


def is_global_topk(directory: Path, dec_files: list[Path]) -> bool:
    """A cross-layer set that ships decoder norms for scoring."""
    return (directory / SCORE_FILE).is_file() or bool(
        dec_files and "W_dec_norm" in read_names(dec_files[0], 0)
    )


def score_file(directory: Path) -> Path | None:
    path = directory / SCORE_FILE
    return path if path.is_file() else None


def known_topk(name: str) -> int | None:
    """k of a published TopK set that does not state it, by hub repository."""
    return next((k for repo, k in KNOWN_TOPK.items() if name == repo or name.startswith(repo + "/")), None)


def gemma_scope2_clt(files: list[Path], where: Path) -> list[Path] | None:
    """The layer files of a Gemma Scope 2 cross-layer set, or None if `files` are not one.

    The set's size is w_dec's layer axis: circuit-tracer's configs for these sets list one file more
    than the model has layers (its loader reads only the first n_layers), so extra entries are unused.
    """
    if not gemma_scope2.is_gemma_scope2(read_names(files[0])):
        return None
    n_layers = gemma_scope2.clt_layers(files[0])
    if n_layers is None:
        return None
    if len(files) < n_layers:
        raise TranscoderLoadError(
            f"{where}: w_dec covers {n_layers} layers but only {len(files)} files given"
        )
    return files[:n_layers]


def gemma_scope2_tree(directory: Path) -> list[Path] | None:
    """Google's per-layer tree: exactly one params.safetensors under each `layer_{i}_...` folder."""
    dirs: dict[int, list[Path]] = {}
    for p in directory.iterdir():
        if p.is_dir() and (m := _LAYER_DIR.match(p.name)):
            dirs.setdefault(int(m.group(1)), []).extend(p.rglob("params.safetensors"))
    if not any(dirs.values()):
        return None
    files: list[Path] = []
    for i in range(max(dirs) + 1):
        files.append(_exactly_one(sorted(dirs.get(i, [])), directory, f"params.safetensors for layer {i}"))
    return files


def _exactly_one(found: list[Path], where: Path, what: str) -> Path:
    """The one file a layer's directory tree holds (TranscoderLoadError for none or several)."""
    if len(found) != 1:
        raise TranscoderLoadError(
            f"{where}: found {len(found)} {what}, need exactly one"
            " (list the chosen files under `transcoders:` in config.yaml)"
        )
    return found[0]


def gemmascope_npz_tree(directory: Path) -> list[Path]:
    """GemmaScope (1)'s tree: exactly one .npz anywhere under each `layer_{i}/`."""
    dirs = {int(p.name[6:]): p for p in directory.glob("layer_*") if p.is_dir() and p.name[6:].isdigit()}
    if not dirs:
        raise TranscoderLoadError(
            f"{directory}: no transcoders found (expected config.yaml, layer_{{i}}.safetensors,"
            " layer_{i}.npz, W_enc_{i}.safetensors, params_layer_{i}.safetensors or"
            " layer_{i}[_...]/.../{params.safetensors | *.npz})"
        )
    files: list[Path] = []
    for i in range(max(dirs) + 1):
        if i not in dirs:
            raise TranscoderLoadError(f"{directory}: missing layer_{i}/")
        files.append(_exactly_one(sorted(dirs[i].rglob("*.npz")), dirs[i], ".npz files"))
    return files


def default_input_hook(files: list[Path], global_topk: bool) -> str:
    """The input hook of a set without config.yaml, by what its files are."""
    if global_topk:
        return GLOBAL_TOPK_INPUT_HOOK
    if files[0].suffix == ".safetensors" and gemma_scope2.is_gemma_scope2(read_names(files[0])):
        return gemma_scope2.DEFAULT_INPUT_HOOK
    return "ln2.hook_normalized"  # GemmaScope (1): normalised, before the norm's gain
