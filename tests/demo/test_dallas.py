"""The Dallas graph claims of docs/demo-model.md, measured on the committed model and transcoders."""

from __future__ import annotations

from typing import Any

import pytest

from attrgraph.bundled import demo_dir
from attrgraph.demo.corpus import World
from attrgraph.demo.dallas import dallas_analysis
from attrgraph.engine.models import LoadedModel
from attrgraph.engine.transcoders.base import TranscoderSet


@pytest.fixture(scope="module")
def dallas(demo_lm: LoadedModel, demo_tc: TranscoderSet, demo_world: World) -> dict[str, Any]:
    return dallas_analysis(demo_lm.model, demo_lm.tokenizer, demo_tc, demo_world, demo_dir())


def test_prediction(dallas: dict[str, Any], demo_metrics: dict[str, Any]) -> None:
    assert dallas["prediction"] == " Austin"
    assert dallas["margin"] == pytest.approx(demo_metrics["dallas"]["margin"], abs=0.05)


def test_state_lives_at_the_last_position_in_layer_0(dallas: dict[str, Any]) -> None:
    sim = dallas["state_similarity"]
    # at " is", layer-0 features of two cities of one state are much more alike than across states
    assert sim["last_L0"]["same_state"] - sim["last_L0"]["different_state"] > 0.2
    # ... while at the city token they barely depend on the state
    assert sim["city_L0"]["same_state"] - sim["city_L0"]["different_state"] < 0.1
    # the city token's own features hardly matter: all of them ablated, Austin stays
    assert dallas["ablate_city_position"]["prediction"] == " Austin"
    # swapping the layer-0 features at " is" for Oakland's makes the model say Sacramento;
    # swapping any later layer's does not
    patch = dallas["patch_last_position"]
    assert patch["layer_0"]["prediction"] == patch["donor_answer"] == " Sacramento"
    for layer in (1, 2, 3):
        assert patch[f"layer_{layer}"]["prediction"] == " Austin"


def test_no_single_texas_feature_mediates_austin(dallas: dict[str, Any]) -> None:
    assert dallas["ablate_all_texas_features"]["prediction"] == " Austin"
    for split in ("mediation_trained", "mediation_held_out"):
        row = dallas[split]
        assert row["n_cities"] > 0
        assert row["answer_flipped"] == 0.0
        assert row["answer_margin_kept"] > 0.9


def test_graph_features_are_causal(dallas: dict[str, Any]) -> None:
    graph = dallas["graph"]
    assert "error" not in graph, graph
    ablations = graph["ablate_top_features"]
    assert ablations["top_1"]["margin"] < dallas["margin"]
    assert ablations["top_5"]["margin"] < ablations["top_1"]["margin"]
    assert ablations["top_10"]["prediction"] != " Austin"
