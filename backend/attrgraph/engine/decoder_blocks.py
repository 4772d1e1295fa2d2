"""The sources' side of the edge products: every source layer's write vectors, padded per position.

An edge weight is a source's write vector dotted with the target's gradient at the source's own
position. Grouping the writes by position, padded to the most sources at any one position, makes
that one batched matmul per source layer (per output layer for a cross-layer set), errors included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from attrgraph.engine.transcoders.base import TranscoderSet


@dataclass
class PaddedDecoders:
    """One source layer's write vectors, padded per position: slot 0 holds the error vector (which
    writes to its own layer only), slots 1.. the active features' decoder vectors scaled by activation.

    blocks: (pos, 1 + max_per_pos, n_out, d_model). Grouping by position turns "dot every source's
    write with the gradient at its own position" into one batched matmul per output layer, errors
    included.
    """

    blocks: Tensor
    positions: Tensor  # (n,) position of each active feature (non-decreasing)
    slots: Tensor  # (n,) its slot within that position (>= 1)
    before: Tensor  # (pos + 1,) features at positions < p

    @classmethod
    @torch.no_grad()
    def build(cls, tc: TranscoderSet, layer: int, acts: Any, error: Tensor, n_pos: int) -> PaddedDecoders:
        n = int(acts.features.shape[0])
        n_out = int(tc.layer(layer).W_dec.shape[1])  # 1, or n_layers - layer for a cross-layer set
        counts = torch.bincount(acts.positions, minlength=n_pos)
        width = 1 + (int(counts.max()) if n else 0)
        blocks = error.new_zeros((n_pos, width, n_out, error.shape[-1]))
        blocks[:, 0, 0] = error
        starts = counts.cumsum(0) - counts
        slots = torch.arange(n, device=acts.positions.device) - starts[acts.positions] + 1
        if n:
            scaled = tc.decoder_vectors(layer, acts.features).float() * acts.values.float()[:, None, None]
            blocks[acts.positions, slots] = scaled[:, :n_out]
        before = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        return cls(blocks, acts.positions, slots, before)

    def edges(self, grads: list[Tensor], last: int) -> tuple[Tensor, Tensor]:
        """grads[o]: (last, B, d_model) at output layer source+o -> edge weights from the features
        at positions < last (n, B) and from the errors (last, B)."""
        total: Tensor | None = None
        for o, g in enumerate(grads[: self.blocks.shape[2]]):
            # (last, slots, d) @ (last, d, B) -> (last, slots, B): each edge row is a contiguous B.
            part = torch.bmm(self.blocks[:last, :, o], g.transpose(1, 2))
            total = part if total is None else total.add_(part)
        assert total is not None
        n = int(self.before[last])
        return total[self.positions[:n], self.slots[:n]], total[:, 0]
