"""The sources of the linearised replacement model and what each one wrote.

In the linearised model (frozen attention patterns, norm denominators and feature activations) the
residual stream anywhere is linear in the sources plus a constant. The sources and the columns they
get here are trace()'s: [active features (layer-major) | errors (layer-major) | tokens]; the constant
(model and decoder biases, absolute position embeddings, the excluded BOS position's MLP outputs) is
what a replayed pass with every source at zero computes. Given gradients at the write sites of a
batch of read directions, `Sources.contributions` dots each with what each source wrote, exactly as
an edge weight is computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from attrgraph.engine.replacement import ForwardCache, ReplacementModel
from attrgraph.format.node_ids import embedding_id, error_id, feature_id

_CHUNK_ELEMENTS = 1 << 25  # bounds the (batch, features, d_model) gather to ~128 MiB of float32


@dataclass
class Sources:
    node_ids: list[str]  # (n_sources,) interop node ids
    layers: Tensor  # (n_sources,) the layer whose MLP site it writes first (tokens: -1)
    positions: Tensor  # (n_sources,)
    n_features: int
    n_layers: int
    n_pos: int
    feature_keys: dict[tuple[int, int, int], int]  # (layer, pos, index) -> column
    _decoders: list[tuple[Tensor, Tensor, Tensor] | None]  # per layer: positions, (n, n_out, d), start column
    _errors: list[Tensor]  # per layer (pos, d_model), zero at excluded positions
    _tokens: Tensor  # (pos, d_model)

    @classmethod
    def build(cls, rm: ReplacementModel, cache: ForwardCache) -> Sources:
        tc = rm.transcoders
        n_layers, n_pos = rm.n_layers, int(cache.token_ids.shape[0])
        ids: list[str] = []
        layers: list[int] = []
        positions: list[int] = []
        keys: dict[tuple[int, int, int], int] = {}
        decoders: list[tuple[Tensor, Tensor, Tensor] | None] = []
        for layer, acts in enumerate(cache.activations):
            start = len(ids)
            for pos, index in zip(acts.positions.tolist(), acts.features.tolist(), strict=True):
                keys[(layer, pos, index)] = len(ids)
                ids.append(feature_id(layer, index, pos))
                layers.append(layer)
                positions.append(pos)
            if acts.features.numel() == 0:
                decoders.append(None)
                continue
            scaled = tc.decoder_vectors(layer, acts.features).float() * acts.values.float()[:, None, None]
            decoders.append((acts.positions, scaled, torch.tensor(start)))  # (n,), (n, n_out, d)
        n_features = len(ids)
        errors = [e.float().clone() for e in cache.errors]
        for layer, error in enumerate(errors):
            error[: cache.excluded_positions] = 0  # BOS outputs are bias, as in trace()
            ids.extend(error_id(layer, pos) for pos in range(n_pos))
            layers.extend([layer] * n_pos)
            positions.extend(range(n_pos))
        token_ids = [int(t) for t in cache.token_ids.tolist()]
        ids.extend(embedding_id(token_ids[pos], pos) for pos in range(n_pos))
        layers.extend([-1] * n_pos)
        positions.extend(range(n_pos))
        return cls(
            node_ids=ids,
            layers=torch.tensor(layers),
            positions=torch.tensor(positions),
            n_features=n_features,
            n_layers=n_layers,
            n_pos=n_pos,
            feature_keys=keys,
            _decoders=decoders,
            _errors=errors,
            _tokens=cache.token_embeddings.float(),
        )

    @property
    def n_sources(self) -> int:
        return len(self.node_ids)

    def error_column(self, layer: int, pos: int) -> int:
        return self.n_features + layer * self.n_pos + pos

    def token_column(self, pos: int) -> int:
        return self.n_features + self.n_layers * self.n_pos + pos

    def contributions(self, resid0_grad: Tensor | None, write_grads: Sequence[Tensor | None]) -> Tensor:
        """(B, n_sources): each source's write dotted with the gradient where it wrote.

        resid0_grad: (B, pos, d_model) at the residual entering layer 0; write_grads[l]: (B, pos,
        d_model) at layer l's MLP write site (None: no gradient reached it); later layers may be absent.
        """
        grads = [None if g is None else g.float() for g in write_grads]
        grads += [None] * (self.n_layers - len(grads))
        known = next((g for g in [resid0_grad, *grads] if g is not None), None)
        if known is None:
            raise ValueError("no gradient reached any source")
        batch, device = known.shape[0], known.device
        out = torch.zeros(batch, self.n_sources, device=device)
        if resid0_grad is not None:
            start = self.token_column(0)
            out[:, start:] = torch.einsum("bpd,pd->bp", resid0_grad.float(), self._tokens.to(device))
        for layer, g in enumerate(grads):
            if g is not None:
                col = self.error_column(layer, 0)
                error = self._errors[layer].to(device)
                out[:, col : col + self.n_pos] = torch.einsum("bpd,pd->bp", g, error)
        for layer, entry in enumerate(self._decoders):
            if entry is not None:
                self._feature_block(out, layer, entry, grads)
        return out

    def _feature_block(
        self, out: Tensor, layer: int, entry: tuple[Tensor, Tensor, Tensor], grads: list[Tensor | None]
    ) -> None:
        positions, scaled, start = entry
        n, n_out, d = scaled.shape
        chunk = max(1, _CHUNK_ELEMENTS // max(1, out.shape[0] * d))
        first = int(start)
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            pos = positions[lo:hi].to(out.device)
            for o in range(n_out):
                g = grads[layer + o]
                if g is None:
                    continue
                dec = scaled[lo:hi, o].to(out.device)  # (c, d)
                out[:, first + lo : first + hi] += torch.einsum("bcd,cd->bc", g[:, pos], dec)


def zero_source_inputs(rm: ReplacementModel, cache: ForwardCache) -> tuple[Tensor, list[Tensor]]:
    """resid0 and MLP writes with every source at zero: what trace()'s bias terms replay.

    Position embeddings stay in resid0; each MLP site writes its decoder bias, except at excluded
    (BOS) positions, whose true MLP outputs are constants.
    """
    tc = rm.transcoders
    resid0 = cache.resid0.detach()[0] - cache.token_embeddings.to(cache.resid0.dtype)
    writes = []
    for layer in range(rm.n_layers):
        write = tc.layer(layer).b_dec.expand_as(resid0).to(resid0.dtype).clone()
        write[: cache.excluded_positions] = cache.write_constants[layer][: cache.excluded_positions]
        writes.append(write)
    return resid0, writes
