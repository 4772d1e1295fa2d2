"""Fixtures over the committed demo model (attrgraph/data/demo)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from attrgraph.bundled import demo_dir, demo_model_dir, demo_transcoders_dir
from attrgraph.demo.corpus import World, make_world
from attrgraph.engine.models import LoadedModel, load_model
from attrgraph.engine.transcoders import load_transcoders
from attrgraph.engine.transcoders.base import TranscoderSet


@pytest.fixture(scope="session")
def demo_metrics() -> dict[str, Any]:
    """What the build measured (the numbers docs/demo-model.md reports)."""
    metrics: dict[str, Any] = json.loads((demo_dir() / "metrics.json").read_text())
    return metrics


@pytest.fixture(scope="session")
def demo_world(demo_metrics: dict[str, Any]) -> World:
    return make_world(demo_metrics["seed"])


@pytest.fixture(scope="session")
def demo_lm() -> LoadedModel:
    """The committed model, loaded through the same code path as hub models."""
    return load_model(demo_model_dir())


@pytest.fixture(scope="session")
def demo_tc(demo_lm: LoadedModel) -> TranscoderSet:
    return load_transcoders(demo_transcoders_dir(), device=demo_lm.device, dtype=demo_lm.dtype)
