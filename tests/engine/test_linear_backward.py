"""The written-out backward pass (engine/linear_backward.py) against autograd.

For every family (GPT-2's fused qkv and LayerNorm, GQA, Gemma's post-attention norm and offset
gains, q/k norms) and every transcoder kind (input site, skip connection, cross-layer), the
gradients at resid0 and at every write site must be autograd's, for logit targets and for batches
of feature targets at mixed positions; and trace() must actually take this path, not fall back.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attrgraph.engine import TraceSettings, trace
from attrgraph.engine.attribution import tokenize
from attrgraph.engine.linear_backward import LinearBackward
from attrgraph.engine.replacement import ReplacementModel
from attrgraph.engine.rows import RowBuilder
from attrgraph.engine.targets import TargetSpec, select_targets
from tests.support.models import FAMILIES, PROMPTS
from tests.support.transcoders import TRANSCODER_KINDS, random_transcoders, tiny_lm


def _builder(family: str, kind: str, root: Path) -> RowBuilder:
    lm = tiny_lm(family, root, torch.float32)
    cfg = lm.model.config
    tc = random_transcoders(
        kind, n_layers=cfg.num_hidden_layers, d_model=cfg.hidden_size, seed=7, dtype=torch.float32
    )
    rm = ReplacementModel(lm.model, tc)
    ids = tokenize(lm.tokenizer, PROMPTS[2])
    with torch.enable_grad():
        cache = rm.run(torch.tensor(ids), exclude_positions=1, record=True)
    targets = select_targets(
        lm.tokenizer, cache.logits[-1], TargetSpec(), max_n_logits=3, desired_logit_prob=0.9
    )
    return RowBuilder(rm, cache, targets, TraceSettings(batch_size=8))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", TRANSCODER_KINDS)
@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_equal_autograd(family: str, kind: str, model_root: Path) -> None:
    builder = _builder(family, kind, model_root)
    assert builder.backward is not None, "the layout should be known and agree with autograd"
    cases = [(builder.n_layers, torch.full((3,), builder.n_pos - 1), builder.directions[:3])]
    gen = torch.Generator().manual_seed(0)
    for layer in range(builder.n_layers):
        # Random read directions at mixed positions (the last position excluded, so `last` trims).
        positions = torch.randint(1, builder.n_pos - 1, (5,), generator=gen)
        vectors = torch.randn(5, builder.rm.adapter.d_model, generator=gen)
        cases.append((layer, positions, vectors))
    for layer, positions, vectors in cases:
        last = int(positions.max()) + 1
        expected = builder._autograd_gradients(layer, positions, vectors, last)
        actual = builder.backward.gradients(layer, positions, vectors, last)
        assert len(actual) == len(expected) == layer + 1
        for a, e in zip(actual, expected, strict=True):
            assert a.shape == e.shape
            scale = float(e.abs().max())
            assert scale > 0
            assert float((a - e).abs().max()) <= 2e-5 * scale


@pytest.mark.parametrize("family", FAMILIES)
def test_trace_takes_the_linear_path(family: str, model_root: Path) -> None:
    lm = tiny_lm(family, model_root, torch.float32)
    cfg = lm.model.config
    tc = random_transcoders(
        "jumprelu_skip", n_layers=cfg.num_hidden_layers, d_model=cfg.hidden_size, seed=3, dtype=torch.float32
    )
    graph = trace(lm, tc, PROMPTS[0], settings=TraceSettings(batch_size=16))
    assert graph.stats["backward"] == "linear"


def test_unknown_layout_falls_back_to_autograd_with_the_same_graph(
    model_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = tiny_lm("llama", model_root, torch.float32)
    cfg = lm.model.config
    tc = random_transcoders(
        "relu", n_layers=cfg.num_hidden_layers, d_model=cfg.hidden_size, seed=5, dtype=torch.float32
    )
    settings = TraceSettings(batch_size=16, max_edges_per_target=None)
    fast = trace(lm, tc, PROMPTS[1], settings=settings)
    monkeypatch.setattr(LinearBackward, "build", classmethod(lambda cls, *args: None))
    slow = trace(lm, tc, PROMPTS[1], settings=settings)
    assert (fast.stats["backward"], slow.stats["backward"]) == ("linear", "autograd")
    assert torch.equal(fast.edges, slow.edges)
    assert torch.allclose(fast.weights, slow.weights, rtol=1e-4, atol=1e-5 * float(slow.weights.abs().max()))


def test_a_disagreeing_backward_is_not_used(model_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = LinearBackward.gradients

    def skewed(self: LinearBackward, *args: object) -> list[torch.Tensor]:
        return [g * 1.01 for g in original(self, *args)]  # type: ignore[arg-type]

    monkeypatch.setattr(LinearBackward, "gradients", skewed)
    builder = _builder("gemma2", "relu", model_root)
    assert builder.backward is None


def test_weights_that_require_grad_trace_to_plain_numbers(model_root: Path) -> None:
    """A model or transcoders being trained (the demo build traces them) leave no autograd history
    in the graph, on either path."""
    lm = tiny_lm("gpt2", model_root, torch.float32)
    cfg = lm.model.config
    tc = random_transcoders(
        "jumprelu_skip", n_layers=cfg.num_hidden_layers, d_model=cfg.hidden_size, seed=9, dtype=torch.float32
    )
    for parameter in lm.model.parameters():
        parameter.requires_grad_(True)
    for layer in range(tc.n_layers):
        for tensor in vars(tc.layer(layer)).values():
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                tensor.requires_grad_(True)
    try:
        graph = trace(lm, tc, PROMPTS[0], settings=TraceSettings(batch_size=16, max_edges_per_target=64))
    finally:
        for parameter in lm.model.parameters():
            parameter.requires_grad_(False)
    assert graph.stats["backward"] == "linear"
    assert not graph.weights.requires_grad and graph.weights.numel() > 0
