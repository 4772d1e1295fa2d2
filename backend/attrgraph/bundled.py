"""The demo model shipped inside the package: where its files are.

Production code (the CLI's default model, the worker's default model) and the demo builder both
read these paths; only the builder writes them. Layout of a demo directory:

    model/          config.json, model.safetensors, tokenizer.json, tokenizer_config.json
    transcoders/    config.yaml + layer_{i}.safetensors (circuit-tracer layout)
    dashboards/     feature dashboards in the attrgraph.format.dashboards layout
    metrics.json    what demo/evaluate.py measured at build time (reported in docs/demo-model.md)
"""

from __future__ import annotations

import os
from pathlib import Path

DEMO_MODEL_NAME = "attrgraph-demo"


def demo_dir() -> Path:
    """`$ATTRGRAPH_DEMO_DIR` if set, else the files shipped with the package."""
    override = os.environ.get("ATTRGRAPH_DEMO_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "data" / "demo"


def _root(root: str | Path | None) -> Path:
    return demo_dir() if root is None else Path(root)


def demo_model_dir(root: str | Path | None = None) -> Path:
    return _root(root) / "model"


def demo_transcoders_dir(root: str | Path | None = None) -> Path:
    return _root(root) / "transcoders"


def demo_dashboards_dir(root: str | Path | None = None) -> Path:
    return _root(root) / "dashboards"
