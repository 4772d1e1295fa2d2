"""circuit-tracer's feature files (one JSON per feature, or packed with index.json.gz) and the
lookup that prefers attrgraph's dashboards."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from attrgraph.format.dashboards import dashboard_file, dashboard_writer, write_detail
from attrgraph.format.feature_files import feature_lookup, load_feature_file
from attrgraph.format.node_ids import cantor_pair


def _detail(layer: int, index: int) -> dict[str, object]:
    return {"index": index, "layer": layer, "label": f"f{layer}/{index}", "top_logits": ["a"]}


def test_one_file_per_feature(tmp_path: Path) -> None:
    scan = tmp_path / "features" / "my-scan"
    scan.mkdir(parents=True)
    (scan / f"{cantor_pair(2, 5)}.json").write_text(json.dumps({"label": "x"}))
    assert load_feature_file(tmp_path / "features", 2, 5, scan="my-scan") == {
        "label": "x",
        "layer": 2,
        "index": 5,
    }
    assert load_feature_file(scan, 2, 5)["label"] == "x"
    with pytest.raises(KeyError):
        load_feature_file(scan, 5, 2)


@pytest.mark.parametrize("compress", [False, True])
def test_packed_layout(tmp_path: Path, compress: bool) -> None:
    index = []
    for layer in range(2):
        blobs = [json.dumps(_detail(layer, i)).encode() for i in range(3)]
        blobs = [gzip.compress(b) if compress else b for b in blobs]
        offsets = [0]
        for b in blobs:
            offsets.append(offsets[-1] + len(b))
        (tmp_path / f"layer_{layer}.bin").write_bytes(b"".join(blobs))
        index.append({"filename": f"layer_{layer}.bin", "offsets": offsets})
    (tmp_path / "index.json.gz").write_bytes(gzip.compress(json.dumps(index).encode()))
    assert load_feature_file(tmp_path, 1, 2)["label"] == "f1/2"
    assert load_feature_file(tmp_path, 0, 0)["label"] == "f0/0"
    with pytest.raises(KeyError):
        load_feature_file(tmp_path, 0, 3)
    with pytest.raises(KeyError):
        load_feature_file(tmp_path, 2, 0)


def test_lookup_prefers_dashboards(tmp_path: Path) -> None:
    features = tmp_path / "features"
    features.mkdir()
    (features / f"{cantor_pair(0, 1)}.json").write_text(json.dumps({"label": "from files"}))
    assert feature_lookup(None, tmp_path / "dashboards", tmp_path / "nowhere") is None
    lookup = feature_lookup(tmp_path / "dashboards", features)
    assert lookup is not None and lookup(0, 1)["label"] == "from files"
    (tmp_path / "dashboards").mkdir()
    with dashboard_writer(dashboard_file(tmp_path / "dashboards", 0)) as stream:
        for i in range(2):
            write_detail(stream, _detail(0, i))
    lookup = feature_lookup(tmp_path / "dashboards", features)
    assert lookup is not None and lookup(0, 1)["label"] == "f0/1"
