"""Interventions: the graph's edges are predictions that ablations in the frozen model confirm."""

from __future__ import annotations

import pytest
import torch

from attrgraph.engine import TraceSettings, trace
from attrgraph.engine.graph import Graph, NodeKind
from attrgraph.engine.interventions import (
    FeatureIntervention,
    InterventionError,
    InterventionOptions,
    Mode,
    intervene,
)
from attrgraph.engine.transcoders.base import TranscoderSet
from tests.support.models import PROMPTS
from tests.support.transcoders import TinyLM, random_transcoders, tiny_lm

PROMPT = PROMPTS[2]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyLM, TranscoderSet, Graph]:
    lm = tiny_lm("llama", tmp_path_factory.mktemp("iv"), torch.float64)
    cfg = lm.model.config
    kind = "jumprelu_skip"
    tc = random_transcoders(
        kind, n_layers=cfg.num_hidden_layers, d_model=cfg.hidden_size, dtype=torch.float64
    )
    graph = trace(lm, tc, PROMPT, settings=TraceSettings(max_edges_per_target=None))
    return lm, tc, graph


def _strongest_feature_edges(graph: Graph, n: int) -> list[tuple[int, int, float]]:
    """(logit index, feature node, weight) of the largest feature -> top-logit edges."""
    top_logit = graph.logit_index(0)
    rows = (graph.edges[:, 0] == top_logit) & (graph.edges[:, 1] < graph.n_features)
    idx = rows.nonzero(as_tuple=True)[0]
    order = graph.weights[idx].abs().argsort(descending=True)[:n]
    return [(0, int(graph.edges[i, 1]), float(graph.weights[i])) for i in idx[order]]


def _demeaned(logits: torch.Tensor, token: int) -> float:
    return float(logits[token] - logits.mean())


def test_no_intervention_reproduces_the_model(setup: tuple[TinyLM, TranscoderSet, Graph]) -> None:
    lm, tc, graph = setup
    result = intervene(lm, tc, PROMPT, [])
    original = lm.model(input_ids=torch.tensor([graph.token_ids])).logits[0, -1]
    # 1e-5, not float64's 1e-12: Llama's RMSNorm rounds through float32 even in a float64 model.
    assert torch.allclose(result.before.logits.double(), original.double(), atol=1e-5)
    assert result.kl_divergence == pytest.approx(0.0, abs=1e-12)


def test_direct_frozen_ablation_moves_logit_by_edge_weight(
    setup: tuple[TinyLM, TranscoderSet, Graph],
) -> None:
    lm, tc, graph = setup
    token = graph.logit_targets[0].token_id
    direct = InterventionOptions(freeze_attention=True, direct_only=True, n_generate=1)
    free = InterventionOptions(n_generate=1)
    differs = 0
    for _, node, weight in _strongest_feature_edges(graph, 5):
        layer, pos, feature = (int(v) for v in graph.features[node])
        ablate = [FeatureIntervention(layer, pos, feature, Mode.ABLATE)]
        result = intervene(lm, tc, PROMPT, ablate, direct)
        change = _demeaned(result.after.logits, token) - _demeaned(result.before.logits, token)
        assert change == pytest.approx(-weight, rel=1e-6, abs=1e-9)
        unconstrained = intervene(lm, tc, PROMPT, ablate, free)
        free_change = _demeaned(unconstrained.after.logits, token) - _demeaned(
            unconstrained.before.logits, token
        )
        differs += abs(free_change + weight) > 1e-4 * abs(weight)
    # Downstream features respond when not held fixed, so the unconstrained effect is not the edge.
    assert differs >= 1


def test_scaling_is_linear_in_the_frozen_direct_model(setup: tuple[TinyLM, TranscoderSet, Graph]) -> None:
    lm, tc, graph = setup
    token = graph.logit_targets[0].token_id
    _, node, weight = _strongest_feature_edges(graph, 1)[0]
    layer, pos, feature = (int(v) for v in graph.features[node])
    options = InterventionOptions(freeze_attention=True, direct_only=True, n_generate=1)
    result = intervene(lm, tc, PROMPT, [FeatureIntervention(layer, pos, feature, Mode.SCALE, 3.0)], options)
    change = _demeaned(result.after.logits, token) - _demeaned(result.before.logits, token)
    assert change == pytest.approx(2 * weight, rel=1e-6)


def test_results_report_probabilities_and_continuations(setup: tuple[TinyLM, TranscoderSet, Graph]) -> None:
    lm, tc, graph = setup
    kinds = {graph.kind(i) for i in range(graph.n_nodes)}
    assert NodeKind.FEATURE in kinds
    layer, pos, feature = (int(v) for v in graph.features[0])
    result = intervene(
        lm,
        tc,
        PROMPT,
        [FeatureIntervention(layer, pos, feature, Mode.SET, 50.0)],
        InterventionOptions(n_generate=4, apply_to_generated=True),
    )
    assert len(result.before.continuation_ids) == 4 and len(result.after.top) == 10
    assert result.kl_divergence > 0
    payload = result.to_dict()
    assert {"before", "after", "kl_divergence", "probability_changes"} <= set(payload)


@pytest.mark.parametrize(
    ("intervention", "message"),
    [
        (FeatureIntervention(99, 1, 0, Mode.ABLATE), "layer out of range"),
        (FeatureIntervention(0, 1, 10_000, Mode.ABLATE), "feature index out of range"),
        (FeatureIntervention(0, 999, 0, Mode.ABLATE), "position out of range"),
        (FeatureIntervention(0, 1, 0, Mode.SET, float("nan")), "finite"),
    ],
)
def test_bad_interventions_are_rejected(
    setup: tuple[TinyLM, TranscoderSet, Graph], intervention: FeatureIntervention, message: str
) -> None:
    lm, tc, _ = setup
    with pytest.raises(InterventionError, match=message):
        intervene(lm, tc, PROMPT, [intervention])
