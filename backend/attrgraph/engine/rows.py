"""The rows of an attribution graph, from one cached forward pass of the replacement model.

A batch of targets is one backward pass with `is_grads_batched`: each batch row injects one target's
read direction at its (layer, position), and the gradients at the write sites dotted with what each
source wrote there are the edge weights. Rows are kept sparse; what a row drops is recorded, so
edges + bias + unexplored still sum to the target's value. One class holds the build state (keys,
rows, visited features) because exploration, storage and the final graph all share it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from attrgraph.engine.graph import Graph, LogitTarget
from attrgraph.engine.replacement import ForwardCache, ReplacementModel
from attrgraph.engine.targets import target_biases, target_directions
from attrgraph.engine.transcoders.base import TranscoderSet

ProgressCallback = Callable[[str, int, int], None]


class RowSettings(Protocol):
    """The parts of `attribution.TraceSettings` the rows depend on."""

    @property
    def max_feature_nodes(self) -> int | None: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def max_edges_per_target(self) -> int | None: ...
    @property
    def update_interval(self) -> int: ...
    @property
    def compute_bias_terms(self) -> bool: ...
    @property
    def pass_memory_mb(self) -> int | None: ...


class RowBuilder:
    """Computes and stores target rows for one cached forward pass.

    Build-time index space ("keys"): columns are [active features | errors | tokens]; a target row is
    keyed by its feature column, or by n_cols + i for logit target i.
    """

    def __init__(
        self, rm: ReplacementModel, cache: ForwardCache, targets: list[LogitTarget], settings: RowSettings
    ) -> None:
        self.rm, self.cache, self.targets, self.settings = rm, cache, targets, settings
        tc = rm.transcoders
        self.n_layers, self.n_pos = rm.n_layers, int(cache.token_ids.shape[0])
        acts = cache.activations
        self.feat_layer = torch.cat(
            [torch.full_like(a.positions, layer) for layer, a in enumerate(acts)]
        ).cpu()
        self.feat_pos = torch.cat([a.positions for a in acts]).cpu()
        self.feat_idx = torch.cat([a.features for a in acts]).cpu()
        self.feat_act = torch.cat([a.values for a in acts]).float().cpu()
        self.n_feat = int(self.feat_idx.shape[0])
        self.layer_start = [0]
        for a in acts:
            self.layer_start.append(self.layer_start[-1] + int(a.features.shape[0]))
        self.error_start = self.n_feat
        self.token_start = self.n_feat + self.n_layers * self.n_pos
        self.n_cols = self.token_start + self.n_pos
        # Excluded (BOS) positions have no error sources: position 0 sees only BOS, so its MLP
        # outputs are the same for every prompt and belong in the bias, as in circuit-tracer.
        errors = [e.float() for e in cache.errors]
        for error in errors:
            error[: cache.excluded_positions] = 0
        # Built once per trace: every source's write vectors, grouped by position (slot 0 = error).
        self.decoders = [
            _PaddedDecoders.build(tc, layer, a, errors[layer], self.n_pos) for layer, a in enumerate(acts)
        ]
        self.token_embeddings = cache.token_embeddings.float()  # (pos, d_model)
        self.directions = target_directions(rm.adapter.unembed_weight, targets).to(cache.final_hidden.device)
        self.visited = torch.zeros(self.n_feat, dtype=torch.bool)
        self.keys: list[Tensor] = []  # per stored row: (kept,) target key
        self.cols: list[Tensor] = []
        self.vals: list[Tensor] = []
        self.row_info: dict[int, tuple[float, float, float]] = {}  # key -> (value, abs total, row sum)

    # -- orchestration ----------------------------------------------------------------------

    def run(self, report: ProgressCallback) -> None:
        s = self.settings
        n_logits = len(self.targets)
        for start in range(0, n_logits, s.batch_size):
            idx = list(range(start, min(start + s.batch_size, n_logits)))
            final = self.cache.final_hidden.detach()[0, -1].float()
            positions = torch.full((len(idx),), self.n_pos - 1)
            self._rows(self.n_layers, positions, self.directions[idx], [self.n_cols + i for i in idx])
            for i in idx:
                value = float(self.directions[i] @ final) + float(
                    target_biases(self.rm.adapter.unembed_bias, [self.targets[i]])[0]
                )
                self._set_value(self.n_cols + i, value)
        budget = self.n_feat if s.max_feature_nodes is None else min(s.max_feature_nodes, self.n_feat)
        report("features", 0, budget)
        done = 0
        while done < budget:
            if budget == self.n_feat:
                chosen = torch.arange(self.n_feat)  # everything: influence order is irrelevant
            else:
                order = self._influence_estimate().argsort(descending=True, stable=True)
                order = order[~self.visited[order]]
                chosen = order[: min(s.batch_size * s.update_interval, budget - done)]
            for batch in self._batches_by_layer(chosen):
                self._feature_rows(batch)
                done += len(batch)
                report("features", done, budget)
        if s.compute_bias_terms:
            self._bias_terms = self._compute_bias_terms()

    def _batches_by_layer(self, chosen: Tensor) -> list[Tensor]:
        chosen = chosen.sort().values  # column order is (layer, pos, feature) order
        layers = self.feat_layer[chosen]
        batches: list[Tensor] = []
        size = self.settings.batch_size
        for layer in sorted(set(layers.tolist())):
            members = chosen[layers == layer]
            batches.extend(members[i : i + size] for i in range(0, members.numel(), size))
        return batches

    def _feature_rows(self, batch: Tensor) -> None:
        layer = int(self.feat_layer[batch[0]])
        tc = self.rm.transcoders
        enc = tc.encoder_vectors(layer, self.feat_idx[batch].to(tc.device)).float()  # (B, d_model)
        self._rows(layer, self.feat_pos[batch], enc, batch.tolist())
        x = self.cache.tc_inputs[layer].detach()[0, self.feat_pos[batch]]  # (B, d_model)
        pre = tc.pre_activations(layer, x).float()  # (B, d_transcoder)
        values = pre[torch.arange(len(batch), device=pre.device), self.feat_idx[batch].to(pre.device)]
        for key, value in zip(batch.tolist(), values.tolist(), strict=True):
            self._set_value(key, value)
        self.visited[batch] = True

    def _set_value(self, key: int, value: float) -> None:
        _, abs_total, row_sum = self.row_info[key]
        self.row_info[key] = (value, abs_total, row_sum)

    # -- one batch of rows ------------------------------------------------------------------

    def _rows(self, layer: int, positions: Tensor, vectors: Tensor, keys: list[int]) -> None:
        """Edges into targets that read `vectors` at (`layer`, `positions`); layer n_layers = logits.

        A batch runs as several backward passes when one pass's gradients would exceed
        `pass_memory_mb`: the rows are the same, peak memory stays bounded on long prompts.
        """
        step = self._targets_per_pass(layer)
        for start in range(0, len(keys), step):
            end = start + step
            self._rows_pass(layer, positions[start:end], vectors[start:end], keys[start:end])

    def _targets_per_pass(self, layer: int) -> int:
        batch = self.settings.batch_size
        budget = getattr(self.settings, "pass_memory_mb", None)
        if budget is None:
            return batch
        resid = self.cache.resid0
        # Per target: the returned gradients (resid0 and every write site below the target), about
        # PASS_TEMPORARIES more (injection, backward intermediates) and the dense row with its copies.
        vectors = min(layer, self.n_layers) + 1 + PASS_TEMPORARIES
        per_target = self.n_pos * int(resid.shape[-1]) * resid.element_size() * vectors + 16 * self.n_cols
        return max(1, min(batch, (int(budget) << 20) // per_target))

    def _rows_pass(self, layer: int, positions: Tensor, vectors: Tensor, keys: list[int]) -> None:
        cache = self.cache
        out = cache.final_hidden if layer == self.n_layers else cache.tc_inputs[layer]
        batch = len(keys)
        inject = torch.zeros((batch, *out.shape), dtype=out.dtype, device=out.device)  # (B, 1, pos, d)
        inject[torch.arange(batch, device=out.device), 0, positions.to(out.device)] = vectors.to(out.dtype)
        inputs = [cache.resid0, *cache.write_leaves[:layer]]
        grads = torch.autograd.grad(
            [out], inputs, grad_outputs=[inject], retain_graph=True, is_grads_batched=True, allow_unused=True
        )
        del inject
        # Causal attention: nothing at a position after the last target's reaches the targets, so
        # sources there have no edges and their dot products are skipped.
        last = int(positions.max()) + 1
        rows = torch.zeros(batch, self.n_cols, device=out.device)
        g0 = _grad_or_zeros(grads[0], out)[:, 0, :last].float()  # (B, last, d_model)
        # One pass over the gradient per position: (last, B, d) @ (last, d, 1).
        tokens = torch.bmm(g0.transpose(0, 1), self.token_embeddings[:last, :, None])  # (last, B, 1)
        rows[:, self.token_start : self.token_start + last] = tokens[:, :, 0].T
        del g0, tokens
        write_grads = [_grad_or_zeros(g, out)[:, 0, :last].float() for g in grads[1:]]
        del grads
        for source in range(layer):
            decoders = self.decoders[source]
            features, errors = decoders.edges(write_grads[source:layer], last)  # (n, B), (last, B)
            col = self.error_start + source * self.n_pos
            rows[:, col : col + last] = errors.T
            begin = self.layer_start[source]
            rows[:, begin : begin + features.shape[0]] = features.T
        del write_grads
        self._store(rows, keys)

    def _store(self, rows: Tensor, keys: list[int]) -> None:
        cap = self.settings.max_edges_per_target
        abs_rows = rows.abs()
        # float64: the dropped remainder is a difference of two sums of many terms.
        totals = abs_rows.sum(1, dtype=torch.float64)
        sums = rows.sum(1, dtype=torch.float64)
        if cap is not None and cap < rows.shape[1]:
            # Sorted, so each row's edges stay in column order; some may point at zeros.
            top = abs_rows.topk(cap, dim=1, sorted=False).indices.sort(dim=1).values  # (B, cap)
            del abs_rows
            top_vals = rows.gather(1, top)
            row_idx, slot = (top_vals != 0).nonzero(as_tuple=True)  # row-major: rows stay together
            cols, vals = top[row_idx, slot], top_vals[row_idx, slot]
            kept = torch.zeros_like(sums).index_add_(0, row_idx, vals.double())
            dropped = sums - kept
        else:
            del abs_rows
            row_idx, cols = rows.nonzero(as_tuple=True)
            vals = rows[row_idx, cols]
            # Every nonzero is kept: exactly nothing dropped. The difference of the two float64 sums
            # would be rounding noise whose size depends on the summation order (threads).
            dropped = torch.zeros_like(sums)
        # int32 indices while building: edges dominate memory on long prompts.
        key_tensor = torch.tensor(keys, dtype=torch.int32)
        self.keys.append(key_tensor[row_idx.cpu()])
        self.cols.append(cols.to(device="cpu", dtype=torch.int32))
        self.vals.append(vals.float().cpu())
        for key, total, lost in zip(keys, totals.tolist(), dropped.tolist(), strict=True):
            self.row_info[key] = (0.0, total, lost)

    # -- influence-guided exploration -------------------------------------------------------

    def _influence_estimate(self) -> Tensor:
        """Estimated influence on the logits of every feature column, from the rows so far."""
        keys, cols, vals = torch.cat(self.keys), torch.cat(self.cols), torch.cat(self.vals)
        size = self.n_cols + len(self.targets)
        totals = torch.zeros(size)
        for key, (_, abs_total, _) in self.row_info.items():
            totals[key] = abs_total
        weights = vals.abs() / totals[keys].clamp_min(1e-10)
        current = torch.zeros(size)
        current[self.n_cols :] = torch.tensor([t.probability for t in self.targets])
        influence = torch.zeros(size)
        for _ in range(4 * (self.n_layers + 3)):
            current = torch.zeros(size).index_add_(0, cols, current[keys] * weights)
            if not bool(current.any()):
                break
            influence += current
        return influence[: self.n_feat]

    # -- bias terms ---------------------------------------------------------------------------

    def _compute_bias_terms(self) -> dict[int, float]:
        """Each target's value with every source (token embeddings, features, errors) set to zero.

        What remains: decoder and model biases, position embeddings, and the excluded (BOS)
        positions' MLP outputs, propagated through the frozen model.
        """
        rm, cache = self.rm, self.cache
        tc = rm.transcoders
        resid0 = cache.resid0.detach()[0] - cache.token_embeddings.to(cache.resid0.dtype)
        excluded = cache.excluded_positions
        writes = []
        for layer in range(self.n_layers):
            write = tc.layer(layer).b_dec.expand_as(resid0).to(resid0.dtype).clone()
            write[:excluded] = cache.write_constants[layer][:excluded]
            writes.append(write)
        tc_inputs, final = rm.replay(cache, resid0=resid0, writes=writes)
        biases: dict[int, float] = {}
        logit_bias = target_biases(rm.adapter.unembed_bias, self.targets)
        for i in range(len(self.targets)):
            biases[self.n_cols + i] = float(self.directions[i] @ final[-1].float()) + float(logit_bias[i])
        visited = self.visited.nonzero(as_tuple=True)[0]
        for layer in range(self.n_layers):
            members = visited[self.feat_layer[visited] == layer]
            if members.numel() == 0:
                continue
            pre = tc.pre_activations(layer, tc_inputs[layer][self.feat_pos[members]]).float()
            values = pre[
                torch.arange(members.numel(), device=pre.device), self.feat_idx[members].to(pre.device)
            ]
            biases.update(zip(members.tolist(), values.tolist(), strict=True))
        return biases

    # -- the final graph ----------------------------------------------------------------------

    def graph(self, *, prompt: str, tokens: list[str], model_id: str, transcoder_id: str) -> Graph:
        selected = self.visited.nonzero(as_tuple=True)[0]
        n_sel = int(selected.numel())
        n_logits = len(self.targets)
        # Build keys -> final node indices.
        remap = torch.full((self.n_cols + n_logits,), -1, dtype=torch.int32)
        n_nodes = n_sel + self.n_cols - self.n_feat + n_logits
        remap[selected] = torch.arange(n_sel, dtype=torch.int32)
        remap[self.n_feat :] = torch.arange(n_sel, n_nodes, dtype=torch.int32)  # errors, tokens, logits
        targets = remap[torch.cat(self.keys)]
        self.keys.clear()
        sources = remap[torch.cat(self.cols)]
        self.cols.clear()
        vals = torch.cat(self.vals)
        self.vals.clear()
        kept = sources >= 0
        target_values = torch.zeros(n_nodes)
        abs_totals = torch.zeros(n_nodes)
        unexplored = torch.zeros(n_nodes)
        bias_terms = torch.zeros(n_nodes)
        biases = getattr(self, "_bias_terms", {})
        # Edges from features that did not become nodes move into `unexplored` too.
        outside = torch.zeros(n_nodes, dtype=torch.float64).index_add_(
            0, targets[~kept], vals[~kept].double()
        )
        for key, (value, abs_total, dropped) in self.row_info.items():
            node = int(remap[key])
            target_values[node] = value
            abs_totals[node] = abs_total
            unexplored[node] = dropped + float(outside[node])
            bias_terms[node] = biases.get(key, float("nan"))
        features = torch.stack(
            [self.feat_layer[selected], self.feat_pos[selected], self.feat_idx[selected]], 1
        )
        if bool(kept.all()):
            edges, weights = torch.stack([targets, sources], 1).long(), vals
        else:
            edges, weights = torch.stack([targets[kept], sources[kept]], 1).long(), vals[kept]
        del targets, sources
        return Graph(
            prompt=prompt,
            token_ids=[int(t) for t in self.cache.token_ids.tolist()],
            tokens=tokens,
            n_layers=self.n_layers,
            model_id=model_id,
            transcoder_id=transcoder_id,
            features=features,
            activations=self.feat_act[selected],
            logit_targets=self.targets,
            edges=edges,
            weights=weights,
            target_values=target_values,
            bias_terms=bias_terms,
            unexplored=unexplored,
            row_abs_totals=abs_totals,
            stats={
                "n_active_features": self.n_feat,
                "n_feature_nodes": n_sel,
                "n_edges": int(weights.numel()),
            },
        )


PASS_TEMPORARIES = 8  # d_model vectors per position held by a backward pass besides its gradients


@dataclass
class _PaddedDecoders:
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
    def build(cls, tc: TranscoderSet, layer: int, acts: Any, error: Tensor, n_pos: int) -> _PaddedDecoders:
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
        """grads[o]: (B, last, d_model) at output layer source+o -> edge weights from the features
        at positions < last (n, B) and from the errors (last, B)."""
        total: Tensor | None = None
        for o, g in enumerate(grads[: self.blocks.shape[2]]):
            # (last, B, d) @ (last, d, slots) -> (last, B, slots)
            part = torch.bmm(g.transpose(0, 1), self.blocks[:last, :, o].transpose(1, 2))
            total = part if total is None else total.add_(part)
        assert total is not None
        n = int(self.before[last])
        return total[self.positions[:n], :, self.slots[:n]], total[:, :, 0]


def _grad_or_zeros(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad
