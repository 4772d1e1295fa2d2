"""Exactness for every published layout: files written in that layout, loaded by load_transcoders,
then the replacement model reproduces the logits and every graph row is complete (as test_attribution)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from attrgraph.engine import TraceSettings, trace
from attrgraph.engine.replacement import ReplacementModel
from attrgraph.engine.transcoders import Activation, TranscoderSet, load_transcoders
from tests.support.checks import completeness_errors
from tests.support.layouts import write_gemma_scope2, write_global_topk, write_topk_plt
from tests.support.models import PROMPTS
from tests.support.transcoders import TinyLM, tiny_lm

EXACT = TraceSettings(max_edges_per_target=None, batch_size=32)


def _topk_with_k(directory: Path, n_layers: int, d_model: int) -> None:
    write_topk_plt(directory, n_layers=n_layers, d_model=d_model)
    config = yaml.safe_load((directory / "config.yaml").read_text())
    (directory / "config.yaml").write_text(yaml.safe_dump({**config, "k": 8}))  # hub copies get 128


Writer = Callable[[Path, int, int], object]
LAYOUTS: dict[str, tuple[str, Writer, Activation]] = {
    # layout: (family, writer(directory, n_layers, d_model), activation it must load as)
    "gemma_scope2_plt": (
        "gemma3",
        lambda d, n, m: write_gemma_scope2(d, n_layers=n, d_model=m),
        Activation.JUMPRELU,
    ),
    "gemma_scope2_clt": (
        "gemma3",
        lambda d, n, m: write_gemma_scope2(d, n_layers=n, d_model=m, cross_layer=True),
        Activation.JUMPRELU,
    ),
    "global_topk_clt": (
        "qwen3",
        lambda d, n, m: write_global_topk(d, n_layers=n, d_model=m),
        Activation.GLOBAL_TOPK,
    ),
    "topk_plt": ("llama", _topk_with_k, Activation.TOPK),
}


def _setup(layout: str, model_root: Path, tmp_path: Path) -> tuple[TinyLM, TranscoderSet]:
    family, write, activation = LAYOUTS[layout]
    lm = tiny_lm(family, model_root)
    cfg = lm.model.config
    write(tmp_path / layout, cfg.num_hidden_layers, cfg.hidden_size)
    tc = load_transcoders(tmp_path / layout)
    assert tc.activation is activation
    return lm, tc


@pytest.mark.parametrize("layout", LAYOUTS)
def test_replacement_model_reproduces_logits(layout: str, model_root: Path, tmp_path: Path) -> None:
    lm, tc = _setup(layout, model_root, tmp_path)
    ids = torch.tensor(lm.tokenizer(PROMPTS[0])["input_ids"])
    original = lm.model(input_ids=ids[None]).logits[0].float()
    rm = ReplacementModel(lm.model, tc)
    cache = rm.run(ids, exclude_positions=1)
    assert (rm.replacement_logits(cache) - original).abs().max() <= 1e-4
    assert (cache.logits - original).abs().max() <= 1e-4
    assert sum(int(a.values.numel()) for a in cache.activations) > 0


@pytest.mark.parametrize("layout", LAYOUTS)
def test_completeness(layout: str, model_root: Path, tmp_path: Path) -> None:
    lm, tc = _setup(layout, model_root, tmp_path)
    graph = trace(lm, tc, PROMPTS[1], settings=EXACT)
    assert graph.n_features > 10
    assert graph.unexplored.abs().max() == 0
    assert completeness_errors(graph).max() <= 1e-4
