"""Interventions: the graph's edges are predictions that ablations in the frozen model confirm."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from attrgraph.engine import TraceSettings, trace
from attrgraph.engine.graph import Graph, NodeKind
from attrgraph.engine.interventions import (
    FeatureIntervention,
    InterventionError,
    InterventionOptions,
    Mode,
    active_features,
    intervene,
)
from attrgraph.engine.transcoders import load_transcoders
from attrgraph.engine.transcoders.base import TranscoderSet
from tests.support.layouts import write_global_topk
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
    # Each change carries the logits too, and they agree with its probabilities: softmax is shift-
    # invariant, so log-probability differences between two tokens equal their logit differences.
    changes = payload["probability_changes"]
    assert all({"logit_before", "logit_after"} <= set(c) for c in changes)
    for when in ("before", "after"):
        first, second = sorted(changes, key=lambda c: -c[when])[:2]  # probabilities far from underflow
        from_probs = math.log(first[when]) - math.log(second[when])
        from_logits = first[f"logit_{when}"] - second[f"logit_{when}"]
        assert from_logits == pytest.approx(from_probs, abs=1e-3)


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


# -- global TopK: one budget per position over all layers, so the selection is held ---------------


@pytest.fixture(scope="module")
def global_topk(tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyLM, TranscoderSet, Graph]:
    """A tiny Qwen3 with a ByteDance-style global-TopK CLT written and loaded in its published layout."""
    root = tmp_path_factory.mktemp("iv-global")
    lm = tiny_lm("qwen3", root, torch.float64)
    cfg = lm.model.config
    write_global_topk(root / "clt", n_layers=cfg.num_hidden_layers, d_model=cfg.hidden_size, k=6)
    tc = load_transcoders(root / "clt", dtype=torch.float64)
    assert tc.selects_across_layers
    graph = trace(lm, tc, PROMPT, settings=TraceSettings(max_edges_per_target=None))
    assert graph.n_features > 0
    return lm, tc, graph


@pytest.mark.parametrize("freeze", [False, True])
def test_global_topk_without_edits_reproduces_the_model(
    global_topk: tuple[TinyLM, TranscoderSet, Graph], freeze: bool
) -> None:
    lm, tc, graph = global_topk
    result = intervene(lm, tc, PROMPT, [], InterventionOptions(freeze_attention=freeze, n_generate=3))
    original = lm.model(input_ids=torch.tensor([graph.token_ids])).logits[0, -1]
    assert torch.allclose(result.before.logits.double(), original.double(), atol=1e-5)
    assert result.after.continuation_ids == result.before.continuation_ids


def test_global_topk_direct_ablation_is_the_edge_and_recomputed_features_respond(
    global_topk: tuple[TinyLM, TranscoderSet, Graph],
) -> None:
    lm, tc, graph = global_topk
    token = graph.logit_targets[0].token_id
    direct = InterventionOptions(freeze_attention=True, direct_only=True, n_generate=1)
    differs = 0
    for freeze in (True, False):
        recomputed = InterventionOptions(freeze_attention=freeze, n_generate=1)
        for _, node, weight in _strongest_feature_edges(graph, 4):
            layer, pos, feature = (int(v) for v in graph.features[node])
            ablate = [FeatureIntervention(layer, pos, feature, Mode.ABLATE)]
            result = intervene(lm, tc, PROMPT, ablate, direct)
            change = _demeaned(result.after.logits, token) - _demeaned(result.before.logits, token)
            assert change == pytest.approx(-weight, rel=1e-6, abs=1e-9)
            free = intervene(lm, tc, PROMPT, ablate, recomputed)
            free_change = _demeaned(free.after.logits, token) - _demeaned(free.before.logits, token)
            differs += abs(free_change + weight) > 1e-4 * abs(weight)
    assert differs >= 1  # downstream latents of the held selection follow the changed stream


def test_global_topk_latents_outside_the_selection_stay_off(
    global_topk: tuple[TinyLM, TranscoderSet, Graph],
) -> None:
    """Where features are recomputed the prompt's selection is held: latents the budget left out stay
    off however an edit moves their pre-activations, so making their decoders huge changes nothing."""
    lm, tc, graph = global_topk
    selected = {(f.layer, f.feature) for f in active_features(lm, tc, PROMPT)}
    loud_layers = []
    for layer in range(tc.n_layers):
        params = tc.layer(layer)
        left_out = torch.tensor([(layer, f) not in selected for f in range(tc.d_transcoder)])
        assert bool(left_out.any())
        scale = torch.where(left_out, 1e3, 1.0).to(params.W_dec.dtype)[:, None, None]
        loud_layers.append(replace(params, W_dec=params.W_dec * scale))
    loud = TranscoderSet(
        loud_layers,
        n_layers=tc.n_layers,
        cross_layer=tc.cross_layer,
        activation=tc.activation,
        topk=tc.topk,
        input_site=tc.input_site,
        dtype=tc.dtype,
    )
    _, node, _ = _strongest_feature_edges(graph, 1)[0]
    layer, pos, feature = (int(v) for v in graph.features[node])
    for mode, value in ((Mode.ABLATE, 0.0), (Mode.SET, 40.0)):
        edit = [FeatureIntervention(layer, pos, feature, mode, value)]
        for freeze in (False, True):
            options = InterventionOptions(freeze_attention=freeze, n_generate=1)
            quiet_result = intervene(lm, tc, PROMPT, edit, options)
            loud_result = intervene(lm, loud, PROMPT, edit, options)
            assert quiet_result.kl_divergence > 1e-8
            torch.testing.assert_close(loud_result.after.logits, quiet_result.after.logits, rtol=0, atol=1e-9)


def test_global_topk_interventions_carry_into_continuations(
    global_topk: tuple[TinyLM, TranscoderSet, Graph],
) -> None:
    lm, tc, graph = global_topk
    layer, pos, feature = (int(v) for v in graph.features[0])
    edit = [FeatureIntervention(layer, pos, feature, Mode.SET, 80.0)]
    options = InterventionOptions(n_generate=4, apply_to_generated=True)
    result = intervene(lm, tc, PROMPT, edit, options)
    assert len(result.after.continuation_ids) >= 1 and result.kl_divergence > 0
