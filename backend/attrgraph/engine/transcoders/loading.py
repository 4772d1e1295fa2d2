"""Load a `TranscoderSet` from a local directory or from the Hugging Face hub.

`source` is a directory (or its config.yaml), or a hub reference (`org/name[/subfolder]`, optionally
`hf://` and `@revision`). Hub files (and `hf://` files a config lists) are downloaded on first use and
read from the cache after that; offline ($HF_HUB_OFFLINE=1 or `offline=True`) a missing one is a
`TranscoderLoadError` naming it and the `attrgraph pull --transcoders ...` command that fetches it.

A directory holds an optional config.yaml (`model_kind`: transcoder_set | cross_layer_transcoder,
`feature_input_hook`, `feature_output_hook`, optional `name`, `model_name`, `activation`
(relu | jump_relu | topk | global_topk), `k`, `transcoders:`) and the weights:
- per-layer sets: the files listed under `transcoders:` (index = layer; paths relative to the
  directory, absolute, or `hf://org/name/file` URIs), else `layer_{i}.safetensors`, else
  `layer_{i}.npz` (GemmaScope), else exactly one `.npz` anywhere under each `layer_{i}/` (GemmaScope's
  own `layer_{i}/width_16k/average_l0_{n}/params.npz` tree downloaded for one width and L0; with
  several candidates per layer, list the chosen files under `transcoders:`);
- cross-layer sets: `W_enc_{i}.safetensors` (W_enc_i, b_enc_i, b_dec_i, optional threshold_i and
  W_skip_i) and `W_dec_{i}.safetensors` (W_dec_i: (d_transcoder, n_layers - i, d_model));
- Gemma Scope 2 and global TopK sets as `published` describes (their files say which they are).
Without a config.yaml (config.json is read in its place) the kind is inferred from the files and the
hooks default to `hook_mlp_out` and to `ln2.hook_normalized` (GemmaScope's input: normalised, before
the norm's gain), `mlp.hook_in` (Gemma Scope 2) or `hook_resid_mid` (global TopK). Without an
`activation` key, decoder norms for scoring mean global TopK, `k` in the weights means TopK,
thresholds mean JumpReLU, neither means ReLU.

`revision` of the result identifies the content: the commit hash for hub sources, else a short
sha256 over config.yaml and each weight file's name, size, first and last MiB (cheap for
multi-GiB files, and unlike mtimes it survives copying).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from ..downloads import resolve_transcoders, resolve_uri, transcoders_pull
from ..hub import HubError, HubRef, is_offline, parse_hub_ref
from . import gemma_scope2, published
from .base import Activation, InputSite, TranscoderSet
from .layer_files import LayerReader, TranscoderLoadError, read_names, read_topk

__all__ = [
    "LAZY_ABOVE_BYTES",
    "TranscoderLoadError",
    "check_output_hook",
    "input_site_for_hook",
    "load_transcoders",
]

LAZY_ABOVE_BYTES = 2 * 1024**3  # lazy=None loads layers on demand above this total file size
_MIB = 1024**2

_INPUT_HOOKS = {
    "ln2.hook_normalized": InputSite.NORMALIZED,
    "mlp.hook_in": InputSite.MLP_IN,
    "hook_mlp_in": InputSite.MLP_IN,
    "hook_resid_mid": InputSite.RESID_MID,
}
_OUTPUT_HOOKS = frozenset({"hook_mlp_out", "mlp.hook_out"})
_BLOCK_PREFIX = re.compile(r"^blocks\.(\d+|\{\w*\})\.")
_ACTIVATIONS = {
    "relu": Activation.RELU,
    "jumprelu": Activation.JUMPRELU,
    "jump_relu": Activation.JUMPRELU,
    "topk": Activation.TOPK,
    "top_k": Activation.TOPK,
    "global_topk": Activation.GLOBAL_TOPK,
}
_KINDS = ("transcoder_set", "cross_layer_transcoder")


def input_site_for_hook(hook: str) -> InputSite:
    """The InputSite a TransformerLens input hook name (`blocks.{i}.` prefix optional) reads at."""
    site = _INPUT_HOOKS.get(_BLOCK_PREFIX.sub("", hook))
    if site is None:
        known = ", ".join(_INPUT_HOOKS)
        raise TranscoderLoadError(f"unsupported feature_input_hook {hook!r} (supported: {known})")
    return site


def check_output_hook(hook: str) -> None:
    if _BLOCK_PREFIX.sub("", hook) not in _OUTPUT_HOOKS:
        known = ", ".join(sorted(_OUTPUT_HOOKS))
        raise TranscoderLoadError(f"unsupported feature_output_hook {hook!r} (supported: {known})")


@dataclass(frozen=True)
class _Layout:
    cross_layer: bool
    files: list[Path]  # per-layer: one file per layer; cross-layer: the W_enc_{i} files
    dec_files: list[Path]  # cross-layer only: the W_dec_{i} files (none for Gemma Scope 2's one file)
    global_topk: bool = False
    score_file: Path | None = None  # global TopK: W_dec_norm.safetensors


def load_transcoders(
    source: str | Path,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    lazy: bool | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    max_cached_layers: int = 4,
    offline: bool | None = None,
) -> TranscoderSet:
    """Load a transcoder set (see the module docstring for the accepted layouts).

    lazy=True reads each layer from its memory-mapped file when first used and keeps at most
    `max_cached_layers`; None chooses lazy above `LAZY_ABOVE_BYTES` of weights. `offline` (default:
    $HF_HUB_OFFLINE) forbids downloads.
    """
    try:
        hub = _Hub(is_offline(offline), cache_dir, transcoders_pull(str(source)))
        directory, commit, default_name = _locate(source, revision, hub)
        config = _read_config(directory)
        layout = _layout(directory, config, hub)
        default_hook = published.default_input_hook(layout.files, layout.global_topk)
        site = input_site_for_hook(str(config.get("feature_input_hook", default_hook)))
        check_output_hook(str(config.get("feature_output_hook", "hook_mlp_out")))
        activation, topk = _activation(config, layout, default_name)
        files = layout.files + layout.dec_files
        if lazy is None:
            lazy = sum(f.stat().st_size for f in files) > LAZY_ABOVE_BYTES
        config_file = directory / "config.yaml"
        return TranscoderSet(
            LayerReader(
                layout.files, layout.dec_files, layout.cross_layer, activation, topk, layout.score_file
            ),
            n_layers=len(layout.files),
            cross_layer=layout.cross_layer,
            activation=activation,
            topk=topk,
            input_site=site,
            name=str(config.get("name") or config.get("model_name") or default_name),
            revision=commit or _content_hash(config_file if config_file.is_file() else None, files),
            lazy=lazy,
            max_cached_layers=max_cached_layers,
            device=device,
            dtype=dtype,
        )
    except TranscoderLoadError:
        raise
    except (HubError, OSError, ValueError) as e:
        raise TranscoderLoadError(" ".join(str(e).split())) from e


@dataclass(frozen=True)
class _Hub:
    """How hub files are had for one load: whether downloads are allowed, where the cache is."""

    offline: bool
    cache_dir: str | Path | None
    pull: str  # the `attrgraph pull` command a missing file's message names


def _locate(source: str | Path, revision: str | None, hub: _Hub) -> tuple[Path, str, str]:
    """(directory, hub commit or "", default name) of a source."""
    text = str(source)
    path = Path(source).expanduser()
    if not text.startswith("hf://") and path.exists():
        if path.is_file() and path.name == "config.yaml":
            path = path.parent
        if not path.is_dir():
            raise TranscoderLoadError(f"{path}: expected a transcoder directory (or its config.yaml)")
        return path, "", path.resolve().name
    ref = None if path.is_absolute() or text.startswith((".", "~")) else parse_hub_ref(text)
    if ref is None:
        raise TranscoderLoadError(f"{source}: no such directory, and not a hub id (org/name)")
    if revision and ref.revision and revision != ref.revision:
        raise TranscoderLoadError(f"{source}: revision {ref.revision!r} conflicts with revision={revision!r}")
    pinned = HubRef(ref.repo_id, ref.path, ref.revision or revision)
    directory, commit = resolve_transcoders(pinned, offline=hub.offline, cache=hub.cache_dir, source=text)
    return directory, commit, f"{ref.repo_id}/{ref.path.removesuffix('config.yaml')}".rstrip("/")


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.yaml"
    if not path.is_file():
        return published.json_config(directory)
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise TranscoderLoadError(f"{path}: invalid YAML ({' '.join(str(e).split())})") from e
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise TranscoderLoadError(f"{path}: expected a mapping at the top level")
    return config


def _layout(directory: Path, config: dict[str, Any], hub: _Hub) -> _Layout:
    default_kind = "cross_layer_transcoder" if (directory / "W_enc_0.safetensors").exists() else _KINDS[0]
    kind = config.get("model_kind", default_kind)
    if kind not in _KINDS:
        raise TranscoderLoadError(f"{directory}: unknown model_kind {kind!r} (expected one of {_KINDS})")
    listed = config.get("transcoders")
    if listed is not None:
        if not isinstance(listed, list) or not listed:
            raise TranscoderLoadError(f"{directory}/config.yaml: `transcoders:` must be a non-empty list")
        files = [_listed_file(directory, str(e), i, hub) for i, e in enumerate(listed)]
    elif kind == "cross_layer_transcoder" and (directory / "W_enc_0.safetensors").exists():
        enc = _numbered(directory, "W_enc_{}.safetensors")
        dec = [directory / f"W_dec_{i}.safetensors" for i in range(len(enc))]
        for path in dec:
            if not path.is_file():
                raise TranscoderLoadError(f"{directory}: missing {path.name}")
        score = published.score_file(directory)
        return _Layout(True, enc, dec, published.is_global_topk(directory, dec), score)
    elif (directory / gemma_scope2.CLT_PATTERN.format(0)).is_file():
        files = _numbered(directory, gemma_scope2.CLT_PATTERN)
    else:
        files = _per_layer_files(directory)
    clt = published.gemma_scope2_clt(files, directory) if files[0].suffix == ".safetensors" else None
    if clt is not None:
        return _Layout(True, clt, [])
    if kind == "cross_layer_transcoder":
        raise TranscoderLoadError(
            f"{directory}: cross-layer sets need W_enc_{{i}}/W_dec_{{i}} files or Gemma Scope 2 files"
        )
    return _Layout(False, files, [])


def _per_layer_files(directory: Path) -> list[Path]:
    for pattern in ("layer_{}.safetensors", "layer_{}.npz"):
        if (directory / pattern.format(0)).is_file():
            return _numbered(directory, pattern)
    return published.gemma_scope2_tree(directory) or published.gemmascope_npz_tree(directory)


def _numbered(directory: Path, pattern: str) -> list[Path]:
    """`pattern` files numbered 0..n-1, with no gap."""
    regex = re.compile("^" + re.escape(pattern).replace(r"\{\}", r"(\d+)") + "$")
    found = {int(m.group(1)) for p in directory.iterdir() if (m := regex.match(p.name))}
    if not found:
        raise TranscoderLoadError(f"{directory}: no {pattern.format('{i}')} files")
    missing = sorted(set(range(max(found) + 1)) - found)
    if missing:
        raise TranscoderLoadError(f"{directory}: missing {pattern.format(missing[0])}")
    return [directory / pattern.format(i) for i in range(len(found))]


def _listed_file(directory: Path, entry: str, layer: int, hub: _Hub) -> Path:
    if entry.startswith("hf://"):
        return resolve_uri(entry, pull=hub.pull, offline=hub.offline, cache=hub.cache_dir)
    path = Path(entry).expanduser()
    path = path if path.is_absolute() else directory / path
    if not path.is_file():
        raise TranscoderLoadError(f"layer {layer}: transcoder file {entry} not found")
    return path


def _activation(config: dict[str, Any], layout: _Layout, name: str) -> tuple[Activation, int | None]:
    first, layer = layout.files[0], (0 if layout.dec_files else None)
    names = read_names(first, layer)
    configured = config.get("activation")
    if configured is not None:
        activation = _ACTIVATIONS.get(str(configured).lower())
        if activation is None:
            raise TranscoderLoadError(
                f"unknown activation {configured!r} (expected relu, jump_relu, topk or global_topk)"
            )
    elif layout.global_topk:
        activation = Activation.GLOBAL_TOPK
    elif "k" in names or "k" in config:
        activation = Activation.TOPK
    else:
        activation = Activation.JUMPRELU if "threshold" in names else Activation.RELU
    if activation not in (Activation.TOPK, Activation.GLOBAL_TOPK):
        return activation, None
    k = config.get("k", config.get("top_k"))
    if k is None and "k" in names:
        k = read_topk(first, layer)
    if k is None:
        k = published.known_topk(name)
    if not isinstance(k, int) or k <= 0:
        raise TranscoderLoadError(f"a TopK transcoder set needs a positive integer k, got {k!r}")
    return activation, k


def _content_hash(config: Path | None, files: list[Path]) -> str:
    digest = hashlib.sha256()
    if config is not None:
        digest.update(config.read_bytes())
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}\0{size}\0".encode())
        with path.open("rb") as f:
            digest.update(f.read(_MIB))
            if size > 2 * _MIB:
                f.seek(size - _MIB)
                digest.update(f.read(_MIB))
            elif size > _MIB:
                digest.update(f.read())
    return digest.hexdigest()[:16]
