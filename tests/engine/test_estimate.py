"""engine/estimate.py and engine/batching.py: the estimate's shape, the batch chosen from memory,
and the halving retry on an out-of-memory error (raised here by a patched RowBuilder.run)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from attrgraph.engine import TraceSettings, batching, trace
from attrgraph.engine.estimate import TraceShape, choose_batch_size, device_budget, estimate, trace_shape
from attrgraph.engine.replacement import ReplacementModel
from attrgraph.engine.rows import RowBuilder
from tests.support.models import PROMPTS
from tests.support.transcoders import random_transcoders, tiny_lm

SHAPE = TraceShape(
    n_layers=26,
    d_model=2304,
    n_heads=8,
    model_bytes=10 * 2**30,
    transcoder_bytes=8 * 2**30,
    d_transcoder=16384,
    cross_layer=False,
    active_per_token=60.0,
    device="cuda",
)


def test_estimate_grows_with_prompt_nodes_and_batch() -> None:
    base = TraceSettings(max_feature_nodes=4096, batch_size=64, pass_memory_mb=None)
    sizes = [estimate(SHAPE, n, base).peak_bytes for n in (16, 64, 256, 1024, 2048)]
    assert sizes == sorted(sizes) and sizes[0] > SHAPE.model_bytes + SHAPE.transcoder_bytes
    more_nodes = estimate(SHAPE, 1024, replace(base, max_feature_nodes=16384))
    bigger_batch = estimate(SHAPE, 1024, replace(base, batch_size=256))
    assert more_nodes.peak_bytes > sizes[3] and bigger_batch.peak_bytes > sizes[3]
    # With the per-pass cap, a bigger batch runs as more passes: its memory stops growing at the cap.
    capped = replace(base, pass_memory_mb=1024)
    batch_terms = [estimate(SHAPE, 1024, capped, batch_size=b).memory_terms["batch"] for b in (1, 64, 256)]
    assert batch_terms[0] < batch_terms[1] == batch_terms[2] <= 1024 * 2**20
    times = [estimate(SHAPE, n, base).seconds for n in (256, 1024, 2048)]
    assert times == sorted(times)
    # Prompts longer than 2 x d_model: the attention mix of the backward passes (positions^2 per
    # row) dominates the time; shorter ones, the projections (positions x d_model^2 per row).
    assert estimate(SHAPE, 2048, base).dominant_time.startswith("projections")
    assert estimate(replace(SHAPE, d_model=576), 2048, base).dominant_time.startswith("attention")


def test_a_trace_that_does_not_fit_says_which_setting_to_change() -> None:
    settings = TraceSettings(max_feature_nodes=None, batch_size=64)
    found = estimate(SHAPE, 2048, settings, budget_bytes=40 * 2**30)
    assert found.fits is False
    assert found.dominant_memory == "edges"
    assert "max_feature_nodes" in found.refusal() and "GiB" in found.refusal()
    assert found.to_dict()["advice"] == found.advice()
    small = estimate(SHAPE, 16, settings, budget_bytes=40 * 2**30)
    assert small.fits is True and small.to_dict()["advice"] is None
    assert estimate(SHAPE, 16, settings).fits is None  # no budget: unknown


def test_the_chosen_batch_is_the_largest_that_fits() -> None:
    settings = TraceSettings(max_feature_nodes=4096, pass_memory_mb=None)
    at = {b: estimate(SHAPE, 1024, settings, batch_size=b).peak_bytes for b in (8, 16, 256)}
    budget = int((at[8] + at[16]) / 2 / 0.9)  # 8 fits the headroom, 16 does not
    assert choose_batch_size(SHAPE, 1024, settings, budget) == 8
    assert choose_batch_size(SHAPE, 1024, settings, 10 * at[256]) == 256  # CUDA's ceiling
    assert choose_batch_size(SHAPE, 1024, settings, None) == 256
    assert choose_batch_size(replace(SHAPE, device="cpu"), 1024, settings, None) == 64
    assert choose_batch_size(SHAPE, 1024, settings, 1) == 1  # nothing fits: the smallest
    assert estimate(SHAPE, 1024, settings, budget_bytes=budget).batch_size == 8


def test_device_budget_on_cpu() -> None:
    budget = device_budget("cpu")
    assert budget is None or budget > 2**20


def _pair(root: Path) -> tuple[Any, Any]:
    lm = tiny_lm("llama", root, torch.float32)
    cfg = lm.model.config
    tc = random_transcoders("relu", n_layers=cfg.num_hidden_layers, d_model=cfg.hidden_size, seed=5)
    return lm, tc


def test_the_shape_of_a_loaded_pair(model_root: Path) -> None:
    lm, tc = _pair(model_root)
    ids = [int(i) for i in lm.tokenizer(PROMPTS[2])["input_ids"]]
    shape = trace_shape(lm.model, tc, ids)
    cache = ReplacementModel(lm.model, tc).run(torch.tensor(ids), exclude_positions=1)
    n_active = sum(int(a.features.numel()) for a in cache.activations)
    assert shape.active_per_token == pytest.approx(n_active / ((len(ids) - 1) * tc.n_layers))
    assert shape.n_layers == tc.n_layers and shape.d_transcoder == tc.d_transcoder
    assert shape.model_bytes == sum(p.numel() * 4 for p in lm.model.parameters()) + sum(
        b.numel() * b.element_size() for b in lm.model.buffers()
    )
    assert shape.device == "cpu" and estimate(shape, len(ids), TraceSettings()).peak_bytes > 0


def _fail_above(limit: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """RowBuilder.run raises an out-of-memory error for batches above `limit`; returns the sizes tried."""
    tried: list[int] = []
    real_run = RowBuilder.run

    def run(self: RowBuilder, report: Any) -> None:
        tried.append(self.settings.batch_size)
        if self.settings.batch_size > limit:
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")
        real_run(self, report)

    monkeypatch.setattr(RowBuilder, "run", run)
    return tried


def test_out_of_memory_halves_the_batch_and_explores_the_same_features(
    model_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm, tc = _pair(model_root)
    settings = TraceSettings(max_feature_nodes=12, batch_size=16, update_interval=1)
    expected = trace(lm, tc, PROMPTS[2], settings=settings)
    tried = _fail_above(4, monkeypatch)
    graph = trace(lm, tc, PROMPTS[2], settings=settings)
    assert tried == [16, 8, 4]
    assert graph.settings["batch_size"] == 4 and graph.settings["update_interval"] == 4
    # Re-ranking every batch x interval rows, as before: the same features become nodes.
    assert torch.equal(graph.features, expected.features)
    assert torch.equal(graph.edges, expected.edges)
    assert torch.allclose(graph.weights, expected.weights, rtol=1e-5, atol=1e-7)


def test_out_of_memory_at_batch_one_is_raised(model_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lm, tc = _pair(model_root)
    tried = _fail_above(0, monkeypatch)
    with pytest.raises(torch.OutOfMemoryError):
        trace(lm, tc, PROMPTS[2], settings=TraceSettings(max_feature_nodes=4, batch_size=2))
    assert tried == [2, 1]


def test_the_default_batch_is_chosen_from_free_memory(
    model_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm, tc = _pair(model_root)
    roomy = trace(lm, tc, PROMPTS[2], settings=TraceSettings(max_feature_nodes=12))
    assert roomy.settings["batch_size"] == 64 and roomy.settings["update_interval"] == 4  # CPU ceiling
    monkeypatch.setattr(batching, "device_budget", lambda device: 1)  # nothing fits: batch of one
    tight = trace(lm, tc, PROMPTS[2], settings=TraceSettings(max_feature_nodes=12))
    assert tight.settings["batch_size"] == 1 and tight.settings["update_interval"] == 256
    assert torch.equal(tight.features, roomy.features)
