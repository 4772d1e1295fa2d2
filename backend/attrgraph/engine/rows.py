"""The rows of an attribution graph, from one cached forward pass of the replacement model.

A batch of targets is one backward pass with `is_grads_batched`: each batch row injects one target's
read direction at its (layer, position), and the gradients at the write sites dotted with what each
source wrote there are the edge weights. Rows are kept sparse; what a row drops is recorded, so
edges + bias + unexplored still sum to the target's value. One class holds the build state (keys,
rows, visited features) because exploration, storage and the final graph all share it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from attrgraph.engine.decoder_blocks import PaddedDecoders
from attrgraph.engine.graph import Graph, LogitTarget
from attrgraph.engine.linear_backward import LinearBackward
from attrgraph.engine.replacement import ForwardCache, ReplacementModel
from attrgraph.engine.row_buffers import EdgeStore, Workspace, nonzero_entries
from attrgraph.engine.targets import target_biases, target_directions

ProgressCallback = Callable[[str, int, int], None]

log = logging.getLogger("attrgraph.engine")


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
        # Dense rows use another column order, [tokens | layer 0 features, errors | layer 1 ...]: a
        # target at layer L has sources below L only, so its rows are a prefix of `dense_width[L]`
        # columns and every per-row pass (fill, transpose, top-k, mask) skips the rest.
        self.dense_base: list[int] = []  # where each source layer's block starts
        order = [torch.arange(self.token_start, self.n_cols)]
        width = self.n_pos
        for layer in range(self.n_layers):
            self.dense_base.append(width)
            order.append(torch.arange(self.layer_start[layer], self.layer_start[layer + 1]))
            order.append(torch.arange(self.n_pos) + self.error_start + layer * self.n_pos)
            width += self.layer_start[layer + 1] - self.layer_start[layer] + self.n_pos
        self.dense_width = [*self.dense_base, width]  # prefix width for a target at each layer
        self.dense_to_key = torch.cat(order)  # (n_cols,) dense column -> build key
        # Excluded (BOS) positions have no error sources: position 0 sees only BOS, so its MLP
        # outputs are the same for every prompt and belong in the bias, as in circuit-tracer.
        errors = [e.float() for e in cache.errors]
        for error in errors:
            error[: cache.excluded_positions] = 0
        # Built once per trace: every source's write vectors, grouped by position (slot 0 = error).
        self.decoders = [
            PaddedDecoders.build(tc, layer, a, errors[layer], self.n_pos) for layer, a in enumerate(acts)
        ]
        self.token_embeddings = cache.token_embeddings.float()  # (pos, d_model)
        self.directions = target_directions(rm.adapter.unembed_weight, targets).to(cache.final_hidden.device)
        self.visited = torch.zeros(self.n_feat, dtype=torch.bool)
        self.edges = EdgeStore(self._edge_bound())  # [target key, source column] pairs, weights
        self.row_info: dict[int, tuple[float, float, float]] = {}  # key -> (value, abs total, row sum)
        self.backward = self._linear_backward()
        self.workspace = Workspace()

    def _linear_backward(self) -> LinearBackward | None:
        """The written-out backward pass when this model's layout is known and it agrees with
        autograd on a logit target and a feature target of this prompt; else None (autograd)."""
        dtype = self.cache.resid0.dtype
        compute = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
        backward = LinearBackward.build(self.rm.adapter, self.rm.transcoders, self.cache.frozen, compute)
        if backward is None:
            log.info(
                "autograd backward: %s's layout is not one the linear backward knows",
                type(self.rm.model).__name__,
            )
            return None
        probes = [(self.n_layers, torch.tensor([self.n_pos - 1]), self.directions[:1])]
        if self.n_feat:
            last = self.n_feat - 1  # a feature of the highest layer with any: the longest path
            layer = int(self.feat_layer[last])
            enc = self.rm.transcoders.encoder_vectors(
                layer, self.feat_idx[last : last + 1].to(self.rm.transcoders.device)
            )
            probes.append((layer, self.feat_pos[last : last + 1], enc.float()))
        tolerance = 1e-3 if compute == dtype else 5e-2
        for layer, positions, vectors in probes:
            end = int(positions.max()) + 1
            expected = self._autograd_gradients(layer, positions, vectors, end)
            actual = backward.gradients(layer, positions, vectors, end)
            scale = max(float(g.abs().max()) for g in expected) or 1.0
            error = max(
                float((a.float() - e.float()).abs().max()) for a, e in zip(actual, expected, strict=True)
            )
            if error > tolerance * scale:
                log.warning(
                    "the linear backward disagrees with autograd on %s (%.2e of the largest gradient); "
                    "using autograd",
                    type(self.rm.model).__name__,
                    error / scale,
                )
                return None
        return backward

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
        self.workspace.clear()
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
        resid = self.cache.resid0
        linear = self.backward is not None
        per_target = pass_bytes_per_target(
            n_pos=self.n_pos,
            d_model=int(resid.shape[-1]),
            write_sites=min(layer, self.n_layers),
            n_cols=self.n_cols,
            # The linear backward computes half-precision models in float32.
            element_size=max(4, resid.element_size()) if linear else resid.element_size(),
            temporaries=LINEAR_TEMPORARIES if linear else AUTOGRAD_TEMPORARIES,
        )
        return targets_per_pass(
            self.settings.batch_size, getattr(self.settings, "pass_memory_mb", None), per_target
        )

    def _rows_pass(self, layer: int, positions: Tensor, vectors: Tensor, keys: list[int]) -> None:
        # Causal attention: nothing at a position after the last target's reaches the targets, so
        # sources there have no edges and their dot products are skipped.
        last = int(positions.max()) + 1
        grads = self._gradients(layer, positions, vectors, last)  # each (last, B, d_model)
        # Edges are plain numbers: no autograd history, even when the weights require grad (a model
        # or transcoders being trained, as in the demo build), and in-place buffers need that.
        with torch.no_grad():
            self._edge_rows(layer, positions, keys, last, grads)

    def _edge_rows(
        self, layer: int, positions: Tensor, keys: list[int], last: int, grads: list[Tensor]
    ) -> None:
        """The dense rows of one pass from its gradients, stored sparse."""
        batch = len(keys)
        # Filled column by column (each source block is a contiguous (n, B) slab), then turned into
        # rows by one blocked transpose: cheaper than writing every block transposed.
        device = grads[0].device
        width = self.dense_width[min(layer, self.n_layers)]
        columns = self.workspace.get("columns", (width, batch), torch.float32, device).zero_()
        # One pass over the gradient per position: (last, B, d) @ (last, d, 1).
        tokens = torch.bmm(grads[0].float(), self.token_embeddings[:last, :, None])  # (last, B, 1)
        columns[:last] = tokens[:, :, 0]
        del tokens
        write_grads = [g.float() for g in grads[1:]]
        del grads
        for source in range(layer):
            features, errors = self.decoders[source].edges(
                write_grads[source:layer], last
            )  # (n, B), (last, B)
            begin = self.dense_base[source]
            columns[begin : begin + features.shape[0]] = features
            begin += self.layer_start[source + 1] - self.layer_start[source]
            columns[begin : begin + last] = errors
        del write_grads
        rows = self.workspace.get("rows", (batch, width), torch.float32, device).copy_(columns.T)
        del columns
        self._store(rows, keys, self._reachable(layer, positions))

    def _reachable(self, layer: int, positions: Tensor) -> Tensor:
        """(B,) how many columns can be nonzero in each row: sources below the target's layer at
        positions up to its own (an upper bound; rows within the edge cap need no top-k)."""
        if layer >= self.n_layers:
            return torch.full((positions.numel(),), self.n_cols)
        upto = positions.cpu() + 1
        count = upto * (layer + 1)  # errors of the layers below, and tokens
        for source in range(layer):
            count += self.decoders[source].before.cpu()[upto]
        return count

    def _gradients(self, layer: int, positions: Tensor, vectors: Tensor, last: int) -> list[Tensor]:
        """[resid0, write site 0, ..., write site layer-1] gradients, each (last, B, d_model)."""
        if self.backward is not None:
            return self.backward.gradients(layer, positions, vectors, last)
        return self._autograd_gradients(layer, positions, vectors, last)

    def _autograd_gradients(self, layer: int, positions: Tensor, vectors: Tensor, last: int) -> list[Tensor]:
        cache = self.cache
        out = cache.final_hidden if layer == self.n_layers else cache.tc_inputs[layer]
        batch = int(vectors.shape[0])
        inject = torch.zeros((batch, *out.shape), dtype=out.dtype, device=out.device)  # (B, 1, pos, d)
        inject[torch.arange(batch, device=out.device), 0, positions.to(out.device)] = vectors.to(out.dtype)
        inputs = [cache.resid0, *cache.write_leaves[:layer]]
        grads = torch.autograd.grad(
            [out], inputs, grad_outputs=[inject], retain_graph=True, is_grads_batched=True, allow_unused=True
        )
        return [_grad_or_zeros(g, out)[:, 0, :last].transpose(0, 1) for g in grads]

    def _store(self, rows: Tensor, keys: list[int], reachable: Tensor | None = None) -> None:
        """Keep each row's nonzero entries, or with `max_edges_per_target` its largest; record what
        is dropped. rows: (B, width) in the dense column order (a prefix of it); reachable: (B,) an
        upper bound on each row's nonzeros (default: every column)."""
        cap = self.settings.max_edges_per_target
        abs_rows = torch.abs(rows, out=self.workspace.get("abs", rows.shape, rows.dtype, rows.device))
        totals = abs_rows.sum(1)
        dropped = torch.zeros(rows.shape[0], dtype=torch.float64)
        if cap is None or cap >= rows.shape[1]:
            over_cap = torch.zeros(rows.shape[0], dtype=torch.bool)
        elif reachable is None:
            over_cap = torch.ones(rows.shape[0], dtype=torch.bool)
        else:
            over_cap = reachable > cap
        if bool(over_cap.any()):
            assert cap is not None
            # Keep entries at least as large as each row's cap-th largest |value|: a mask, so the
            # kept edges come out in column order without sorting. A tie at that value could keep
            # more than `cap`; those rows (rare) take exactly the top `cap` instead. Rows that cannot
            # exceed the cap keep every nonzero (the smallest positive float as their threshold).
            threshold = torch.full((rows.shape[0], 1), _SMALLEST_POSITIVE, device=rows.device)
            capped = over_cap.nonzero(as_tuple=True)[0].to(rows.device)
            candidates = abs_rows if capped.numel() == rows.shape[0] else abs_rows[capped]
            kth = candidates.topk(cap, dim=1, sorted=False).values.amin(1, keepdim=True)
            threshold[capped] = kth.clamp_min_(_SMALLEST_POSITIVE)
            del candidates
            keep = torch.ge(
                abs_rows, threshold, out=self.workspace.get("keep", rows.shape, torch.bool, rows.device)
            )
            del abs_rows
            flat, row_idx, cols = nonzero_entries(keep)
            over = torch.bincount(row_idx, minlength=rows.shape[0]) > cap
            if bool(over.any()):
                rows_over = over.nonzero(as_tuple=True)[0]
                exact = torch.zeros_like(keep[rows_over])
                exact.scatter_(1, rows[rows_over].abs().topk(cap, dim=1).indices, True)
                keep[rows_over] = exact & keep[rows_over]
                flat, row_idx, cols = nonzero_entries(keep)
            vals = rows.view(-1)[flat]
            # What a capped row drops, summed directly (no cancellation between two large sums).
            if capped.numel() == rows.shape[0]:
                dropped = rows.masked_fill_(keep, 0).sum(1).double().cpu()
            else:
                dropped[capped.cpu()] = rows[capped].masked_fill_(keep[capped], 0).sum(1).double().cpu()
        else:
            del abs_rows
            flat, row_idx, cols = nonzero_entries(rows)
            vals = rows.view(-1)[flat]
        # Dense columns -> build keys.
        self.edges.append(
            torch.tensor(keys)[row_idx.cpu()], self.dense_to_key[cols.cpu()], vals.float().cpu()
        )
        for key, total, lost in zip(keys, totals.double().tolist(), dropped.tolist(), strict=True):
            self.row_info[key] = (0.0, total, lost)

    # -- influence-guided exploration -------------------------------------------------------

    def _influence_estimate(self) -> Tensor:
        """Estimated influence on the logits of every feature column, from the rows so far."""
        pairs, vals = self.edges.filled()
        keys, cols = pairs[:, 0], pairs[:, 1]
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

    def _edge_bound(self) -> int:
        """The most edges this trace can keep (each target: its cap, or every column)."""
        s = self.settings
        budget = self.n_feat if s.max_feature_nodes is None else min(s.max_feature_nodes, self.n_feat)
        per_row = self.n_cols if s.max_edges_per_target is None else min(s.max_edges_per_target, self.n_cols)
        return (budget + len(self.targets)) * per_row

    def _node_edges(self, remap: Tensor) -> tuple[Tensor, Tensor]:
        """(n_edges, 2) [target, source] node indices (-1: a feature that is not a node) and weights,
        remapped in place from build keys, a slice at a time (a full-size index temporary would be
        gigabytes at tens of millions of edges)."""
        pairs, weights = self.edges.filled()
        step = 1 << 20
        for start in range(0, int(pairs.shape[0]), step):
            part = pairs[start : start + step]
            part[:, 0] = torch.index_select(remap, 0, part[:, 0])
            part[:, 1] = torch.index_select(remap, 0, part[:, 1])
        return pairs, weights

    def graph(self, *, prompt: str, tokens: list[str], model_id: str, transcoder_id: str) -> Graph:
        selected = self.visited.nonzero(as_tuple=True)[0]
        n_sel = int(selected.numel())
        n_logits = len(self.targets)
        # Build keys -> final node indices.
        remap = torch.full((self.n_cols + n_logits,), -1, dtype=torch.long)
        n_nodes = n_sel + self.n_cols - self.n_feat + n_logits
        remap[selected] = torch.arange(n_sel)
        remap[self.n_feat :] = torch.arange(n_sel, n_nodes)  # errors, tokens, logits
        edges, weights = self._node_edges(remap)
        kept = edges[:, 1] >= 0  # edges from features that did not become nodes are dropped
        # Edges from features that did not become nodes move into `unexplored` too.
        outside = torch.zeros(n_nodes, dtype=torch.float64)
        if not bool(kept.all()):
            outside.index_add_(0, edges[~kept, 0], weights[~kept].double())
            edges, weights = edges[kept], weights[kept]
        del kept
        target_values = torch.zeros(n_nodes)
        abs_totals = torch.zeros(n_nodes)
        unexplored = torch.zeros(n_nodes)
        bias_terms = torch.zeros(n_nodes)
        biases = getattr(self, "_bias_terms", {})
        info_keys = torch.tensor(list(self.row_info), dtype=torch.long)
        info = torch.tensor(list(self.row_info.values()), dtype=torch.float64).reshape(-1, 3)
        nodes = remap[info_keys]
        target_values[nodes] = info[:, 0].float()
        abs_totals[nodes] = info[:, 1].float()
        unexplored[nodes] = (info[:, 2] + outside[nodes]).float()
        bias_terms[nodes] = torch.tensor(
            [biases.get(key, float("nan")) for key in self.row_info], dtype=torch.float32
        )
        features = torch.stack(
            [self.feat_layer[selected], self.feat_pos[selected], self.feat_idx[selected]], 1
        )
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
                "backward": "linear" if self.backward is not None else "autograd",
            },
        )


