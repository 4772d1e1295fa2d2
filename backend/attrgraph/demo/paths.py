"""Where the built demo files live, and the dashboard API the service uses.

Layout of a demo directory (the committed one is `attrgraph/data/demo/`):

    model/          config.json, model.safetensors, tokenizer.json, tokenizer_config.json
    transcoders/    config.yaml + layer_{i}.safetensors (circuit-tracer layout)
    dashboards/     layer_{i}.jsonl.gz: one feature-detail JSON per line, line i = feature i
    metrics.json    what evaluate.py measured at build time (reported in docs/demo-model.md)
"""

from __future__ import annotations

import gzip
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import attrgraph

DEMO_MODEL_NAME = "attrgraph-demo"


def demo_dir() -> Path:
    """The demo directory: `$ATTRGRAPH_DEMO_DIR` if set, else the files shipped with the package."""
    override = os.environ.get("ATTRGRAPH_DEMO_DIR")
    if override:
        return Path(override)
    return Path(attrgraph.__file__).resolve().parent / "data" / "demo"


def _root(root: str | Path | None) -> Path:
    return demo_dir() if root is None else Path(root)


def demo_model_dir(root: str | Path | None = None) -> Path:
    return _root(root) / "model"


def demo_transcoders_dir(root: str | Path | None = None) -> Path:
    return _root(root) / "transcoders"


def demo_dashboards_dir(root: str | Path | None = None) -> Path:
    return _root(root) / "dashboards"


def dashboard_file(layer: int, root: str | Path | None = None) -> Path:
    return demo_dashboards_dir(root) / f"layer_{layer}.jsonl.gz"


@lru_cache(maxsize=16)
def _layer_dashboards(path: Path) -> tuple[str, ...]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return tuple(line for line in f if line.strip())


def load_dashboard(layer: int, index: int, root: str | Path | None = None) -> dict[str, Any]:
    """The feature-detail dict of feature `index` at `layer` (Neuronpedia format plus `label`).

    Raises KeyError if there is no such feature.
    """
    path = dashboard_file(layer, root)
    if not path.exists():
        raise KeyError(f"no dashboards for layer {layer} in {path.parent}")
    lines = _layer_dashboards(path.resolve())
    if not 0 <= index < len(lines):
        raise KeyError(f"layer {layer} has no feature {index}")
    detail: dict[str, Any] = json.loads(lines[index])
    return detail
