"""QK attributions: pairs + one-sided bias terms + bias == the head's score recomputed from the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from attrgraph.engine import TraceSettings, trace
from attrgraph.engine.attention import AttentionTracer, QKAttribution
from tests.support.attention_reference import reference_score
from tests.support.models import FAMILIES, PROMPTS
from tests.support.transcoders import TRANSCODER_KINDS, TinyLM, random_transcoders, tiny_lm

EXACT = TraceSettings(max_edges_per_target=None, batch_size=32)


def _setup(family: str, kind: str, root: Path) -> tuple[TinyLM, Any]:
    lm = tiny_lm(family, root)
    cfg = lm.model.config
    tc = random_transcoders(kind, n_layers=cfg.num_hidden_layers, d_model=cfg.hidden_size, seed=7)
    return lm, tc


def _relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-6)


@pytest.mark.parametrize("kind", TRANSCODER_KINDS)
@pytest.mark.parametrize("family", FAMILIES)
def test_qk_terms_sum_to_the_models_own_score(family: str, kind: str, model_root: Path) -> None:
    lm, tc = _setup(family, kind, model_root)
    ids = [int(i) for i in lm.tokenizer(PROMPTS[2])["input_ids"]]
    tracer = AttentionTracer(lm.model, tc, ids, exclude_positions=1)
    n_pos, n_layers = len(ids), lm.model.config.num_hidden_layers
    # Both layers, a head on each key/value head (GQA), a far and a near key (sliding windows).
    cases = [(1, 3, n_pos - 1, 2), (1, 0, n_pos - 1, n_pos - 2), (0, 1, n_pos - 4, n_pos - 6), (0, 2, 5, 5)]
    assert all(layer < n_layers for layer, *_ in cases)
    for layer, head, q_pos, k_pos in cases:
        result = tracer.qk(layer, head, q_pos, k_pos)
        expected = reference_score(lm.model, ids, layer, head, q_pos, k_pos)
        assert _relative(result.score, expected) <= 1e-4
        assert _relative(result.decomposed_score(), expected) <= 1e-4
        # the marginals are a second exact reading: q-side totals + q's bias with all of k
        k_total = result.k_parts.double().sum(0) + result.k_bias.double()
        with_q_bias = result.scale * float(result.q_bias.double() @ k_total)
        assert _relative(float(result.q_marginals.sum()) + with_q_bias, expected) <= 1e-4
        assert result.pairs.abs().max() > 0
        # sources come from every earlier position, not only the query's own
        q_positions = {int(n.rsplit("_", 1)[1]) for n in result.q_nodes}
        assert max(q_positions) == q_pos and (layer == 0 or len(q_positions) > 1)


def test_gemma2_soft_capping_is_applied_after_the_split(model_root: Path) -> None:
    lm, tc = _setup("gemma2", "relu", model_root)
    ids = [int(i) for i in lm.tokenizer(PROMPTS[0])["input_ids"]]
    result = AttentionTracer(lm.model, tc, ids, exclude_positions=1).qk(1, 2, len(ids) - 1, 1)
    cap = lm.model.config.attn_logit_softcapping
    assert result.softcap == cap
    assert result.softcapped_score == pytest.approx(cap * torch.tanh(torch.tensor(result.score / cap)).item())


def test_to_dict_has_neuronpedias_shape(model_root: Path) -> None:
    lm, tc = _setup("llama", "clt_topk", model_root)
    graph = trace(lm, tc, PROMPTS[0], settings=TraceSettings(max_feature_nodes=8))
    tracer = AttentionTracer.for_graph(lm.model, tc, graph, bos_token_id=lm.tokenizer.bos_token_id)
    result: QKAttribution = tracer.qk(1, 1, graph.n_pos - 1, 1)
    out = result.to_dict(top=5)
    qk = out["qk_tracing_results"]
    assert len(qk["pair_wise_contributors"]) == 5 and len(qk["top_q_marginal_contributors"]) == 5
    q_id, k_id, value = qk["pair_wise_contributors"][0]
    assert isinstance(q_id, str) and isinstance(k_id, str)
    assert abs(value) == pytest.approx(float(result.pairs.abs().max()))
    pairs_abs = [abs(v) for *_, v in qk["pair_wise_contributors"]]
    assert pairs_abs == sorted(pairs_abs, reverse=True)
    for key in ("layer", "head", "query_pos", "key_pos", "score", "bias"):
        assert key in out
    total = out["pairs_total"] + out["q_bias_terms"] + out["k_bias_terms"] + out["bias"]
    assert _relative(total, out["score"]) <= 1e-4
    # 8 feature nodes out of many active ones: some contributors live outside the graph
    graph_ids = {graph.node_id(i) for i in range(graph.n_nodes)}
    referenced = {n for n, _ in qk["top_q_marginal_contributors"] + qk["top_k_marginal_contributors"]}
    referenced |= {p[0] for p in qk["pair_wise_contributors"]} | {p[1] for p in qk["pair_wise_contributors"]}
    only = {node["node_id"] for node in out["qk_only_nodes"]}
    assert only and only == referenced - graph_ids
    assert all(node["is_from_qk_tracing"] for node in out["qk_only_nodes"])
