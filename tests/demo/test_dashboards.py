"""Every feature has a dashboard; every feature of a traced graph has examples and logit effects."""

from __future__ import annotations

import gzip

import pytest

from attrgraph.bundled import demo_dashboards_dir
from attrgraph.engine import trace
from attrgraph.engine.models import LoadedModel
from attrgraph.engine.transcoders.base import TranscoderSet
from attrgraph.format.dashboards import dashboard_file, load_dashboard

KEYS = {
    "index", "layer", "label", "examples_quantiles", "top_logits", "bottom_logits", "act_min", "act_max",
    "quantile_values", "histogram", "activation_frequency",
}  # fmt: skip


def test_one_dashboard_per_feature(demo_tc: TranscoderSet) -> None:
    for layer in range(demo_tc.n_layers):
        with gzip.open(dashboard_file(demo_dashboards_dir(), layer), "rt", encoding="utf-8") as f:
            assert sum(1 for line in f if line.strip()) == demo_tc.d_transcoder
        for index in (0, demo_tc.d_transcoder // 2, demo_tc.d_transcoder - 1):
            detail = load_dashboard(demo_dashboards_dir(), layer, index)
            assert detail.keys() >= KEYS
            assert (detail["layer"], detail["index"]) == (layer, index)
            assert detail["label"]
            assert len(detail["top_logits"]) == len(detail["bottom_logits"]) == 10
    with pytest.raises(KeyError):
        load_dashboard(demo_dashboards_dir(), 0, demo_tc.d_transcoder)


def test_every_feature_in_the_dallas_graph_has_a_dashboard(
    demo_lm: LoadedModel, demo_tc: TranscoderSet
) -> None:
    graph = trace(demo_lm, demo_tc, "Fact: the capital of the state containing Dallas is")
    assert graph.logit_targets[0].token == " Austin"
    assert graph.n_features > 0
    for layer, _pos, index in {tuple(int(v) for v in row) for row in graph.features}:
        detail = load_dashboard(demo_dashboards_dir(), layer, index)
        top = detail["examples_quantiles"][0]
        assert top["quantile_name"] == "Top activations"
        assert top["examples"], (layer, index)
        example = top["examples"][0]
        assert len(example["tokens"]) == len(example["tokens_acts_list"]) > 0
        assert max(example["tokens_acts_list"]) > 0
        assert detail["top_logits"] and detail["bottom_logits"]
        assert detail["activation_frequency"] > 0
        assert sum(detail["histogram"]["counts"]) > 0
