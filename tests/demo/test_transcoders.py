"""The committed transcoders: circuit-tracer layout, and good stand-ins for the MLPs on fresh text."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor
from transformers import PreTrainedTokenizerFast

from attrgraph.bundled import demo_transcoders_dir
from attrgraph.demo.corpus import World, generate_documents
from attrgraph.demo.evaluate import transcoder_metrics
from attrgraph.demo.tokenizer import PAD
from attrgraph.demo.train_model import encode_documents, pack_documents
from attrgraph.demo.train_transcoders import collect_mlp_activations
from attrgraph.engine.models import LoadedModel
from attrgraph.engine.transcoders.base import Activation, TranscoderSet


@pytest.fixture(scope="module")
def fresh_activations(demo_lm: LoadedModel, demo_world: World) -> tuple[list[Tensor], list[Tensor]]:
    """MLP inputs and outputs on documents neither the model nor the transcoders were trained on."""
    docs = generate_documents(demo_world, 600, seed=12345)
    tokenizer = demo_lm.tokenizer
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    pad = tokenizer.convert_tokens_to_ids(PAD)
    assert isinstance(pad, int)
    ids, _ = pack_documents(encode_documents(docs, tokenizer), demo_lm.model.config.n_positions, pad)
    return collect_mlp_activations(demo_lm.model, ids, torch.ne(ids, pad), show_progress=False)


def test_layout(demo_tc: TranscoderSet, demo_lm: LoadedModel) -> None:
    assert (demo_transcoders_dir() / "config.yaml").exists()
    assert demo_tc.n_layers == demo_lm.model.config.n_layer
    assert demo_tc.d_model == demo_lm.model.config.n_embd
    assert demo_tc.d_transcoder == 8 * demo_tc.d_model
    assert demo_tc.activation is Activation.JUMPRELU
    assert not demo_tc.cross_layer


def _linear_baseline(x: Tensor, y: Tensor, rank: int) -> float:
    """Variance explained by the best rank-`rank` affine map from the MLP input to its output
    (least squares, then truncated): what a dense model with as many units as the L0 achieves."""
    x1 = torch.cat([x, torch.ones(len(x), 1)], 1).double()
    w = torch.linalg.lstsq(x1, y.double()).solution  # (d_model + 1, d_model)
    pred = x1 @ w
    u, s, vh = torch.linalg.svd(pred - pred.mean(0), full_matrices=False)
    pred_k = (u[:, :rank] * s[:rank]) @ vh[:rank] + pred.mean(0)
    return float(1 - (y.double() - pred_k).pow(2).sum() / (y.double() - y.double().mean(0)).pow(2).sum())


def test_quality_on_fresh_text(
    demo_tc: TranscoderSet, fresh_activations: tuple[list[Tensor], list[Tensor]], demo_metrics: dict[str, Any]
) -> None:
    x, y = fresh_activations
    rows = transcoder_metrics(demo_tc, x, y)
    k = demo_metrics["transcoder_config"]["k"]
    for row, committed in zip(rows, demo_metrics["transcoders"], strict=True):
        layer = int(row["layer"])
        # better than a dense linear map with as many dimensions as active features, and at least 0.7
        bar = max(0.7, _linear_baseline(x[layer], y[layer], int(k)))
        assert row["variance_explained"] >= bar, (row, bar)
        assert 0.5 * k <= row["l0"] <= 2 * k, row
        # dead (never fires on the 150k training tokens): the toy world needs far fewer than 8 x d_model
        # features, but at least half of the dictionary must be alive
        assert committed["dead_fraction"] <= 0.5, committed
        assert row["dead_fraction"] <= committed["dead_fraction"] + 0.15, row  # silent on this sample
        # the model card's numbers (measured on another held-out sample) reproduce
        assert row["variance_explained"] == pytest.approx(committed["variance_explained"], abs=0.05)
        assert row["l0"] == pytest.approx(committed["l0"], rel=0.3)
