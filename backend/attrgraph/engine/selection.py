"""A global-TopK set's features in a pass that recomputes them layer by layer (interventions).

A global-TopK set chooses each position's active latents over all layers at once
(transcoders/global_topk.py): layer l's activations depend on later layers' inputs, which a forward
pass has not computed when it reaches l, and which change as soon as l's output does. There is no
layer-by-layer "what the set would do" after an edit. A recomputing pass therefore holds the
selection fixed, as the replacement model itself does (`ReplacementModel.replacement_logits`):

* at the prompt's positions, the latents the set chose on the original prompt (the graph's
  features). Their values follow the changed residual stream (relu of the new pre-activation); a
  latent outside the selection stays off however its pre-activation moves;
* at generated positions (continuations), the latents the set chooses there by `encode_all` from
  the inputs of the same pass without the interventions placed at those positions.

Without edits the held selection reproduces the original pass exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attrgraph.engine.replacement import ForwardCache
from attrgraph.engine.transcoders.base import TranscoderSet


def prompt_selection(cache: ForwardCache, d_transcoder: int) -> list[Tensor]:
    """Per layer, (prompt positions, d_transcoder) bool: the latents active in the cached pass."""
    n_pos = int(cache.token_ids.shape[0])
    masks = []
    for sparse in cache.activations:
        mask = torch.zeros(n_pos, d_transcoder, dtype=torch.bool, device=sparse.values.device)
        mask[sparse.positions, sparse.features] = True
        masks.append(mask)
    return masks


def extended(selection: list[Tensor], chosen: list[Tensor] | None, n_new: int) -> list[Tensor]:
    """`selection` with rows for `n_new` generated positions: those of `chosen` (activations of a
    pass over every position, `encode_all`'s choice), or none selected when nothing is chosen."""
    rows = []
    for layer, mask in enumerate(selection):
        if chosen is None:
            new = mask.new_zeros(n_new, mask.shape[1])
        else:
            new = (chosen[layer][-n_new:] != 0).to(mask.device) if n_new else mask[:0]
        rows.append(torch.cat([mask, new]))
    return rows


def layer_activations(tc: TranscoderSet, layer: int, x: Tensor, selection: list[Tensor] | None) -> Tensor:
    """(pos, d_transcoder) activations at `layer` from its input x (pos, d_model): the set's own
    encoding, or, for a set that selects across layers, relu(pre) on the held selection."""
    if selection is None:
        return tc.encode(layer, x)
    return tc.activate_selected(layer, tc.pre_activations(layer, x), selection[layer][: x.shape[0]])
