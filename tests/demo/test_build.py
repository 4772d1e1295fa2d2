"""`attrgraph demo build`: the CI-size build works end to end; the full build (slow) reproduces the
committed model's metrics within the tolerances docs/demo-model.md states."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from attrgraph.bundled import demo_dashboards_dir, demo_model_dir, demo_transcoders_dir
from attrgraph.cli import main
from attrgraph.engine import trace
from attrgraph.engine.models import load_model
from attrgraph.engine.transcoders import load_transcoders
from attrgraph.format.dashboards import dashboard_file, load_dashboard


def test_ci_build(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "build", "--size", "ci", "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["size"] == "ci"
    lm = load_model(demo_model_dir(out))
    tc = load_transcoders(demo_transcoders_dir(out))
    assert tc.n_layers == lm.model.config.n_layer
    assert dashboard_file(demo_dashboards_dir(out), 0).exists()
    graph = trace(lm, tc, "Fact: the capital of the state containing Dallas is")
    layer, _pos, index = (int(v) for v in graph.features[0])
    assert load_dashboard(demo_dashboards_dir(out), layer, index)["top_logits"]
    assert all(0 <= row["variance_explained"] <= 1 for row in metrics["transcoders"])
    # the last stage re-run on the saved files reproduces the dashboards byte for byte
    before = {p.name: p.read_bytes() for p in (out / "dashboards").iterdir()}
    assert main(["demo", "evaluate", "--out", str(out), "--quiet"]) == 0
    assert {p.name: p.read_bytes() for p in (out / "dashboards").iterdir()} == before
    assert json.loads((out / "metrics.json").read_text())["behaviour"] == metrics["behaviour"]


def test_ci_build_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert main(["demo", "build", "--size", "ci", "--out", str(tmp_path / name), "--quiet"]) == 0
    for rel in ("model/model.safetensors", "model/tokenizer.json", "transcoders/layer_0.safetensors"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


# Tolerances of a rebuild against the committed metrics (a different machine may round differently,
# and small float differences compound over training).
ACCURACY_TOLERANCE = 0.1
VARIANCE_EXPLAINED_TOLERANCE = 0.05
L0_RELATIVE_TOLERANCE = 0.3


@pytest.mark.slow
def test_full_build_reproduces_committed_metrics(tmp_path: Path, demo_metrics: dict[str, Any]) -> None:
    out = tmp_path / "demo"
    assert (
        main(["demo", "build", "--size", "full", "--out", str(out), "--seed", str(demo_metrics["seed"])]) == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    for name, row in demo_metrics["behaviour"].items():
        assert metrics["behaviour"][name]["accuracy"] == pytest.approx(
            row["accuracy"], abs=ACCURACY_TOLERANCE
        ), name
    for new, old in zip(metrics["transcoders"], demo_metrics["transcoders"], strict=True):
        assert new["variance_explained"] == pytest.approx(
            old["variance_explained"], abs=VARIANCE_EXPLAINED_TOLERANCE
        )
        assert new["l0"] == pytest.approx(old["l0"], rel=L0_RELATIVE_TOLERANCE)
    assert metrics["dallas"]["prediction"] == " Austin"
    # <= 30 min on 2 cores: the build uses one thread, so its CPU time bounds its wall time on an idle
    # machine (wall time on a shared machine says little)
    assert metrics["cpu_s"] <= 30 * 60
