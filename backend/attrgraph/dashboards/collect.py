"""Streaming statistics of one layer's features over a corpus, in a fixed-size state per feature.

Whatever the corpus length, each feature keeps:

* its N_TOP best windows (the window's largest activation, one example per window, ties to the
  earliest window) with their contexts: the "Top activations";
* its N_TOP_TOKENS largest activations' tokens (which tokens it fires on most, for the label);
* a uniform sample of N_SAMPLES of its active positions with their contexts, for examples from the
  lower activation quantiles. The sample keeps the positions with the smallest hash keys of
  (window, position, feature, seed): the same positions whatever the batching, so a resumed build
  samples what an uninterrupted one does;
* counts, min, max and a log-spaced histogram (HIST_PER_OCTAVE bins per doubling) from which the
  quantiles and the dashboard histogram are read.

A context is CONTEXT_BEFORE tokens before the position to CONTEXT_AFTER after it, clipped to the
position's document (which starts at a `<bos>` when the tokenizer has one) and to real tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

N_TOP = 8
N_TOP_TOKENS = 50
N_SAMPLES = 32
CONTEXT_BEFORE = 16
CONTEXT_AFTER = 3
CONTEXT = CONTEXT_BEFORE + 1 + CONTEXT_AFTER
HIST_LOG2_MIN = -12  # activations below 2**-12 share the first bin, above 2**12 the last
HIST_PER_OCTAVE = 8
HIST_BINS = 24 * HIST_PER_OCTAVE
_OFFSETS = torch.arange(-CONTEXT_BEFORE, CONTEXT_AFTER + 1)


@dataclass(frozen=True)
class Batch:
    """Token windows: ids (B, T), valid (B, T) real tokens, each position's document bounds
    [start, end) (B, T), and the corpus-wide index of window 0."""

    ids: Tensor
    valid: Tensor
    starts: Tensor
    ends: Tensor
    first_window: int

    @classmethod
    def of(cls, ids: Tensor, valid: Tensor, bos_id: int | None, first_window: int) -> Batch:
        t = ids.shape[1]
        positions = torch.arange(t).expand_as(ids)
        if bos_id is None:
            starts, ends = torch.zeros_like(ids), torch.full_like(ids, t)
        else:
            bos = (ids == bos_id) & valid
            starts = torch.where(bos, positions, torch.zeros_like(positions)).cummax(dim=1).values
            # the next <bos> after each position (exclusive end of its document)
            later = torch.where(bos, positions, torch.full_like(positions, t))
            nxt = torch.cat([later[:, 1:], torch.full_like(later[:, :1], t)], dim=1)
            ends = nxt.flip(1).cummin(dim=1).values.flip(1)
        return cls(ids, valid, starts, ends, first_window)


def sample_keys(window: Tensor, pos: Tensor, feature: Tensor, seed: int) -> Tensor:
    """Uniform [0, 1) keys from a 32-bit integer hash of (window, position, feature, seed)."""
    mask = 0xFFFFFFFF
    h = (window * 0x9E3779B1 + pos * 0x85EBCA6B + feature * 0xC2B2AE35 + seed * 0x27D4EB2F) & mask
    for _ in range(3):
        h = ((h ^ (h >> 16)) * 0x45D9F3B) & mask
    h = h ^ (h >> 16)
    return h.double().div(2**32).float()


class LayerStats:
    """The streaming state of one layer's `d` features (see the module docstring)."""

    def __init__(self, d: int, seed: int = 0) -> None:
        self.d, self.seed = d, seed
        self.n_tokens = torch.zeros((), dtype=torch.long)
        self.n_active = torch.zeros(d, dtype=torch.long)
        self.act_min = torch.full((d,), float("inf"))
        self.act_max = torch.zeros(d)
        self.hist = torch.zeros(d, HIST_BINS, dtype=torch.int32)
        self.top = _Examples(d, N_TOP, fill=float("-inf"))
        self.tok_val = torch.full((d, N_TOP_TOKENS), float("-inf"))
        self.tok_id = torch.full((d, N_TOP_TOKENS), -1, dtype=torch.long)
        self.sample = _Examples(d, N_SAMPLES, fill=float("inf"))  # `key` holds the hash key

    def state_dict(self) -> dict[str, Tensor]:
        own = {k: getattr(self, k) for k in ("n_tokens", "n_active", "act_min", "act_max", "hist")}
        own |= {"tok_val": self.tok_val, "tok_id": self.tok_id}
        return own | self.top.state("top_") | self.sample.state("sample_")

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for k in ("n_tokens", "n_active", "act_min", "act_max", "hist", "tok_val", "tok_id"):
            setattr(self, k, state[k])
        self.top.load(state, "top_")
        self.sample.load(state, "sample_")

    @torch.no_grad()
    def update(self, acts: Tensor, batch: Batch) -> None:
        """Fold in one batch: acts (B, T, d) this layer's activations on `batch`'s windows."""
        acts = acts.detach().float().cpu()
        b_n, t_n, d = acts.shape
        acts = acts * batch.valid.unsqueeze(-1)
        active = acts > 0
        self.n_tokens += int(batch.valid.sum())
        self.n_active += active.sum((0, 1))
        positive = torch.where(active, acts, torch.full_like(acts, float("inf")))
        self.act_min = torch.minimum(self.act_min, positive.amin((0, 1)))
        self.act_max = torch.maximum(self.act_max, acts.amax((0, 1)))
        where = active.nonzero()  # (k, 3): window, position, feature
        values = acts[active]  # (k,) in the same order
        bins = ((values.log2() - HIST_LOG2_MIN) * HIST_PER_OCTAVE).floor().long().clamp(0, HIST_BINS - 1)
        flat_hist = self.hist.view(-1)
        flat_hist.index_add_(0, where[:, 2] * HIST_BINS + bins, torch.ones_like(bins, dtype=torch.int32))

        # Top activations: each window's largest activation (first position on ties)
        win_max, win_arg = acts.max(dim=1)  # (B, d)
        cand = torch.where(win_max > 0, win_max, torch.full_like(win_max, float("-inf"))).T  # (d, B)
        windows = torch.arange(b_n).expand(d, b_n)
        self.top.merge(cand, windows, win_arg.T, acts, batch, descending=True)

        # Tokens of the largest activations
        flat = torch.where(active, acts, torch.full_like(acts, float("-inf"))).view(b_n * t_n, d)
        k = min(N_TOP_TOKENS, b_n * t_n)
        # topk along a contiguous dimension: several times faster than along dim 0
        val, idx = flat.T.contiguous().topk(k, dim=1)  # (d, k)
        ids = batch.ids.reshape(-1)[idx]  # (d, k)
        all_val = torch.cat([self.tok_val, val], dim=1)
        order = all_val.sort(dim=1, descending=True, stable=True).indices[:, :N_TOP_TOKENS]
        self.tok_val = all_val.gather(1, order)
        self.tok_id = torch.cat([self.tok_id, ids], dim=1).gather(1, order)

        # Uniform sample of active positions: the smallest hash keys
        keys = torch.full((d, b_n * t_n), float("inf"))
        global_window = where[:, 0] + batch.first_window
        keys[where[:, 2], where[:, 0] * t_n + where[:, 1]] = sample_keys(
            global_window, where[:, 1], where[:, 2], self.seed
        )
        k = min(N_SAMPLES, b_n * t_n)
        kval, kidx = keys.topk(k, dim=1, largest=False)  # (d, k)
        self.sample.merge(kval, kidx // t_n, kidx % t_n, acts, batch, descending=False)


class _Examples:
    """k ranked examples per feature: rank key, window, position and context (token ids, acts)."""

    def __init__(self, d: int, k: int, fill: float) -> None:
        self.key = torch.full((d, k), fill)
        self.value = torch.zeros(d, k)
        self.window = torch.full((d, k), -1, dtype=torch.long)
        self.pos = torch.full((d, k), -1, dtype=torch.long)
        self.ids = torch.full((d, k, CONTEXT), -1, dtype=torch.long)
        self.acts = torch.zeros(d, k, CONTEXT)

    _FIELDS = ("key", "value", "window", "pos", "ids", "acts")

    def state(self, prefix: str) -> dict[str, Tensor]:
        return {prefix + f: getattr(self, f) for f in self._FIELDS}

    def load(self, state: dict[str, Tensor], prefix: str) -> None:
        for f in self._FIELDS:
            setattr(self, f, state[prefix + f])

    def merge(
        self, key: Tensor, window: Tensor, pos: Tensor, acts: Tensor, batch: Batch, descending: bool
    ) -> None:
        """Candidates key/window/pos (d, n) from `batch` (window is the batch row) compete with the
        kept ones; ties go to the kept ones, then to the earlier candidate."""
        d, k = self.key.shape
        all_key = torch.cat([self.key, key], dim=1)
        order = all_key.sort(dim=1, descending=descending, stable=True).indices[:, :k]  # (d, k)
        new = order >= k
        cand = (order - k).clamp_min(0)
        row = window.gather(1, cand)  # (d, k) batch rows of the new ones
        at = pos.gather(1, cand)
        features = torch.arange(d).unsqueeze(1).expand(d, k)
        ids, ctx_acts = _contexts(acts, batch, row, at, features)
        kept = order.clamp_max(k - 1)
        self.key = all_key.gather(1, order)
        self.value = torch.where(new, acts[row, at, features], self.value.gather(1, kept))
        self.window = torch.where(new, row + batch.first_window, self.window.gather(1, kept))
        self.pos = torch.where(new, at, self.pos.gather(1, kept))
        pick = kept.unsqueeze(-1).expand(d, k, CONTEXT)
        self.ids = torch.where(new.unsqueeze(-1), ids, self.ids.gather(1, pick))
        self.acts = torch.where(new.unsqueeze(-1), ctx_acts, self.acts.gather(1, pick))


def _contexts(acts: Tensor, batch: Batch, row: Tensor, pos: Tensor, feature: Tensor) -> tuple[Tensor, Tensor]:
    """Token ids (-1 outside the document) and this feature's activations around each (row, pos):
    all (d, k) -> (d, k, CONTEXT)."""
    t_n = batch.ids.shape[1]
    t = pos.unsqueeze(-1) + _OFFSETS  # (d, k, C)
    r = row.unsqueeze(-1).expand_as(t)
    tc = t.clamp(0, t_n - 1)
    start = batch.starts[row, pos].unsqueeze(-1)
    end = batch.ends[row, pos].unsqueeze(-1)
    inside = (t >= start) & (t < end) & (t >= 0) & (t < t_n) & batch.valid[r, tc]
    ids = torch.where(inside, batch.ids[r, tc], torch.full_like(tc, -1))
    values = torch.where(inside, acts[r, tc, feature.unsqueeze(-1).expand_as(t)], torch.zeros(()))
    return ids, values
