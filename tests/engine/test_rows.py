"""How a dense row becomes stored edges: the cap, ties at the cap, and what is dropped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attrgraph.engine import TraceSettings
from attrgraph.engine.attribution import tokenize
from attrgraph.engine.replacement import ReplacementModel
from attrgraph.engine.rows import RowBuilder
from attrgraph.engine.targets import TargetSpec, select_targets
from tests.support.models import PROMPTS
from tests.support.transcoders import random_transcoders, tiny_lm


def _builder(root: Path, cap: int) -> RowBuilder:
    lm = tiny_lm("gpt2", root, torch.float32)
    cfg = lm.model.config
    tc = random_transcoders("relu", n_layers=cfg.num_hidden_layers, d_model=cfg.hidden_size, seed=1)
    rm = ReplacementModel(lm.model, tc)
    with torch.enable_grad():
        cache = rm.run(torch.tensor(tokenize(lm.tokenizer, PROMPTS[0])), exclude_positions=1, record=True)
    targets = select_targets(
        lm.tokenizer, cache.logits[-1], TargetSpec(), max_n_logits=2, desired_logit_prob=0.9
    )
    settings = TraceSettings(batch_size=4, max_edges_per_target=cap)
    return RowBuilder(rm, cache, targets, settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("reachable", [None, [6, 2, 6]], ids=["every-row-capped", "row-under-the-cap"])
def test_cap_keeps_the_largest_and_accounts_for_the_rest(
    model_root: Path, reachable: list[int] | None
) -> None:
    builder = _builder(model_root, cap=3)
    rows = torch.zeros(3, builder.n_cols)
    rows[0, :6] = torch.tensor([0.5, -4.0, 1.0, 3.0, -0.25, 2.0])  # more than the cap
    rows[1, [2, 7]] = torch.tensor([1.5, -1.0])  # fewer than the cap: all kept, nothing dropped
    rows[2, :5] = 1.0  # five-way tie at the cap: exactly three kept
    rows[2, 5] = -7.0
    builder._store(rows.clone(), [10, 11, 12], None if reachable is None else torch.tensor(reachable))
    pairs, vals = builder.edges.filled()
    keys, cols = pairs[:, 0], pairs[:, 1]
    kept: dict[int, dict[int, float]] = {k: {} for k in (10, 11, 12)}
    dense = {int(key): column for column, key in enumerate(builder.dense_to_key.tolist())}
    for key, col, val in zip(keys.tolist(), cols.tolist(), vals.tolist(), strict=True):
        kept[key][dense[col]] = val  # keyed by the dense column the row had it in
    assert kept[10] == {1: -4.0, 3: 3.0, 5: 2.0}
    assert kept[11] == {2: 1.5, 7: -1.0}
    assert len(kept[12]) == 3 and kept[12][5] == -7.0 and all(kept[12][c] == 1.0 for c in kept[12] if c != 5)
    for key, expected_dropped, expected_total in ((10, 1.25, 10.75), (11, 0.0, 2.5), (12, 3.0, 12.0)):
        _, total, dropped = builder.row_info[key]
        assert abs(dropped - expected_dropped) < 1e-6
        assert abs(total - expected_total) < 1e-6