_SMALLEST_POSITIVE = float(torch.finfo(torch.float32).smallest_normal) * 2.0**-23  # least subnormal
# d_model vectors per position and target held by a backward pass besides its gradients.
LINEAR_TEMPORARIES = 2  # the layer being accumulated, the float32 copies of the edge products
AUTOGRAD_TEMPORARIES = 8  # the injection and autograd's intermediates
PASS_ROW_BYTES = 16  # per target and column: the dense row, its transpose, |row| and the keep mask


def pass_bytes_per_target(
    *, n_pos: int, d_model: int, write_sites: int, n_cols: int, element_size: int, temporaries: int
) -> int:
    """Memory one target takes in a backward pass: its gradients at resid0 and at every write site
    below it, `temporaries` more such vectors, and its dense row with its copies. The estimate
    (engine/estimate.py) sizes passes with the same formula."""
    return n_pos * d_model * element_size * (write_sites + 1 + temporaries) + PASS_ROW_BYTES * n_cols


def targets_per_pass(batch_size: int, pass_memory_mb: int | None, per_target: int) -> int:
    """How many of a batch's targets one backward pass takes under `pass_memory_mb` (at least 1)."""
    if pass_memory_mb is None:
        return batch_size
    return max(1, min(batch_size, (int(pass_memory_mb) << 20) // per_target))


def _grad_or_zeros(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad
