"""Feature dashboards on disk: what each transcoder feature fires on and what it promotes.

A dashboards directory holds `layer_{i}.jsonl.gz` per layer: one feature-detail JSON object per
line, line i describing feature i (Neuronpedia's feature-detail shape plus `label`; see
docs/graph-format.md). Reading is lazy per layer and cached.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TextIO


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


def iter_dashboards(path: str | Path) -> Iterable[dict[str, Any]]:
    """Every feature-detail dict of one layer file, in feature order."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


@contextmanager
def dashboard_writer(path: str | Path) -> Iterator[TextIO]:
    """A text stream for one layer file; write one JSON line per feature with `write_detail`.

    mtime=0 and no file name in the gzip header: the bytes depend on the content only, so a rebuild
    that changes nothing changes no file.
    """
    with (
        Path(path).open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
        io.TextIOWrapper(gz, encoding="utf-8") as text,
    ):
        yield text


def write_detail(stream: TextIO, detail: dict[str, Any]) -> None:
    stream.write(json.dumps(detail, ensure_ascii=False, separators=(",", ":")) + "\n")
