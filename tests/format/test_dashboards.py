"""Feature dashboards on disk: one gzip JSON-lines file per layer, line i = feature i, written with
bytes that depend on the content only."""

from __future__ import annotations

from pathlib import Path

import pytest

from attrgraph.format.dashboards import (
    dashboard_file,
    dashboard_writer,
    iter_dashboards,
    load_dashboard,
    write_detail,
)


def write_layer(directory: Path, layer: int, n: int) -> Path:
    path = dashboard_file(directory, layer)
    with dashboard_writer(path) as stream:
        for index in range(n):
            write_detail(stream, {"index": index, "layer": layer, "label": f"L{layer} “{index}”"})
    return path


def test_written_dashboards_read_back(tmp_path: Path) -> None:
    path = write_layer(tmp_path, 2, 5)
    assert path == tmp_path / "layer_2.jsonl.gz"
    details = list(iter_dashboards(path))
    assert [d["index"] for d in details] == [0, 1, 2, 3, 4]
    assert load_dashboard(tmp_path, 2, 3) == {"index": 3, "layer": 2, "label": "L2 “3”"}
    with pytest.raises(KeyError):
        load_dashboard(tmp_path, 2, 5)
    with pytest.raises(KeyError):
        load_dashboard(tmp_path, 7, 0)


def test_the_bytes_depend_on_the_content_only(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = write_layer(tmp_path / "a", 0, 3), write_layer(tmp_path / "b", 0, 3)
    assert first.read_bytes() == second.read_bytes()
    header = first.read_bytes()[:10]
    assert header[4:8] == b"\0\0\0\0"  # no modification time
    assert not header[3] & 0x08  # no file name
