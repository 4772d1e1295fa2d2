"""The engine's exactness guarantees, on tiny models of every family and every transcoder kind.

* the replacement model (error nodes included) reproduces the original logits;
* completeness: each target's incoming edges + bias term (from an independent zero-source forward
  pass) + unexplored remainder equal its value (from the real forward pass);
* perturbation: moving one source by eps in the frozen model moves a target by weight * eps.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attrgraph.engine import PromptError, TargetError, TargetSpec, TraceSettings, trace
from attrgraph.engine.graph import Graph, NodeKind
from attrgraph.engine.pruning import node_influence
from attrgraph.engine.replacement import IncompatibleTranscodersError, ReplacementModel
from tests.support.checks import completeness_errors, row_sums, target_nodes
from tests.support.models import FAMILIES, PROMPTS
from tests.support.transcoders import TRANSCODER_KINDS, TinyLM, random_transcoders, tiny_lm

EXACT = TraceSettings(max_edges_per_target=None, batch_size=32)


def _setup(family: str, kind: str, root: Path, dtype: torch.dtype = torch.float32) -> tuple[TinyLM, object]:
    lm = tiny_lm(family, root, dtype)
    cfg = lm.model.config
    tc = random_transcoders(
        kind,
        n_layers=cfg.num_hidden_layers,
        d_model=cfg.hidden_size,
        seed=hash((family, kind)) % 1000,
        dtype=dtype,
    )
    return lm, tc


@pytest.mark.parametrize("kind", TRANSCODER_KINDS)
@pytest.mark.parametrize("family", FAMILIES)
def test_replacement_model_reproduces_logits(family: str, kind: str, model_root: Path) -> None:
    lm, tc = _setup(family, kind, model_root)
    ids = torch.tensor(lm.tokenizer(PROMPTS[0])["input_ids"])
    original = lm.model(input_ids=ids[None]).logits[0].float()
    rm = ReplacementModel(lm.model, tc)  # type: ignore[arg-type]
    cache = rm.run(ids, exclude_positions=1)
    replaced = rm.replacement_logits(cache)
    assert (replaced - original).abs().max() <= 1e-4
    # The linearised pass computes the same values (only gradients differ).
    assert (cache.logits - original).abs().max() <= 1e-4
    assert sum(int(a.values.numel()) for a in cache.activations) > 0


@pytest.mark.parametrize("kind", TRANSCODER_KINDS)
@pytest.mark.parametrize("family", FAMILIES)
def test_completeness(family: str, kind: str, model_root: Path) -> None:
    lm, tc = _setup(family, kind, model_root)
    for prompt in PROMPTS[:2]:
        graph = trace(lm, tc, prompt, settings=EXACT)  # type: ignore[arg-type]
        assert graph.n_features > 10
        assert graph.unexplored.abs().max() == 0  # nothing dropped in exact mode
        assert completeness_errors(graph).max() <= 1e-4
        # Where a target's value is not a near-cancellation, the error is small relative to it too.
        nodes = target_nodes(graph)
        sums, abs_sums = row_sums(graph)
        value = graph.target_values.double()[nodes]
        solid = value.abs() > 0.05 * abs_sums[nodes]
        residual = (sums[nodes] + graph.bias_terms.double()[nodes] - value).abs()
        assert (residual[solid] / value[solid].abs()).max() <= 1e-4


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_values_match_an_independent_forward_pass(family: str, model_root: Path) -> None:
    lm, tc = _setup(family, "relu", model_root)
    graph = trace(lm, tc, PROMPTS[1], settings=EXACT)  # type: ignore[arg-type]
    logits = lm.model(input_ids=torch.tensor([graph.token_ids])).logits[0, -1].float()
    for i, target in enumerate(graph.logit_targets):
        demeaned = logits[target.token_id] - logits.mean()
        assert graph.target_values[graph.logit_index(i)] == pytest.approx(float(demeaned), abs=1e-4)
    # Feature values are pre-activations; a ReLU feature's activation is its pre-activation.
    values = graph.target_values[: graph.n_features]
    assert torch.allclose(values, graph.activations, atol=1e-5)


def _perturbed_target(
    rm: ReplacementModel, cache: object, graph: Graph, target: int, source: int, eps: float
) -> float:
    """Target value in the frozen model with `source` scaled by (1 + eps), all else held."""
    tc = rm.transcoders
    resid0 = cache.resid0.detach()[0].clone()  # type: ignore[attr-defined]
    writes = [w.clone() for w in cache.write_constants]  # type: ignore[attr-defined]
    kind = graph.kind(source)
    if kind is NodeKind.TOKEN:
        pos = source - graph.token_offset
        resid0[pos] += eps * cache.token_embeddings[pos]  # type: ignore[attr-defined]
    elif kind is NodeKind.ERROR:
        layer, pos = divmod(source - graph.error_offset, graph.n_pos)
        writes[layer][pos] += eps * cache.errors[layer][pos]  # type: ignore[attr-defined]
    else:
        layer, pos, feature = (int(v) for v in graph.features[source])
        decoder = tc.layer(layer).W_dec[feature]  # (n_out, d_model)
        for o in range(decoder.shape[0]):
            writes[layer + o][pos] += eps * float(graph.activations[source]) * decoder[o]
    tc_inputs, final = rm.replay(cache, resid0=resid0, writes=writes)  # type: ignore[arg-type]
    if graph.kind(target) is NodeKind.LOGIT:
        t = graph.logit_targets[target - graph.logit_offset]
        w = rm.adapter.unembed_weight.double()
        return float((w[t.token_id] - w.mean(0)) @ final[-1].double())
    layer, pos, feature = (int(v) for v in graph.features[target])
    return float(tc.pre_activations(layer, tc_inputs[layer][pos])[feature])


@pytest.mark.parametrize(
    ("family", "kind"),
    [("gpt2", "relu"), ("llama", "jumprelu_skip"), ("gemma2", "clt_topk"), ("qwen3", "relu")],
)
def test_perturbation_matches_edge_weights(family: str, kind: str, model_root: Path) -> None:
    # float64 so that small edges can be checked with a small eps (float32 noise would swamp them).
    lm, tc = _setup(family, kind, model_root, dtype=torch.float64)
    graph = trace(lm, tc, PROMPTS[2], settings=EXACT)  # type: ignore[arg-type]
    rm = ReplacementModel(lm.model, tc)  # type: ignore[arg-type]
    ids = torch.tensor(graph.token_ids)
    cache = rm.run(ids, exclude_positions=1, record=True)
    g = torch.Generator().manual_seed(0)
    sources = graph.edges[:, 1]
    by_kind = {
        NodeKind.FEATURE: (sources < graph.error_offset).nonzero(as_tuple=True)[0],
        NodeKind.ERROR: ((sources >= graph.error_offset) & (sources < graph.token_offset)).nonzero(
            as_tuple=True
        )[0],
        NodeKind.TOKEN: (sources >= graph.token_offset).nonzero(as_tuple=True)[0],
    }
    eps = 1e-3
    for kind, candidates in by_kind.items():
        checked = 0
        for e in candidates[torch.randperm(candidates.numel(), generator=g)[:15]].tolist():
            target, source = (int(v) for v in graph.edges[e])
            weight = float(graph.weights[e])
            if abs(weight) < 1e-6 * float(graph.row_abs_totals[target]):
                continue
            before = _perturbed_target(rm, cache, graph, target, source, 0.0)
            after = _perturbed_target(rm, cache, graph, target, source, eps)
            assert (after - before) == pytest.approx(weight * eps, rel=1e-3), kind
            checked += 1
        assert checked >= 10, kind


def test_feature_cap_visits_the_most_influential_features(model_root: Path) -> None:
    lm, tc = _setup("llama", "relu", model_root)
    full = trace(lm, tc, PROMPTS[2], settings=EXACT)  # type: ignore[arg-type]
    cap = full.n_features // 5
    capped = trace(lm, tc, PROMPTS[2], settings=TraceSettings(max_feature_nodes=cap, batch_size=8))  # type: ignore[arg-type]
    assert capped.n_features == cap
    influence = node_influence(full)[: full.n_features]
    keys = {tuple(f.tolist()): i for i, f in enumerate(full.features)}
    chosen = torch.tensor([keys[tuple(f.tolist())] for f in capped.features])
    # The chosen features hold far more influence than an average subset of the same size.
    assert influence[chosen].sum() > 2 * influence.mean() * cap
    assert completeness_errors(capped).max() <= 1e-4  # unexplored carries what was left out


def test_edge_cap_keeps_rows_sparse_and_accounted(model_root: Path) -> None:
    lm, tc = _setup("gpt2", "relu", model_root)
    graph = trace(lm, tc, PROMPTS[2], settings=TraceSettings(max_edges_per_target=20))  # type: ignore[arg-type]
    per_row = torch.bincount(graph.edges[:, 0], minlength=graph.n_nodes)
    assert int(per_row.max()) == 20
    assert graph.unexplored.abs().max() > 0
    assert completeness_errors(graph).max() <= 1e-4


def test_named_and_logit_difference_targets(model_root: Path) -> None:
    lm, tc = _setup("llama", "relu", model_root)
    logits = lm.model(input_ids=torch.tensor([lm.tokenizer(PROMPTS[0])["input_ids"]])).logits[0, -1]
    a, b = (int(i) for i in logits.topk(2).indices)
    graph = trace(lm, tc, PROMPTS[0], targets=TargetSpec(logit_diff=(a, b)), settings=EXACT)  # type: ignore[arg-type]
    assert graph.n_logits == 1 and graph.logit_targets[0].minus_token_id == b
    assert float(graph.target_values[graph.logit_index(0)]) == pytest.approx(
        float(logits[a] - logits[b]), abs=1e-4
    )
    assert completeness_errors(graph).max() <= 1e-4
    named = trace(lm, tc, PROMPTS[0], targets=TargetSpec(tokens=(b, a)))  # type: ignore[arg-type]
    assert [t.token_id for t in named.logit_targets] == [b, a]


def test_bfloat16_traces(model_root: Path) -> None:
    lm, tc = _setup("llama", "relu", model_root, dtype=torch.bfloat16)
    graph = trace(lm, tc, PROMPTS[0])  # type: ignore[arg-type]
    assert graph.n_features > 0 and torch.isfinite(graph.weights).all()
    assert completeness_errors(graph).median() <= 2e-2
    # The written-out backward computes in float32 and still agrees with bfloat16 autograd.
    assert graph.stats["backward"] == "linear"


def test_bad_inputs_raise_clear_errors(model_root: Path) -> None:
    lm, tc = _setup("gpt2", "relu", model_root)
    with pytest.raises(PromptError, match="at most"):
        trace(lm, tc, list(range(5)) * 1000)  # type: ignore[arg-type]
    with pytest.raises(PromptError, match="empty"):
        trace(lm, tc, [])  # type: ignore[arg-type]
    with pytest.raises(TargetError, match="single token"):
        trace(lm, tc, PROMPTS[0], targets=TargetSpec(tokens=("antidisestablishmentarianism",)))  # type: ignore[arg-type]
    other = random_transcoders("relu", n_layers=5, d_model=lm.model.config.hidden_size)
    with pytest.raises(IncompatibleTranscodersError, match="layers"):
        trace(lm, other, PROMPTS[0])
