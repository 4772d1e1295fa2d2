"""Head loadings: an edge's weight, split by the head that carried it into the target's position."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attrgraph.engine import Graph, TraceSettings, trace
from attrgraph.engine.attention import AttentionTracer, qk_for_top_heads
from attrgraph.engine.attention.top import node_positions
from attrgraph.engine.transcoders.base import TranscoderSet
from tests.support.attention_reference import reference_score
from tests.support.models import FAMILIES, PROMPTS
from tests.support.transcoders import TRANSCODER_KINDS, TinyLM, random_transcoders, tiny_lm

EXACT = TraceSettings(max_edges_per_target=None, batch_size=32)


def _traced(family: str, kind: str, root: Path) -> tuple[TinyLM, TranscoderSet, Graph, AttentionTracer]:
    lm = tiny_lm(family, root)
    cfg = lm.model.config
    tc = random_transcoders(kind, n_layers=cfg.num_hidden_layers, d_model=cfg.hidden_size, seed=11)
    graph = trace(lm, tc, PROMPTS[0], settings=EXACT)
    tracer = AttentionTracer.for_graph(lm.model, tc, graph, bos_token_id=lm.tokenizer.bos_token_id)
    return lm, tc, graph, tracer


@pytest.mark.parametrize("kind", TRANSCODER_KINDS)
@pytest.mark.parametrize("family", FAMILIES)
def test_loadings_sum_to_each_crossing_edge(family: str, kind: str, model_root: Path) -> None:
    _, _, graph, tracer = _traced(family, kind, model_root)
    positions = node_positions(graph)
    targets, sources = graph.edges[:, 0], graph.edges[:, 1]
    crossing = (positions[targets] != positions[sources]).nonzero(as_tuple=True)[0]
    strongest = crossing[graph.weights[crossing].abs().argsort(descending=True)[:12]]
    picks = torch.cat(
        [
            strongest,
            crossing[torch.randperm(crossing.numel(), generator=torch.Generator().manual_seed(0))[:8]],
        ]
    )
    heads_seen: set[tuple[int, int]] = set()
    for edge in picks.tolist():
        weight = float(graph.weights[edge])
        loadings = tracer.head_loadings(graph, int(targets[edge]), int(sources[edge]))
        assert loadings.same_position == 0.0
        parts = sum(loadings.loadings.values())
        assert abs(parts - weight) <= 1e-4 * max(abs(weight), 1e-3)
        # every hop lands on the target's position from an earlier one, in a layer the target reads
        target_pos = int(positions[targets[edge]])
        assert all(key_pos < target_pos for _, _, key_pos in loadings.loadings)
        heads_seen |= set(loadings.by_head())
    assert len(heads_seen) > 1


def test_same_position_edges_carry_no_head_loading(model_root: Path) -> None:
    _, _, graph, tracer = _traced("qwen2", "relu", model_root)
    positions = node_positions(graph)
    targets, sources = graph.edges[:, 0], graph.edges[:, 1]
    same = (positions[targets] == positions[sources]).nonzero(as_tuple=True)[0][:5]
    for edge in same.tolist():
        loadings = tracer.head_loadings(graph, int(targets[edge]), int(sources[edge]))
        assert not loadings.loadings
        assert loadings.same_position == pytest.approx(float(graph.weights[edge]), rel=1e-4, abs=1e-7)


def test_a_heads_loading_is_what_removing_that_hop_removes(model_root: Path) -> None:
    """Independent check of one loading: zero one pattern entry in a replayed pass and watch the target."""
    _, _, graph, tracer = _traced("llama", "relu", model_root)
    positions = node_positions(graph)
    targets, sources = graph.edges[:, 0], graph.edges[:, 1]
    logit_edges = ((targets >= graph.logit_offset) & (positions[sources] != positions[targets])).nonzero()
    edge = int(logit_edges[graph.weights[logit_edges[:, 0]].abs().argmax()])
    target, source = int(targets[edge]), int(sources[edge])
    loadings = tracer.head_loadings(graph, target, source)
    (layer, head, key_pos), part = max(loadings.loadings.items(), key=lambda kv: abs(kv[1]))
    # In the frozen model the target is linear in the source: scaling the source by (1 + eps) moves it
    # by eps * (edge weight); with the hop's pattern entry zeroed it moves by eps * (weight - part).
    read = tracer.target_of(graph, target)
    column = tracer.source_column(graph, source)
    rm, cache = tracer.rm, tracer.cache
    eps = 1e-2

    def target_value(scale: float, cut: bool) -> float:
        resid0 = cache.resid0.detach()[0].clone()
        writes = [c.clone() for c in cache.mlp_outputs]
        if column >= tracer.sources.token_column(0):
            pos = column - tracer.sources.token_column(0)
            resid0[pos] += (scale - 1) * cache.token_embeddings[pos]
        elif column >= tracer.sources.n_features:
            src_layer, pos = divmod(column - tracer.sources.n_features, graph.n_pos)
            writes[src_layer][pos] += (scale - 1) * cache.errors[src_layer][pos]
        else:
            pytest.skip("the strongest crossing logit edge is a feature's; this check perturbs non-features")
        patterns = dict(cache.frozen.patterns)
        if cut:
            module_key = [k for k in patterns][layer]
            patterns[module_key] = patterns[module_key].clone()
            patterns[module_key][0, head, read.pos, key_pos] = 0.0
        saved = cache.frozen.patterns
        cache.frozen.patterns = patterns
        try:
            _, final = rm.replay(cache, resid0=resid0, writes=writes)
        finally:
            cache.frozen.patterns = saved
        return float(read.direction @ final[read.pos].float())

    moved = (target_value(1 + eps, False) - target_value(1.0, False)) / eps
    moved_cut = (target_value(1 + eps, True) - target_value(1.0, True)) / eps
    assert moved == pytest.approx(loadings.weight, rel=1e-3)
    assert moved - moved_cut == pytest.approx(part, rel=1e-3, abs=1e-6)


def test_qk_for_top_heads_reports_progress_and_checks_out(model_root: Path) -> None:
    lm, _, graph, tracer = _traced("gemma3", "clt_topk", model_root)
    calls: list[tuple[str, int, int]] = []
    results, loadings = qk_for_top_heads(
        tracer, graph, n_edges=6, n_heads=3, progress=lambda *a: calls.append(a)
    )
    assert len(results) == 3 and loadings
    assert {phase for phase, *_ in calls} == {"head_loadings", "qk"} and calls[-1] == ("qk", 3, 3)
    for result in results:
        expected = reference_score(
            lm.model, graph.token_ids, result.layer, result.head, result.query_pos, result.key_pos
        )
        assert abs(result.decomposed_score() - expected) <= 1e-4 * max(abs(expected), 1e-3)
    for item in loadings:
        assert abs(item.total() - item.weight) <= 1e-4 * max(abs(item.weight), 1e-3)
