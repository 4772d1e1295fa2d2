"""engine/row_buffers.py: the edge store grows without losing what it holds; the workspace reuses."""

from __future__ import annotations

import torch

from attrgraph.engine.row_buffers import EdgeStore, Workspace, nonzero_entries


def test_edge_store_grows_past_its_first_bound_and_keeps_every_edge() -> None:
    store = EdgeStore(bound=3)
    store.append(torch.tensor([7, 7]), torch.tensor([1, 4]), torch.tensor([0.5, -1.0]))
    store.append(torch.tensor([9, 9, 9, 9, 9]), torch.arange(5), torch.arange(5, dtype=torch.float32))
    pairs, weights = store.filled()
    assert store.pairs.shape[0] >= 7 and pairs.shape == (7, 2)
    assert pairs.tolist() == [[7, 1], [7, 4], [9, 0], [9, 1], [9, 2], [9, 3], [9, 4]]
    assert weights.tolist() == [0.5, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0]


def test_workspace_reuses_a_buffer_until_a_larger_one_is_asked_for() -> None:
    space = Workspace()
    first = space.get("rows", (4, 8), torch.float32, torch.device("cpu"))
    smaller = space.get("rows", (2, 8), torch.float32, torch.device("cpu"))
    assert smaller.data_ptr() == first.data_ptr() and smaller.shape == (2, 8)
    larger = space.get("rows", (8, 8), torch.float32, torch.device("cpu"))
    assert larger.shape == (8, 8) and larger.is_contiguous()
    assert space.get("keep", (2, 8), torch.bool, torch.device("cpu")).dtype == torch.bool


def test_nonzero_entries_are_row_major() -> None:
    matrix = torch.tensor([[0.0, 2.0, 0.0], [3.0, 0.0, 4.0]])
    flat, rows, cols = nonzero_entries(matrix)
    assert rows.tolist() == [0, 1, 1] and cols.tolist() == [1, 0, 2]
    assert matrix.view(-1)[flat].tolist() == [2.0, 3.0, 4.0]
