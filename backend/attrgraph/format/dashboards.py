"""Feature dashboards on disk: what each transcoder feature fires on and what it promotes.

A dashboards directory holds `layer_{i}.jsonl.gz` per layer: one feature-detail JSON object per
line, line i describing feature i (Neuronpedia's feature-detail shape plus `label`; see
docs/graph-format.md). Reading is lazy per layer and cached.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path
from typing import Any


def dashboard_file(dashboards_dir: str | Path, layer: int) -> Path:
    return Path(dashboards_dir) / f"layer_{layer}.jsonl.gz"


@lru_cache(maxsize=16)
def _layer_lines(path: Path) -> tuple[str, ...]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return tuple(line for line in f if line.strip())


def load_dashboard(dashboards_dir: str | Path, layer: int, index: int) -> dict[str, Any]:
    """The feature-detail dict of feature `index` at `layer`. Raises KeyError if there is none."""
    path = dashboard_file(dashboards_dir, layer)
    if not path.exists():
        raise KeyError(f"no dashboards for layer {layer} in {path.parent}")
    lines = _layer_lines(path.resolve())
    if not 0 <= index < len(lines):
        raise KeyError(f"layer {layer} has no feature {index}")
    detail: dict[str, Any] = json.loads(lines[index])
    return detail
