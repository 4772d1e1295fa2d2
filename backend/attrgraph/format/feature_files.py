"""circuit-tracer's local feature files, and one lookup over them and attrgraph's own dashboards.

circuit-tracer's viewer (`serve(..., features_dir=DIR)`) reads a feature at `/features/...` from
DIR in one of two layouts, keyed by the Cantor pair of (layer, index) (format/node_ids.py):

* one JSON file per feature: `DIR/{scan}/{cantor_pair(layer, index)}.json`, or
  `DIR/{cantor_pair(layer, index)}.json` when DIR is the scan's own folder;
* a packed layout: `DIR/index.json.gz`, a list (or a dict keyed by layer) of `{"filename",
  "offsets"}` per layer, where feature i of that layer is bytes offsets[i]..offsets[i+1] of the file
  `filename` (a JSON document, gzip-compressed or not).

Either holds the same feature-detail dict as `layer_{i}.jsonl.gz` (Neuronpedia's shape). A transcoder
set ships feature files in its `features/` folder; attrgraph's builds write `dashboards/`.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from attrgraph.format.dashboards import dashboard_file, load_dashboard
from attrgraph.format.node_ids import cantor_pair

FeatureLookup = Callable[[int, int], dict[str, Any]]  # (layer, index) -> detail; KeyError if none


def _json(raw: bytes) -> dict[str, Any]:
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    detail = json.loads(raw)
    if not isinstance(detail, dict):
        raise KeyError("a feature file must hold a JSON object")
    return detail


@lru_cache(maxsize=8)
def _packed_index(path: Path) -> dict[int, tuple[str, list[int]]]:
    data = (
        _json(path.read_bytes()) if path.suffix != ".gz" else json.loads(gzip.decompress(path.read_bytes()))
    )
    items = data.items() if isinstance(data, dict) else enumerate(data)
    return {int(k): (str(v["filename"]), [int(o) for o in v["offsets"]]) for k, v in items}


def load_feature_file(
    features_dir: str | Path, layer: int, index: int, scan: str | None = None
) -> dict[str, Any]:
    """One feature from circuit-tracer's layout under `features_dir`. Raises KeyError if absent."""
    root = Path(features_dir) / scan if scan else Path(features_dir)
    single = root / f"{cantor_pair(layer, index)}.json"
    if single.is_file():
        return _with_index(_json(single.read_bytes()), layer, index)
    packed = root / "index.json.gz"
    if packed.is_file():
        layers = _packed_index(packed.resolve())
        if layer not in layers:
            raise KeyError(f"no feature files for layer {layer} in {root}")
        filename, offsets = layers[layer]
        if not 0 <= index < len(offsets) - 1:
            raise KeyError(f"layer {layer} has no feature {index}")
        with (root / filename).open("rb") as f:
            f.seek(offsets[index])
            raw = f.read(offsets[index + 1] - offsets[index])
        return _with_index(_json(raw), layer, index)
    raise KeyError(f"no feature file for layer {layer}, feature {index} in {root}")


def _with_index(detail: dict[str, Any], layer: int, index: int) -> dict[str, Any]:
    detail.setdefault("layer", layer)
    detail.setdefault("index", index)
    return detail


def has_feature_files(features_dir: str | Path) -> bool:
    root = Path(features_dir)
    return root.is_dir() and (
        (root / "index.json.gz").is_file() or any(p.suffix == ".json" for p in root.rglob("*.json"))
    )


def feature_lookup(*dirs: str | Path | None) -> FeatureLookup | None:
    """A lookup over the first of `dirs` that holds dashboards (`layer_0.jsonl.gz`) or circuit-tracer
    feature files; None when none does. A dashboards directory wins when both are present."""
    for d in dirs:
        if d is None:
            continue
        root = Path(d)
        if dashboard_file(root, 0).is_file():
            return partial(load_dashboard, root)
        if has_feature_files(root):
            return partial(load_feature_file, root)
    return None
