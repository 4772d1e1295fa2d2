"""AttentionTracer: one recorded pass of the replacement model, then attention explained on demand.

Construction runs the replacement model once (as trace() does, attention recorded) and once more
with every source at zero (the bias). Then:

* `qk(layer, head, query_pos, key_pos)`: backward passes from each coordinate of the head's query
  (and key) give every source's direct contribution to q (and k), rotary and QK-norm included; the
  score scale * q.k splits bilinearly into pairs of sources plus bias terms.
* `head_loadings(target, source)`: with g the target's gradient at a head's output at the target's
  position and A the frozen pattern, injecting A[h, p_t, p'] g at the value of key position p' != p_t
  and running backwards gives what each source sends through that last hop; over (layer, head, p')
  these partition every cross-position edge into the target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from attrgraph.engine.attention.capture import AttentionRecord, recording_attention
from attrgraph.engine.attention.results import HeadLoadings, QKAttribution
from attrgraph.engine.attention.sources import Sources, zero_source_inputs
from attrgraph.engine.graph import Graph, NodeKind
from attrgraph.engine.replacement import ReplacementModel
from attrgraph.engine.targets import target_directions
from attrgraph.engine.transcoders.base import TranscoderSet

ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Target:
    """A read direction at (layer, position); layer n_layers is the final-norm output (logits)."""

    node_id: str
    layer: int
    pos: int
    direction: Tensor  # (d_model,)


class AttentionTracer:
    def __init__(
        self,
        model: torch.nn.Module,
        transcoders: TranscoderSet,
        token_ids: Sequence[int],
        *,
        exclude_positions: int = 0,
        progress: ProgressCallback | None = None,
    ) -> None:
        report = progress or (lambda phase, done, total: None)
        self.rm = rm = ReplacementModel(model, transcoders)
        device = next(model.parameters()).device
        report("forward", 0, 2)
        with torch.enable_grad(), recording_attention(rm.adapter) as records:
            self.cache = rm.run(
                torch.tensor(list(token_ids), device=device), exclude_positions=exclude_positions, record=True
            )
        self.records: dict[int, AttentionRecord] = records
        report("forward", 1, 2)
        resid0, writes = zero_source_inputs(rm, self.cache)
        with recording_attention(rm.adapter) as bias_records:
            rm.replay(self.cache, resid0=resid0, writes=writes)
        self.bias_records: dict[int, AttentionRecord] = bias_records
        report("forward", 2, 2)
        self.sources = Sources.build(rm, self.cache)
        self.graph_nodes: frozenset[str] = frozenset()

    @classmethod
    def for_graph(
        cls,
        model: torch.nn.Module,
        transcoders: TranscoderSet,
        graph: Graph,
        *,
        bos_token_id: int | None,
        progress: ProgressCallback | None = None,
    ) -> AttentionTracer:
        """The pass trace() ran for `graph` (same tokens, same BOS exclusion)."""
        exclude = bool(graph.settings.get("exclude_bos_features", True))
        excluded = int(exclude and bos_token_id is not None and graph.token_ids[0] == bos_token_id)
        tracer = cls(model, transcoders, graph.token_ids, exclude_positions=excluded, progress=progress)
        tracer.graph_nodes = frozenset(graph.node_id(i) for i in range(graph.n_nodes))
        return tracer

    @property
    def n_pos(self) -> int:
        return int(self.cache.token_ids.shape[0])

    # -- QK attributions ----------------------------------------------------------------------

    def qk(self, layer: int, head: int, query_pos: int, key_pos: int) -> QKAttribution:
        record, bias = self.records[layer], self.bias_records[layer]
        kv_head = head // record.groups
        if not 0 <= key_pos <= query_pos < self.n_pos:
            raise ValueError(f"need 0 <= key_pos <= query_pos < {self.n_pos}")
        q_parts = self._parts(layer, record.query, head, query_pos)  # (n_sources, d_head)
        k_parts = self._parts(layer, record.key, kv_head, key_pos)
        q = record.query.detach()[0, head, query_pos].double()
        k = record.key.detach()[0, kv_head, key_pos].double()
        q_rows = q_parts.abs().sum(1).nonzero(as_tuple=True)[0].tolist()
        k_rows = k_parts.abs().sum(1).nonzero(as_tuple=True)[0].tolist()
        ids = self.sources.node_ids
        return QKAttribution(
            layer=layer,
            head=head,
            query_pos=query_pos,
            key_pos=key_pos,
            score=float(record.scaling * (q @ k)),
            scale=record.scaling,
            softcap=record.softcap,
            q_nodes=[ids[i] for i in q_rows],
            k_nodes=[ids[i] for i in k_rows],
            q_parts=q_parts[q_rows].cpu(),
            k_parts=k_parts[k_rows].cpu(),
            q_bias=bias.query[0, head, query_pos].float().cpu(),
            k_bias=bias.key[0, kv_head, key_pos].float().cpu(),
            graph_nodes=self.graph_nodes,
        )

    def _parts(self, layer: int, tensor: Tensor, head: int, pos: int) -> Tensor:
        """(n_sources, d_head): each source's direct contribution to tensor[0, head, pos]."""
        d_head = tensor.shape[-1]
        inject = torch.zeros((d_head, *tensor.shape), dtype=tensor.dtype, device=tensor.device)
        inject[torch.arange(d_head), 0, head, pos, torch.arange(d_head)] = 1
        return self._backward([tensor], [inject], layer).T

    def _backward(self, outputs: list[Tensor], injects: list[Tensor], layer: int) -> Tensor:
        """(B, n_sources) from batched read directions on `outputs`, reaching writes below `layer`."""
        cache = self.cache
        inputs = [cache.resid0, *cache.write_leaves[:layer]]
        grads = torch.autograd.grad(
            outputs, inputs, grad_outputs=injects, retain_graph=True, is_grads_batched=True, allow_unused=True
        )
        write_grads = [None if g is None else g[:, 0] for g in grads[1:]]
        resid0_grad = None if grads[0] is None else grads[0][:, 0]
        return self.sources.contributions(resid0_grad, write_grads)

    # -- head loadings ------------------------------------------------------------------------

    def target_of(self, graph: Graph, node: int) -> Target:
        kind = graph.kind(node)
        if kind is NodeKind.FEATURE:
            layer, pos, index = (int(v) for v in graph.features[node])
            tc = self.rm.transcoders
            direction = tc.encoder_vectors(layer, torch.tensor([index], device=tc.device))[0]
            return Target(graph.node_id(node), layer, pos, direction.float())
        if kind is NodeKind.LOGIT:
            logit = graph.logit_targets[node - graph.logit_offset]
            direction = target_directions(self.rm.adapter.unembed_weight, [logit])[0]
            return Target(graph.node_id(node), self.rm.n_layers, self.n_pos - 1, direction)
        raise ValueError(
            f"node {graph.node_id(node)} is a {kind.value}: only features and logits are targets"
        )

    def source_column(self, graph: Graph, node: int) -> int:
        kind = graph.kind(node)
        if kind is NodeKind.FEATURE:
            layer, pos, index = (int(v) for v in graph.features[node])
            return self.sources.feature_keys[(layer, pos, index)]
        if kind is NodeKind.ERROR:
            layer, pos = divmod(node - graph.error_offset, graph.n_pos)
            return self.sources.error_column(layer, pos)
        if kind is NodeKind.TOKEN:
            return self.sources.token_column(node - graph.token_offset)
        raise ValueError(f"node {graph.node_id(node)} is a logit: logits are never sources")

    def head_loadings(self, graph: Graph, target: int, source: int) -> HeadLoadings:
        """One edge of `graph` (target and source node indices) split by the heads that carried it."""
        read = self.target_of(graph, target)
        column = self.source_column(graph, source)
        keys, parts, row = self.loading_matrix(read)
        weight = float(row[column])
        same = weight if int(self.sources.positions[column]) == read.pos else 0.0
        values = parts[:, column].tolist()
        loadings = {key: value for key, value in zip(keys, values, strict=True) if value != 0.0}
        return HeadLoadings(self.sources.node_ids[column], read.node_id, weight, same, loadings)

    def _read_inject(self, read: Target) -> tuple[Tensor, Tensor]:
        cache = self.cache
        out = cache.final_hidden if read.layer == self.rm.n_layers else cache.tc_inputs[read.layer]
        inject = torch.zeros_like(out)  # (1, pos, d_model)
        inject[0, read.pos] = read.direction.to(out.dtype)
        return out, inject

    def loading_matrix(
        self, read: Target, batch_size: int = 64
    ) -> tuple[list[tuple[int, int, int]], Tensor, Tensor]:
        """Keys (layer, head, key_pos), their (n_keys, n_sources) loadings, and the whole row (n_sources,)."""
        out, inject = self._read_inject(read)
        row = self._backward([out], [inject[None]], read.layer)[0]
        layers = [m for m in range(min(read.layer + 1, self.rm.n_layers)) if m in self.records]
        outputs = [self.records[m].output for m in layers]
        grads = torch.autograd.grad(
            [out], outputs, grad_outputs=[inject], retain_graph=True, allow_unused=True
        )
        keys: list[tuple[int, int, int]] = []
        injects: list[tuple[int, int, int, Tensor]] = []  # (layer slot, kv head, key pos, grad at value)
        for slot, (m, g) in enumerate(zip(layers, grads, strict=True)):
            if g is None:
                continue
            record = self.records[m]
            pattern = record.pattern[0, :, read.pos]  # (n_heads, k_pos)
            for head in range(record.query.shape[1]):
                for key_pos in range(read.pos):  # p' != p_t; later positions are masked
                    a = float(pattern[head, key_pos])
                    if a != 0.0:
                        keys.append((m, head, key_pos))
                        injects.append((slot, head // record.groups, key_pos, a * g[0, read.pos, head]))
        parts = torch.zeros(len(keys), self.sources.n_sources)
        values = [self.records[m].value for m in layers]
        for lo in range(0, len(keys), batch_size):
            chunk = injects[lo : lo + batch_size]
            batch = [torch.zeros((len(chunk), *v.shape), dtype=v.dtype, device=v.device) for v in values]
            for b, (slot, kv_head, key_pos, vector) in enumerate(chunk):
                batch[slot][b, 0, kv_head, key_pos] = vector.to(batch[slot].dtype)
            used = sorted({slot for slot, *_ in chunk})
            parts[lo : lo + len(chunk)] = self._backward(
                [values[s] for s in used], [batch[s] for s in used], read.layer
            ).cpu()
        return keys, parts, row.cpu()
