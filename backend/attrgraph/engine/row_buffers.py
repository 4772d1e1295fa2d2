"""Where a trace's rows live while they are built: reused dense buffers and the kept edges.

On CPU, a fresh multi-megabyte tensor costs more in page faults than in the arithmetic done on it,
so each pass's dense rows reuse one workspace, and kept edges are written once, straight into the
layout the graph keeps.
"""

from __future__ import annotations

import torch
from torch import Tensor


class EdgeStore:
    """Kept edges as rows are computed, already in the graph's layout: (n, 2) int64 [target key,
    source column] pairs and float32 weights, so the graph is built in place rather than by
    concatenating copies (each a fresh gigabyte at tens of millions of edges: memory and page faults).

    The first buffers are sized from an upper bound on the trace's edges (at most INITIAL_EDGES):
    pages never written cost no memory. A buffer that fills up is replaced by one twice as large.
    """

    INITIAL_EDGES = 1 << 26

    def __init__(self, bound: int) -> None:
        capacity = max(1, min(bound, self.INITIAL_EDGES))
        self.pairs = torch.empty((capacity, 2), dtype=torch.long)
        self.weights = torch.empty(capacity)
        self.size = 0

    def append(self, keys: Tensor, cols: Tensor, vals: Tensor) -> None:
        end = self.size + int(cols.numel())
        if end > self.pairs.shape[0]:
            capacity = max(end, 2 * int(self.pairs.shape[0]))
            pairs, weights = torch.empty((capacity, 2), dtype=torch.long), torch.empty(capacity)
            pairs[: self.size] = self.pairs[: self.size]
            weights[: self.size] = self.weights[: self.size]
            self.pairs, self.weights = pairs, weights
        self.pairs[self.size : end, 0] = keys
        self.pairs[self.size : end, 1] = cols
        self.weights[self.size : end] = vals
        self.size = end

    def filled(self) -> tuple[Tensor, Tensor]:
        """Views of the stored pairs (n, 2) and weights (n,)."""
        return self.pairs[: self.size], self.weights[: self.size]


class Workspace:
    """Buffers reused by every backward pass of a trace, as views of the size each pass needs.

    A fresh multi-megabyte tensor per pass costs more in page faults than in arithmetic on CPU: the
    allocator hands large blocks back to the system when they are freed and gets zeroed pages
    again for the next pass.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        size = 1
        for extent in shape:
            size *= extent
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size or buffer.dtype != dtype or buffer.device != device:
            self._buffers.pop(name, None)  # freed before the larger one is allocated
            buffer = self._buffers[name] = torch.empty(size, dtype=dtype, device=device)
        return buffer[:size].view(shape)

    def clear(self) -> None:
        self._buffers.clear()


def nonzero_entries(matrix: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Flat indices, rows and columns of a contiguous matrix's nonzero entries, row-major (rows stay
    together): one flat nonzero, cheaper than the two-column form."""
    flat = matrix.view(-1).nonzero().squeeze(1)
    rows = torch.div(flat, matrix.shape[1], rounding_mode="floor")
    return flat, rows, flat - rows * matrix.shape[1]
